"""The aiohttp application: /metrics, /probe, health, readiness, reload, the index
page; and the lifecycle that owns every background task (aiojobs, cleanup_ctx)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiojobs
import yaml
from aiohttp import web
from yarl import URL

from ttft_exporter.clock import Clock, SystemClock
from ttft_exporter.config import (
    Config,
    ConfigHolder,
    TargetConfig,
    load_config,
    redacted_headers,
)
from ttft_exporter.errors import ConfigError, ProbeRejected
from ttft_exporter.executor import DEFAULT_ADHOC_CONCURRENCY, ProbeExecutor
from ttft_exporter.flux.supervisor import FluxSupervisor
from ttft_exporter.history import History, ProbeRecord
from ttft_exporter.index import render_index
from ttft_exporter.logs import fields
from ttft_exporter.looplag import LoopLagMonitor
from ttft_exporter.probes import create_session
from ttft_exporter.scheduler import ProbeScheduler
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.shard import Shard
from ttft_exporter.sinks import FanOut, Sink
from ttft_exporter.sinks.otel.switch import OTelSwitch, OTelUnavailableError
from ttft_exporter.sinks.prometheus.exposition import exposition
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink
from ttft_exporter.supervise import Component, RestartPolicy, Supervisor
from ttft_exporter.webauth import BasicAuth, auth_middleware, headers_on_prepare
from ttft_exporter.webconfig import WebConfig

__all__ = ["EXPORTER", "ExporterState", "create_app", "load_state", "reload_config"]

log = logging.getLogger("ttft_exporter.server")

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
DEFAULT_SCRAPE_TIMEOUT = 120.0


@dataclass
class ExporterState:
    """Everything the handlers and the lifecycle share."""

    holder: ConfigHolder
    timeout_offset: float = 0.5
    history_limit: int = 100
    start_jitter: bool = True
    adhoc_concurrency: int = DEFAULT_ADHOC_CONCURRENCY
    # --web.config.file: basic auth and response headers here, TLS in the listener.
    web_config: WebConfig | None = None
    # --shard.index/--shard.count; None: the config file's `shard:` decides.
    shard_override: Shard | None = None
    # Give every probe a trace id and span id (exemplars, the OTel span) even without
    # OTel; otherwise they are on while `otel.traces` exports spans (the lifecycle and
    # reloads set the executor's live switch, state.executor.trace_ids).
    trace_ids: bool = False
    clock: Clock = field(default_factory=SystemClock)
    metrics: ExporterMetrics = field(default_factory=ExporterMetrics)
    store: MetricStore = field(default_factory=MetricStore)
    # Sinks beyond the Prometheus one (e.g. OTel), attached before the app starts.
    extra_sinks: list[Sink] = field(default_factory=list)
    prometheus: PrometheusSink = field(init=False)
    # The OTel sink of the `otel:` section (none while it is absent); the lifecycle
    # and reloads apply the section.
    otel: OTelSwitch = field(init=False)
    # Every scheduled probe's result and every Flux event goes through here.
    sinks: FanOut = field(init=False)
    history: History = field(init=False)
    executor: ProbeExecutor = field(init=False)
    scheduler: ProbeScheduler | None = None
    flux: FluxSupervisor | None = None
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    supervisor: Supervisor = field(init=False)
    # Built from clock and metrics when not given; the app lifecycle runs it.
    lag_monitor: LoopLagMonitor | None = None
    ready: bool = False
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set by SIGHUP; a job of the app lifecycle does the reload (no orphan tasks).
    reload_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # Extra lifecycle hooks for optional subsystems: each is an aiohttp cleanup_ctx.
    extra_contexts: list[Callable[[web.Application], AsyncIterator[None]]] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.metrics, clock=self.clock, policy=self.restart_policy)
        self.history = History(self.history_limit)
        if self.lag_monitor is None:
            self.lag_monitor = LoopLagMonitor(clock=self.clock, metrics=self.metrics)
        self.lag_monitor.bound = self.holder.config.suspect_loop_lag
        self.executor = ProbeExecutor(
            clock=self.clock,
            concurrency=self.holder.config.concurrency,
            metrics=self.metrics,
            history=self.history,
            adhoc_concurrency=self.adhoc_concurrency,
            lag_monitor=self.lag_monitor,
            trace_ids=self.trace_ids,
        )
        self.store.apply_config(self.holder.config)
        self.prometheus = PrometheusSink(self.store, self.metrics.registry)
        failures = self.metrics.otlp_export_failures
        self.otel = OTelSwitch(lambda signal: failures.labels(signal).inc(), self.clock.wall)
        self.sinks = FanOut([self.prometheus, self.otel, *self.extra_sinks])

    def shard(self, config: Config | None = None) -> Shard:
        """The shard this replica runs: the flags', else the config file's."""
        if self.shard_override is not None:
            return self.shard_override
        return Shard.from_config((config or self.holder.config).shard)


EXPORTER: web.AppKey[ExporterState] = web.AppKey("exporter", ExporterState)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[EXPORTER]

    def on_job_error(_scheduler: aiojobs.Scheduler, context: dict[str, object]) -> None:
        exc = context.get("exception")
        log.error(
            "background job failed",
            exc_info=exc if isinstance(exc, BaseException) else None,
            extra=fields(job=str(context.get("job"))),
        )

    jobs = aiojobs.Scheduler(limit=None, close_timeout=5.0, exception_handler=on_job_error)
    # Before the first target is laid out, so its OTel attributes are ready too.
    config = state.holder.config
    await state.otel.apply(config.otel, config.bucket_overrides())
    state.executor.trace_ids = state.trace_ids or state.otel.traces_on
    if state.lag_monitor is not None:
        # First, so the loop's lag is known before the first probe ends.
        await jobs.spawn(
            state.supervisor.run(Component.LOOP_LAG, "event-loop", state.lag_monitor.run),
            name="event-loop lag",
        )
    state.scheduler = ProbeScheduler(
        executor=state.executor,
        sink=state.sinks,
        jobs=jobs,
        metrics=state.metrics,
        supervisor=state.supervisor,
        start_jitter=state.start_jitter,
        clock=state.clock,
    )
    shard = state.shard()
    if shard.sharded:
        log.info(
            "sharded: probing only the targets and Flux instances this shard owns",
            extra=fields(shard=str(shard)),
        )
    await state.scheduler.apply(state.holder.config, shard)
    state.prometheus.configure_flux(state.store.buckets)
    state.flux = FluxSupervisor(
        sink=state.sinks, jobs=jobs, clock=state.clock, supervisor=state.supervisor
    )
    await state.flux.apply(shard.select(state.holder.config.flux, lambda i: i.name))
    state.metrics.reload_successful.set(1)
    state.metrics.reload_timestamp.set(state.clock.wall())
    await jobs.spawn(
        state.supervisor.run(
            Component.CONFIG_RELOAD, "sighup", lambda: _reload_when_requested(state)
        ),
        name="reload on request",
    )
    state.ready = True
    try:
        yield
    finally:
        state.ready = False
        await state.flux.close()
        await state.scheduler.close()
        await jobs.close()
        # Last: the results of the probes that just ended are exported too.
        await state.otel.close()


async def _reload_when_requested(state: ExporterState) -> None:
    while True:
        await state.reload_requested.wait()
        state.reload_requested.clear()
        await reload_config(state)


NO_CONFIG_FILE = "demo mode has no config file to reload"


async def reload_config(state: ExporterState) -> ConfigError | None:
    """Load the config file again and apply it. A bad file keeps the running config,
    sets the reload gauge to 0 and is returned. Without a config file (the demo)
    there is nothing to reload: logged, the gauge unchanged, None returned."""
    path = state.holder.path
    if path is None:
        log.warning(NO_CONFIG_FILE)
        return None
    async with state.reload_lock:
        try:
            # Reading, parsing and validating (secrets, TLS files, redactors) is
            # blocking and CPU-bound: in a worker thread, the loop keeps probing.
            config, checksum = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            state.metrics.reload_successful.set(0)
            log.error(
                "reload failed; keeping the running configuration",
                extra=fields(err=str(exc)),
            )
            return exc
        state.holder.swap(config, checksum)
        # Series take the new layout in place; only histograms whose boundaries moved
        # restart (their old `le` series cannot be continued).
        restarted = state.store.apply_config(config)
        if restarted:
            log.warning(
                "histogram buckets changed; these targets' histograms restart from zero",
                extra=fields(targets=",".join(sorted(restarted))),
            )
        state.executor.set_concurrency(config.concurrency)
        try:
            await state.otel.apply(config.otel, config.bucket_overrides())
        except OTelUnavailableError as exc:
            # The file is valid; this installation cannot export. Probing goes on.
            log.error("OTLP export not started", extra=fields(err=str(exc)))
        # Ids for spans and exemplars while spans are exported (or the flag asks).
        state.executor.trace_ids = state.trace_ids or state.otel.traces_on
        if state.lag_monitor is not None:
            state.lag_monitor.bound = config.suspect_loop_lag
        shard = state.shard(config)
        if state.scheduler is not None:
            await state.scheduler.apply(config, shard)
        if state.flux is not None:
            if state.prometheus.flux_buckets_differ(state.store.buckets):
                # Histogram boundaries are fixed per family: stop every monitor (no
                # event in flight), start the families again, then every instance.
                await state.flux.close()
                state.prometheus.configure_flux(state.store.buckets)
            await state.flux.apply(shard.select(config.flux, lambda i: i.name))
        state.metrics.reload_successful.set(1)
        state.metrics.reload_timestamp.set(state.clock.wall())
        log.info("configuration reloaded", extra=fields(targets=len(config.targets)))
        return None


def _wants_openmetrics(request: web.Request) -> bool:
    return "application/openmetrics-text" in request.headers.get("Accept", "")


def _accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def handle_metrics(request: web.Request) -> web.Response:
    """Exporter metrics plus every target's series, classic text or OpenMetrics."""
    state = request.app[EXPORTER]
    openmetrics = _wants_openmetrics(request)
    body = exposition(state.metrics.registry, state.store, openmetrics=openmetrics)
    content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
    if _accepts_gzip(request):
        # Level 1: a few MB compress ~5x faster than at zlib's default level for ~15%
        # more bytes; in a thread, so the probes' timestamps are not held up meanwhile.
        body = await asyncio.to_thread(gzip.compress, body, 1)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


