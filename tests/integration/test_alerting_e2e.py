"""End to end through the real stack: simulator -> exporter -> Prometheus 2.42 (1 s scrape
and evaluation, the generated rules with every window and `for:` divided by 60) ->
Alertmanager 0.25 (the committed routing tree, webhook URLs pointed here) -> a webhook
receiver. A TTFT regression injected into the simulator must page the owning team
(the target's static `team` label routes it to that team's pager) with
TTFTLatencyRegression and resolve when removed; a healthy phase before it, and a
control target of another team healthy throughout, must deliver nothing. The delays from injection to
the webhook are printed and written to benchmarks/results/alert_delay.txt.

A second test checks the inhibition rules of the routing tree in a real Alertmanager.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.helpers import free_port, poll, require_tool, terminate
from ttft_exporter.config import Config, ConfigHolder, parse_config
from ttft_exporter.rules import E2E_TIME_SCALE, RuleOptions, render_rule_files
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.llm import LLMSimConfig, ModelBehaviour, run_llm_sim

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AM_CONFIG = ROOT / "alerts" / "alertmanager" / "alertmanager.yml"
RESULTS = ROOT / "benchmarks" / "results" / "alert_delay.txt"
JOB = "ttft-exporter"
# Probes every second; the regressed TTFT (0.6 s) is above the 0.3 s threshold and
# still inside the 0.9 s probe timeout, so the probes stay successful and slow.
THRESHOLD = 0.3
HEALTHY_TTFT = 0.05
REGRESSED_TTFT = 0.6
INTERVAL = 1.0
# Shortened rules: p95 over 5s, for: 5s (TTFTLatencyRegression's 5m and 5m, / 60).
FOR_SECONDS = 300 * E2E_TIME_SCALE
WINDOW_SECONDS = 300 * E2E_TIME_SCALE
SCRAPE = EVAL = 1.0
# Long enough that anything the healthy series could trip (for: 5s over a 5s window,
# plus scrape, evaluation and Alertmanager) would have been delivered.
HEALTHY_PHASE = 15.0
STARTUP_CAP = 20.0  # Prometheus 2.42 discovers targets and Alertmanagers after ~5.6 s
FIRE_CAP = 25.0
RESOLVE_CAP = 25.0
# The exporter runs in this process, sharing its event loop with the simulator, and the
# suite must pass on a box kept busy by `stress-ng --cpu 2`: there the exporter's warning
# that it was starved (>10% of a target's probes overlapped a loop lag above 10 ms) is
# true, and says nothing about the targets. Seen firing for e2e-control in 2 of 3 runs
# under load. Allowed, only when the exporter's suspect counter backs it; the rule
# itself has its promtool tests.
STARVED = "TTFTExporterStarved"


@dataclass
class Process:
    """A server started by this test, stopped by its PID."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        terminate(self.popen, grace=5.0)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()


def start(processes: list[Process], name: str, args: list[str], log: Path) -> Process:
    with log.open("wb") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    process = Process(name, popen, log)
    processes.append(process)
    return process