def _deadline(request: web.Request, target: TargetConfig, offset: float) -> float:
    """blackbox's rule: the scrape timeout minus an offset, capped by the target's own."""
    try:
        scrape = float(request.headers.get("X-Prometheus-Scrape-Timeout-Seconds", "0"))
    except ValueError:
        scrape = 0.0
    # NaN would make the deadline NaN, and asyncio.timeout(nan) never fires.
    if not math.isfinite(scrape) or scrape <= 0:
        scrape = DEFAULT_SCRAPE_TIMEOUT
    budget = scrape - offset
    if budget <= 0 or target.timeout < budget:
        return target.timeout
    return budget


async def handle_probe(request: web.Request) -> web.Response:
    """One ad-hoc probe of a configured target into a fresh store. Ad-hoc probes have a
    small pool of their own and never overlap a probe of the same target: a busy target
    answers 429 and a pool that stays full until the deadline 503, both at once and
    with Retry-After, so a burst of calls cannot delay the scheduled loops."""
    state = request.app[EXPORTER]
    name = request.query.get("target")
    if not name:
        return web.Response(status=400, text="target parameter is missing\n")
    target = state.holder.config.target(name)
    if target is None:
        state.metrics.target_unknown.inc()
        # No outbound request for names outside the config: /probe is not a proxy.
        return web.Response(
            status=400,
            text=f"unknown target {name!r}: only configured target names can be probed\n",
        )
    scenario = request.query.get("scenario")
    if scenario is not None or target.scenarios:
        # A target with scenarios is probed as one of them: the named one, else its
        # first (the cold probe only runs from its own cycle).
        probed = target.probe_target(scenario) if scenario else target.probe_targets()[0]
        if probed is None:
            names = ", ".join(t.scenario for t in target.probe_targets())
            return web.Response(
                status=400,
                text=f"target {name!r} has no scenario {scenario!r}; it has: {names}\n",
            )
        target = probed
    deadline = _deadline(request, target, state.timeout_offset)
    store = MetricStore()
    # The target's own layout, as the background store has it (same boundaries, so the
    # ad-hoc result reads like the scheduled ones): no need to lay out every target.
    config = state.holder.config
    store.configure(
        config.bucket_overrides(), config.thresholds(), {name: state.store.layout(name)}
    )
    try:
        record = await _run_adhoc(state, target, deadline, store)
    except ProbeRejected as exc:
        return web.Response(
            status=exc.status,
            text=f"{exc.message}\n",
            headers={"Retry-After": str(exc.retry_after)},
        )
    metrics_text = store.render()
    if request.query.get("debug") == "true":
        return web.Response(text=_debug_text(record, metrics_text, target))
    return web.Response(body=metrics_text.encode(), headers={"Content-Type": TEXT_CONTENT_TYPE})


async def _run_adhoc(
    state: ExporterState, target: TargetConfig, deadline: float, store: MetricStore
) -> ProbeRecord:
    """One ad-hoc probe inside the executor's ad-hoc pool (raises ProbeRejected), on the
    target's own session when its loop has one. Its result goes to `store` only (no
    other sink: an ad-hoc probe is an answer to one request, not a sample)."""
    sink = PrometheusSink(store)
    async with state.executor.adhoc_slot(target, deadline) as left:
        runner = state.scheduler.runners.get(target.name) if state.scheduler else None
        if runner is not None and runner.session is not None and not runner.session.closed:
            return await state.executor.run_adhoc(
                target, runner.session, sink, deadline=deadline, left=left
            )
        async with create_session(target.tls, reuse_connections=False) as session:
            return await state.executor.run_adhoc(
                target, session, sink, deadline=deadline, left=left
            )


def _debug_text(record: ProbeRecord, metrics_text: str, target: TargetConfig) -> str:
    result = record.result
    summary = "succeeded" if result.success else f"failed: {result.reason} ({result.detail})"
    if result.suspect:
        summary += f"\nprobe suspect: {', '.join(result.suspect)}"
    return (
        f"Logs for the probe:\n{chr(10).join(record.log)}\nprobe {summary}\n\n"
        f"Metrics that would have been returned:\n{metrics_text}\n"
        f"Target configuration:\n{yaml.safe_dump(target.redacted(), sort_keys=False)}"
    )