@dataclass
class Webhook:
    """Every notification Alertmanager posts, with its arrival time."""

    url: str
    received: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def alerts(self, since: float = 0.0) -> list[tuple[float, str, dict[str, Any]]]:
        """(arrival, receiver path, alert) of every alert in every notification."""
        return [
            (at, path, alert)
            for at, path, body in self.received
            if at >= since
            for alert in body.get("alerts", [])
        ]


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook("")

    async def receive(request: web.Request) -> web.Response:
        hook.received.append((time.monotonic(), request.path, await request.json()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{receiver}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hook.url = f"http://127.0.0.1:{port}"
    yield hook
    await runner.cleanup()


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The committed routing tree with its receivers pointed at `webhook_url` and its
    timers shortened (nothing else changed: routes, grouping and inhibition are real)."""
    config: dict[str, Any] = yaml.safe_load(AM_CONFIG.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook_url}/{receiver['name']}"
    config["route"].update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    for route in config["route"]["routes"]:
        route.pop("repeat_interval", None)
    return config


def start_alertmanager(processes: list[Process], tmp: Path, webhook_url: str) -> str:
    binary = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    port = free_port()
    (tmp / "am.yml").write_text(yaml.safe_dump(alertmanager_config(webhook_url)))
    start(
        processes,
        "alertmanager",
        [
            binary,
            f"--config.file={tmp / 'am.yml'}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Empty: no gossip port, no 2 s wait for a cluster to settle.
            "--cluster.listen-address=",
        ],
        tmp / "am.log",
    )
    return f"http://127.0.0.1:{port}"


async def ready(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def query(session: aiohttp.ClientSession, prom: str, expr: str) -> list[dict[str, Any]]:
    async with session.get(f"{prom}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


E2E_CONFIG = """
targets:
  - name: e2e-regress
    protocol: openai-chat
    url: {url}/v1
    model: sim-regress
    prompt: hi
    interval: 1s
    timeout: 900ms
    labels: {{team: ml-platform, env: prod}}
  - name: e2e-control
    protocol: openai-chat
    url: {url}/v1
    model: sim-control
    prompt: hi
    interval: 1s
    timeout: 900ms
    labels: {{team: search, env: prod}}
slos:
  ttft_threshold: 300ms
  # This test pages on the p95 threshold alert (a warning by default): it fires
  # within seconds of the injection, where the burn-rate page needs its windows.
  ttft_regression_severity: critical
  targets:
    - selector: {{name: e2e-regress}}
      ttft: {{objective: 0.99}}
      availability: {{objective: 0.99}}
"""


@dataclass
class Stack:
    sim_url: str
    prom: str
    config: Config


@pytest.fixture
async def stack(tmp_path: Path, processes: list[Process], webhook: Webhook) -> AsyncIterator[Stack]:
    prometheus = require_tool("prometheus", "prometheus")
    behaviour = ModelBehaviour(ttft=HEALTHY_TTFT, itl=0.005, tokens=8)
    sim_runner, sim_port = await run_llm_sim(
        LLMSimConfig(models={"sim-regress": behaviour, "sim-control": behaviour})
    )
    sim_url = f"http://127.0.0.1:{sim_port}"
    config = parse_config(yaml.safe_load(E2E_CONFIG.format(url=sim_url)), "e2e.yml")
    state = ExporterState(holder=ConfigHolder(None, config), start_jitter=False)
    runner = web.AppRunner(create_app(state), access_log=None)
    await runner.setup()
    exporter_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", exporter_port).start()
    try:
        am = start_alertmanager(processes, tmp_path, webhook.url)
        rules = tmp_path / "rules"
        rules.mkdir()
        prom_port = free_port()
        (tmp_path / "prom.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": f"{SCRAPE:g}s",
                        "scrape_timeout": f"{SCRAPE:g}s",
                        "evaluation_interval": f"{EVAL:g}s",
                    },
                    "rule_files": [str(rules / "*.yaml")],
                    "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am[7:]]}]}]},
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                        }
                    ],
                }
            )
        )
        start(
            processes,
            "prometheus",
            [
                prometheus,
                f"--config.file={tmp_path / 'prom.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--web.enable-lifecycle",
            ],
            tmp_path / "prom.log",
        )
        prom = f"http://127.0.0.1:{prom_port}"
        async with aiohttp.ClientSession() as session:
            await poll(lambda: ready(session, f"{am}/-/ready"), "Alertmanager ready", 10)
            await poll(lambda: ready(session, f"{prom}/-/ready"), "Prometheus ready", 10)
            await poll(
                lambda: query(session, prom, f'up{{job="{JOB}"}} == 1'),
                "the exporter scraped",
                STARTUP_CAP,
            )

            async def alertmanagers() -> list[Any]:
                async with session.get(f"{prom}/api/v1/alertmanagers") as response:
                    active: list[Any] = (await response.json())["data"]["activeAlertmanagers"]
                return active

            await poll(alertmanagers, "Prometheus to discover Alertmanager", STARTUP_CAP)
            # Rules only now, with series present: absent()-based alerts would otherwise
            # race the first scrape, which 2.42 delays by ~5.6 s.
            for name, text in render_rule_files(
                config, source="e2e.yml", options=RuleOptions(time_scale=E2E_TIME_SCALE)
            ).items():
                (rules / name).write_text(text)
            async with session.post(f"{prom}/-/reload") as response:
                assert response.status == 200, await response.text()
            await poll(
                lambda: query(
                    session, prom, "target:ttft_probe_time_to_first_token_seconds:p95_5m"
                ),
                "the recording rules to produce p95 TTFT",
                10,
            )
        yield Stack(sim_url, prom, config)
    except BaseException:
        for process in processes:
            print(f"--- {process.name} log\n{process.tail()}")
        raise
    finally:
        await runner.cleanup()
        await sim_runner.cleanup()


def _matches(alert: dict[str, Any], name: str, target: str, status: str) -> bool:
    labels = alert["labels"]
    return bool(
        labels.get("alertname") == name
        and labels.get("target") == target
        and alert["status"] == status
    )


def _about_targets(alert: dict[str, Any]) -> bool:
    return bool(alert["labels"].get("alertname") != STARVED)


async def _assert_starved_is_true(
    session: aiohttp.ClientSession, prom: str, webhook: Webhook
) -> None:
    """Every TTFTExporterStarved delivered is backed by suspect probes of its target."""
    for target in {a["labels"]["target"] for _, _, a in webhook.alerts() if not _about_targets(a)}:
        suspect = await query(session, prom, f'sum(ttft_probe_suspect_total{{target="{target}"}})')
        assert suspect and float(suspect[0]["value"][1]) > 0, f"{STARVED} of {target} unbacked"


async def test_ttft_regression_pages_and_resolves(stack: Stack, webhook: Webhook) -> None:
    async with aiohttp.ClientSession() as session:
        # Healthy run: nothing about a target may be delivered, to any receiver.
        healthy_from = time.monotonic()
        await asyncio.sleep(HEALTHY_PHASE)
        delivered = [a for _, _, a in webhook.alerts() if _about_targets(a)]
        assert delivered == [], "a healthy run delivered notifications"
        async with session.get(f"{stack.prom}/api/v1/alerts") as response:
            alerts = (await response.json())["data"]["alerts"]
        assert [a for a in alerts if a["state"] == "firing" and _about_targets(a)] == []

        # Inject the regression.
        patch_url = f"{stack.sim_url}/sim/models/sim-regress"
        async with session.patch(patch_url, json={"ttft": REGRESSED_TTFT}) as response:
            assert response.status == 200
        injected = time.monotonic()

        async def fired() -> list[Any]:
            return [
                (at, path, a)
                for at, path, a in webhook.alerts(injected)
                if _matches(a, "TTFTLatencyRegression", "e2e-regress", "firing")
            ]

        at, path, alert = (await poll(fired, "the firing page", FIRE_CAP))[0]
        fire_delay = at - injected
        # Routed by the target's team to that team's pager.
        assert path == "/ml-platform-pager"
        # Every label but the exporter replica's (instance) reaches the alert: the
        # static labels and the job, so a shared Alertmanager can route it.
        assert alert["labels"] == {
            "alertname": "TTFTLatencyRegression",
            "severity": "critical",
            "sloth_service": "e2e-regress",
            "target": "e2e-regress",
            "model": "sim-regress",
            "protocol": "openai-chat",
            # Every probe series carries its scenario (#10): `default` without scenarios.
            "scenario": "default",
            "job": JOB,
            "team": "ml-platform",
            "env": "prod",
        }
        assert alert["annotations"]["threshold"] == "0.3"
        assert alert["annotations"]["summary"] == "p95 time to first token is above its threshold"
        assert alert["annotations"]["description"].startswith(
            "p95 TTFT of e2e-regress (sim-regress, openai-chat) over the last 5m is 0."
        )
        assert alert["annotations"]["runbook_url"].endswith("runbooks.md#ttftlatencyregression")

        # Remove it.
        async with session.patch(patch_url, json={"ttft": HEALTHY_TTFT}) as response:
            assert response.status == 200
        reverted = time.monotonic()

        async def resolved() -> list[Any]:
            return [
                (at, path, a)
                for at, path, a in webhook.alerts(reverted)
                if _matches(a, "TTFTLatencyRegression", "e2e-regress", "resolved")
            ]

        at, path, alert = (await poll(resolved, "the resolved notification", RESOLVE_CAP))[0]
        resolve_delay = at - reverted
        assert path == "/ml-platform-pager"
        ended = time.monotonic()
        await _assert_starved_is_true(session, stack.prom, webhook)

    # The control target was healthy for the whole run, as long as the regressed one.
    about_targets = [a for _, _, a in webhook.alerts() if _about_targets(a)]
    control = [a for a in about_targets if a["labels"].get("target") == "e2e-control"]
    assert control == [], "the healthy control target was alerted on"
    other = {
        a["labels"]["alertname"]
        for a in about_targets
        if a["labels"].get("target") != "e2e-regress"
    }
    assert other == set(), f"unexpected alerts: {other}"
    _report(fire_delay, resolve_delay, ended - healthy_from)


def _report(fire: float, resolve: float, run: float) -> None:
    # The floor for firing: scrape + evaluation + for. The range around it:
    # at best the first slow probe starts at the injection and its first token lands
    # REGRESSED_TTFT later, then the rule holds for `for:`; at worst add the wait for
    # the next probe, one scrape, one evaluation and one more for the hop from the
    # recording group (p95) to the alert group, which Prometheus runs independently.
    floor = SCRAPE + EVAL + FOR_SECONDS
    fire_min = REGRESSED_TTFT + FOR_SECONDS
    fire_max = INTERVAL + REGRESSED_TTFT + SCRAPE + 2 * EVAL + FOR_SECONDS
    # Resolving needs the last slow observation out of the rate window: at best the
    # window minus one scrape; at worst the in-flight slow probe, a scrape, the window,
    # the two evaluations and Alertmanager's group_interval (1 s).
    resolve_min = WINDOW_SECONDS - SCRAPE
    resolve_max = REGRESSED_TTFT + SCRAPE + WINDOW_SECONDS + 2 * EVAL + 1.0
    text = (
        "TTFTLatencyRegression end to end (simulator -> exporter -> Prometheus 2.42 -> "
        "Alertmanager 0.25 -> webhook)\n"
        f"settings: probe every {INTERVAL:g}s, scrape {SCRAPE:g}s, evaluation {EVAL:g}s, "
        f"p95 window {WINDOW_SECONDS:g}s, for {FOR_SECONDS:g}s, group_wait 0s, "
        f"group_interval 1s; TTFT {HEALTHY_TTFT:g}s -> {REGRESSED_TTFT:g}s "
        f"(threshold {THRESHOLD:g}s)\n"
        f"firing:   {fire:.2f}s from injection to the pager webhook; theoretical floor "
        f"scrape + evaluation + for = {floor:g}s (expected range "
        f"{fire_min:.1f}-{fire_max:.1f}s)\n"
        f"resolved: {resolve:.2f}s from removal to the resolved notification (expected "
        f"range {resolve_min:.1f}-{resolve_max:.1f}s)\n"
        f"healthy: a {HEALTHY_PHASE:g}s healthy phase and a control target healthy for "
        f"the whole {run:.1f}s run delivered no notification\n"
    )
    print("\n" + text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


async def test_alertmanager_inhibits_warnings_of_a_paging_target(
    tmp_path: Path, processes: list[Process]
) -> None:
    # No receiver listens on port 9: notifications fail, which does not matter here.
    am = start_alertmanager(processes, tmp_path, "http://127.0.0.1:9")
    alerts = [
        {"alertname": "TTFTLatencyRegression", "severity": "critical", "target": "a"},
        {"alertname": "TTFTRelativeRegression", "severity": "warning", "target": "a"},
        {"alertname": "TTFTRelativeRegression", "severity": "warning", "target": "b"},
        {"alertname": "FluxStreamDown", "severity": "critical", "flux": "f"},
        {"alertname": "FluxStreamStale", "severity": "warning", "flux": "f"},
        {"alertname": "FluxStreamStale", "severity": "warning", "flux": "g"},
        {"alertname": "TTFTExporterDown", "severity": "critical", "job": "ttft-exporter"},
        {
            "alertname": "LLMProbeAbsent",
            "severity": "warning",
            "target": "c",
            "job": "ttft-exporter",
        },
        # Another team's alerts in the same Alertmanager: their critical alerts, with
        # or without a label called target, silence none of ours, and ours none of
        # theirs.
        {"alertname": "NodeDown", "severity": "critical"},
        {"alertname": "ApiSlow", "severity": "critical", "target": "d"},
        {"alertname": "TTFTRelativeRegression", "severity": "warning", "target": "d"},
        {"alertname": "TTFTExporterConfigReloadFailed", "severity": "warning"},
        {"alertname": "DiskFilling", "severity": "warning", "target": "a"},
    ]
    async with aiohttp.ClientSession() as session:
        await poll(lambda: ready(session, f"{am}/-/ready"), "Alertmanager ready", 10)
        body = [{"labels": labels, "annotations": {"summary": "test"}} for labels in alerts]
        async with session.post(f"{am}/api/v2/alerts", json=body) as response:
            assert response.status == 200, await response.text()

        expected = {
            ("TTFTLatencyRegression", "a"): "active",
            ("TTFTRelativeRegression", "a"): "suppressed",  # same target pages
            ("TTFTRelativeRegression", "b"): "active",
            ("FluxStreamDown", "f"): "active",
            ("FluxStreamStale", "f"): "suppressed",  # same Flux instance pages
            ("FluxStreamStale", "g"): "active",
            ("TTFTExporterDown", ""): "active",
            ("LLMProbeAbsent", "c"): "suppressed",  # the exporter is down
            ("NodeDown", ""): "active",
            ("ApiSlow", "d"): "active",
            ("TTFTRelativeRegression", "d"): "active",  # not by another team's alert
            ("TTFTExporterConfigReloadFailed", ""): "active",
            ("DiskFilling", "a"): "active",  # not by our page of target a
        }
        seen: dict[tuple[str, str], str] = {}

        async def inhibited() -> bool:
            # The inhibitor learns of new alerts asynchronously: right after the POST a
            # warning can still show as active (or unprocessed) for a moment.
            async with session.get(f"{am}/api/v2/alerts") as response:
                got = await response.json()
            seen.clear()
            for a in got:
                labels = a["labels"]
                seen[(labels["alertname"], labels.get("target") or labels.get("flux", ""))] = a[
                    "status"
                ]["state"]
            return seen == expected

        for _ in range(100):  # at most 10 s
            if await inhibited():
                break
            await asyncio.sleep(0.1)
    assert seen == expected