async def handle_healthy(_request: web.Request) -> web.Response:
    """Liveness."""
    return web.Response(text="Healthy\n")


async def handle_ready(request: web.Request) -> web.Response:
    """Readiness: the config is loaded and no loop has failed its restart budget."""
    state = request.app[EXPORTER]
    if not state.ready:
        return web.Response(status=503, text="Not ready\n")
    down = state.supervisor.down()
    if down:
        # Configured names only (targets, Flux instances): nothing secret.
        lines = "".join(
            f"{d.component} {d.name}: down after {d.failures} failures in a row\n"
            for d in sorted(down, key=lambda d: (d.component, d.name))
        )
        return web.Response(status=503, text="Not ready\n" + lines)
    return web.Response(text="Ready\n")


async def handle_reload(request: web.Request) -> web.Response:
    """POST /-/reload. 409 when there is no file to reload (the demo): the running
    config is fine, the request cannot apply to it."""
    state = request.app[EXPORTER]
    if state.holder.path is None:
        return web.Response(status=409, text=f"{NO_CONFIG_FILE}\n")
    error = await reload_config(state)
    if error is not None:
        return web.Response(status=500, text=f"failed to reload config: {error}\n")
    return web.Response(text="OK\n")


async def handle_config(request: web.Request) -> web.Response:
    """The running config, with secrets hidden."""
    config = request.app[EXPORTER].holder.config
    data = config.model_dump(mode="json", exclude={"targets"})
    # `defaults.headers` reaches every target, credentials included: hide them too.
    data["defaults"]["headers"] = redacted_headers(config.defaults.headers)
    data["targets"] = [t.redacted() for t in config.targets]
    if config.otel is not None:
        data["otel"] = config.otel.redacted()
    return web.Response(text=yaml.safe_dump(data, sort_keys=False))


async def handle_logs(request: web.Request) -> web.Response:
    """The log of one recent probe."""
    try:
        record = request.app[EXPORTER].history.get(int(request.query.get("id", "")))
    except ValueError:
        record = None
    if record is None:
        return web.Response(status=404, text="no such probe\n")
    result = record.result
    summary = "success" if result.success else f"failure: {result.reason} ({result.detail})"
    if result.suspect:
        summary += f" (suspect: {', '.join(result.suspect)})"
    return web.Response(text=f"target {record.target}: {summary}\n" + "\n".join(record.log) + "\n")


async def handle_index(request: web.Request) -> web.Response:
    """A small landing page: targets at a glance, Flux, recent probes, links."""
    state = request.app[EXPORTER]
    page = render_index(
        state.holder.config,
        state.history.records(),
        state.store,
        state.flux.running if state.flux is not None else {},
    )
    return web.Response(text=page, content_type="text/html")


def _cross_site(request: web.Request) -> bool:
    """A form POST from another site (the browser says so): refused, so that a page
    elsewhere cannot make a visitor's browser send paid probes."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin == "null"
    return URL(origin).host_port_subcomponent != request.host


async def handle_probe_now(request: web.Request) -> web.StreamResponse:
    """POST /-/probe-now (the index page's button): one ad-hoc probe of a configured
    target, with the same pool and one-per-target rules as /probe; then 303 to its log."""
    state = request.app[EXPORTER]
    if _cross_site(request):
        return web.Response(status=403, text="cross-site request refused\n")
    form = await request.post()
    name = form.get("target") or request.query.get("target")
    if not isinstance(name, str) or not name:
        return web.Response(status=400, text="target parameter is missing\n")
    target = state.holder.config.target(name)
    if target is None:
        state.metrics.target_unknown.inc()
        return web.Response(
            status=400,
            text=f"unknown target {name!r}: only configured target names can be probed\n",
        )
    store = MetricStore()
    store.configure(state.holder.config.bucket_overrides(), state.holder.config.thresholds())
    try:
        record = await _run_adhoc(state, target, target.timeout, store)
    except ProbeRejected as exc:
        return web.Response(
            status=exc.status,
            text=f"{exc.message}\n",
            headers={"Retry-After": str(exc.retry_after)},
        )
    # Relative to /-/probe-now, so it works behind a path prefix too.
    raise web.HTTPSeeOther(location=f"../logs?id={record.id}")


def create_app(state: ExporterState) -> web.Application:
    """The exporter application; its background work starts with the app."""
    middlewares = []
    web_config = state.web_config
    if web_config is not None and web_config.basic_auth_users:
        users = {u: h.get_secret_value() for u, h in web_config.basic_auth_users.items()}
        middlewares.append(auth_middleware(BasicAuth(users), state.metrics))
    app = web.Application(middlewares=middlewares)  # type: ignore[arg-type]
    if web_config is not None and web_config.http_server_config.headers:
        app.on_response_prepare.append(headers_on_prepare(web_config.http_server_config.headers))
    app[EXPORTER] = state
    app.cleanup_ctx.append(_lifecycle)
    app.cleanup_ctx.extend(state.extra_contexts)
    app.router.add_get("/", handle_index)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/probe", handle_probe)
    app.router.add_post("/-/probe-now", handle_probe_now)
    app.router.add_get("/-/healthy", handle_healthy)
    app.router.add_get("/-/ready", handle_ready)
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_put("/-/reload", handle_reload)
    app.router.add_get("/config", handle_config)
    app.router.add_get("/logs", handle_logs)
    return app


def load_state(path: Path, **kwargs: object) -> ExporterState:
    """Load the config at startup (raises ConfigError) and build the state."""
    config, checksum = load_config(path)
    return ExporterState(holder=ConfigHolder(path, config, checksum), **kwargs)  # type: ignore[arg-type]
