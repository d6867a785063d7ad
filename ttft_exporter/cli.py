"""Command line: `ttft-exporter [run|demo|config-schema|rules]` with Prometheus-style dotted
flags. `main()` only exits with what `run()` returns, so every exit path is testable."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ttft_exporter import __version__
from ttft_exporter.durations import parse_duration
from ttft_exporter.errors import ConfigError
from ttft_exporter.logs import fields, setup_logging

# The exporter's own modules (its server, config, listener, sinks) are imported by the
# functions that need them, not here: `ttft-exporter bench` goes through this module and
# must not pay for the exporter's dependencies (issue #14: RSS; tests/unit/bench/
# test_bench_imports.py guards it).
if TYPE_CHECKING:
    from aiohttp import web

    from ttft_exporter.listener import BoundSockets, ListenerLimits
    from ttft_exporter.rules import RuleOptions
    from ttft_exporter.server import ExporterState
    from ttft_exporter.shard import Shard

__all__ = ["DEFAULT_LISTEN", "build_parser", "main", "run"]

log = logging.getLogger("ttft_exporter")

# Outside 9100-9999, which the Prometheus default port allocations list has filled.
DEFAULT_PORT = 10099
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
COMMANDS = ("run", "demo", "config-schema", "rules")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also the source of the README's flag table)."""
    from ttft_exporter.executor import DEFAULT_ADHOC_CONCURRENCY
    from ttft_exporter.listener import (
        DEFAULT_IDLE_TIMEOUT,
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        DEFAULT_READ_HEADER_TIMEOUT,
    )

    parser = argparse.ArgumentParser(
        prog="ttft-exporter",
        description=(
            "Probe LLM endpoints with streaming requests and export TTFT and friends to Prometheus."
        ),
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=COMMANDS,
        help=(
            "run (default): the exporter; demo: simulator + exporter; "
            "config-schema: print the config JSON Schema; "
            "rules: print the Prometheus recording and alerting rules for the config; "
            "bench: load-test a target (ttft-exporter bench --help)"
        ),
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default="ttft.yml",
        help="configuration file (default: %(default)s)",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration file and exit 0 or 1",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        help="address to serve on (default: %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help=(
            "exporter-toolkit web config: TLS, client certificates, basic auth "
            "(default: none, plain HTTP without auth)"
        ),
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections to this server at most; more are closed at once "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--web.max-connections-per-client",
        dest="max_connections_per_client",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        help="open connections from one client address at most, so one client cannot "
        "take every slot (default: %(default)s)",
    )
    parser.add_argument(
        "--web.read-header-timeout",
        dest="read_header_timeout",
        default=f"{DEFAULT_READ_HEADER_TIMEOUT:g}s",
        help="a new connection must finish its TLS handshake and first request head "
        "within this (default: %(default)s)",
    )
    parser.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        default=f"{DEFAULT_IDLE_TIMEOUT:g}s",
        help="close keep-alive connections idle this long (default: %(default)s)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=("debug", "info", "warn", "error"),
    )
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json")
    )
    parser.add_argument(
        "--probe.timeout-offset",
        dest="timeout_offset",
        default="0.5s",
        help="subtracted from Prometheus' scrape timeout for /probe (default: %(default)s)",
    )
    parser.add_argument(
        "--probe.adhoc-concurrency",
        dest="adhoc_concurrency",
        type=int,
        default=DEFAULT_ADHOC_CONCURRENCY,
        help="/probe probes running at once, apart from the scheduled ones (default: %(default)s)",
    )
    parser.add_argument(
        "--history.limit",
        dest="history_limit",
        type=int,
        default=100,
        help="recent probes kept for the index page (default: %(default)s)",
    )
    parser.add_argument(
        "--rules.output-dir",
        dest="rules_output_dir",
        default=None,
        help="rules: write one file per rule family into this directory instead of printing",
    )
    parser.add_argument(
        "--rules.job",
        dest="rules_job",
        default=None,
        help="rules: regex of the Prometheus job label every rule selects "
        "(default: slos.job, which defaults to ttft-exporter)",
    )
    parser.add_argument(
        "--rules.runbook-url",
        dest="rules_runbook_url",
        default=None,
        help="rules: runbook_url of every alert, {alertname} becoming the lower-cased "
        "alert name (default: slos.runbook_url)",
    )
    parser.add_argument(
        "--format",
        dest="rules_format",
        default="prometheus",
        choices=("prometheus", "sloth", "helm-values"),
        help="rules: Prometheus rule files, Sloth prometheus/v1 specs of the SLOs, or "
        "values for the Helm chart's PrometheusRule (default: %(default)s)",
    )
    parser.add_argument(
        "--helm.values-file",
        dest="helm_values_files",
        action="append",
        default=None,
        help="rules --format=helm-values: a Helm values file of the chart whose `config:` "
        "the rules are for; repeat in `helm -f` order (they are merged as Helm merges them)",
    )
    parser.add_argument(
        "--shard.index",
        dest="shard_index",
        type=int,
        default=None,
        help="this replica's shard, 0 to --shard.count - 1: probe only the targets whose "
        "name hashes to it (Prometheus hashmod; default: the config's shard.index)",
    )
    parser.add_argument(
        "--shard.count",
        dest="shard_count",
        type=int,
        default=None,
        help="how many replicas share the targets (default: the config's shard.count)",
    )
    parser.add_argument("--version", action="version", version=f"ttft-exporter {__version__}")
    return parser


def parse_listen(address: str) -> tuple[str, int]:
    """`host:port` or `:port` (all interfaces) into a host and a port."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid listen address {address!r}: want host:port or :port")
    if int(port) > 65535:
        # Else the bind fails later with a traceback instead of a usage error.
        raise ValueError(f"invalid listen address {address!r}: port must be 0-65535")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - Prometheus' default, as flags say


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        # The load tester has subcommands and flags of its own (ttft_exporter/bench/).
        from ttft_exporter.bench.cli import run as run_bench

        return run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging("warning" if args.log_level == "warn" else args.log_level, args.log_format)
    if args.command == "config-schema":
        from ttft_exporter.config import Config

        print(json.dumps(Config.model_json_schema(mode="validation"), indent=2))
        return 0
    if args.command == "rules":
        return _rules(args)
    try:
        host, port = parse_listen(args.listen)
        timeout_offset = parse_duration(args.timeout_offset)
        limits = _limits(args)
        if args.adhoc_concurrency < 1:
            raise ValueError("--probe.adhoc-concurrency must be at least 1")
        shard = _shard(args)
    except ValueError as exc:
        print(f"ttft-exporter: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        from ttft_exporter.demo import run_demo

        return run_demo(host if args.listen != DEFAULT_LISTEN else "127.0.0.1", port)
    from ttft_exporter.server import load_state
    from ttft_exporter.webconfig import load_web_config

    try:
        web_config = None if args.web_config_file is None else load_web_config(args.web_config_file)
        state = load_state(
            Path(args.config_file),
            timeout_offset=timeout_offset,
            history_limit=args.history_limit,
            adhoc_concurrency=args.adhoc_concurrency,
            web_config=web_config,
            shard_override=shard,
        )
    except ConfigError as exc:
        print(f"ttft-exporter: {exc}", file=sys.stderr)
        return 1
    if args.config_check:
        config = state.holder.config
        owner = state.shard()
        shown = f"{len(config.targets)} targets"
        if owner.sharded:
            mine = len(owner.select(config.targets, lambda t: t.name))
            shown += f", {mine} on shard {owner}"
        print(f"config file {args.config_file} is ok: {shown}")
        if args.web_config_file is not None:
            print(f"web config file {args.web_config_file} is ok")
        return 0
    return serve(state, host, port, limits)


def _shard(args: argparse.Namespace) -> Shard | None:
    """The --shard.* flags, which come as a pair; None leaves it to the config file."""
    index, count = args.shard_index, args.shard_count
    if index is None and count is None:
        return None
    if index is None or count is None:
        raise ValueError("--shard.index and --shard.count go together: set both or neither")
    from ttft_exporter.shard import Shard

    try:
        return Shard(index, count)
    except ValueError as exc:
        raise ValueError(f"--shard.index/--shard.count: {exc}") from None


def _limits(args: argparse.Namespace) -> ListenerLimits:
    if args.max_connections < 1:
        raise ValueError("--web.max-connections must be at least 1")
    if args.max_connections_per_client < 1:
        raise ValueError("--web.max-connections-per-client must be at least 1")
    from ttft_exporter.listener import ListenerLimits

    limits = ListenerLimits(
        max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
        read_header_timeout=parse_duration(args.read_header_timeout),
        idle_timeout=parse_duration(args.idle_timeout),
    )
    if limits.read_header_timeout <= 0 or limits.idle_timeout <= 0:
        raise ValueError("--web.read-header-timeout and --web.idle-timeout must be positive")
    return limits


def _rules(args: argparse.Namespace) -> int:
    """`ttft-exporter rules`: the recording and alerting rules for a config."""
    from ttft_exporter.config import load_config
    from ttft_exporter.rules import RuleOptions, RulesError, render_combined, write_rule_files
    from ttft_exporter.rules.sloth import render_sloth

    config_file: str = args.config_file
    options = RuleOptions(job=args.rules_job, runbook_url=args.rules_runbook_url)
    if args.rules_format == "helm-values":
        return _rules_helm_values(args, options)
    try:
        config, _ = load_config(config_file, resolve_secrets=False)
        if args.rules_format == "sloth":
            print(render_sloth(config, options.context(config), source=config_file), end="")
            return 0
        if args.rules_output_dir is None:
            print(render_combined(config, source=config_file, options=options), end="")
            return 0
        written = write_rule_files(
            config, Path(args.rules_output_dir), source=config_file, options=options
        )
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    except (ConfigError, RulesError, OSError) as exc:
        print(f"ttft-exporter: {exc}", file=sys.stderr)
        return 1
    return 0


def _rules_helm_values(args: argparse.Namespace, options: RuleOptions) -> int:
    """`rules --format=helm-values`: the chart's PrometheusRule values for the `config:`
    of Helm values files, with the checksum the chart checks them against."""
    from ttft_exporter.config import parse_config
    from ttft_exporter.rules import RulesError, render_combined
    from ttft_exporter.rules.helm import helm_merge, load_values_file, render_helm_values

    files: list[str] = args.helm_values_files or []
    if not files:
        print("ttft-exporter: --format=helm-values needs --helm.values-file", file=sys.stderr)
        return 2
    merged: dict[str, object] = {}
    try:
        for name in files:
            merged = helm_merge(merged, load_values_file(Path(name)))
        config_data = merged.get("config") or {}
        config = parse_config(config_data, source=" + ".join(files), resolve_secrets=False)
        command = "ttft-exporter rules --format=helm-values " + " ".join(
            f"--helm.values-file={name}" for name in files
        )
        text = render_combined(config, source=files[0], options=options, command=command)
    except (ConfigError, RulesError) as exc:
        print(f"ttft-exporter: {exc}", file=sys.stderr)
        return 1
    print(render_helm_values(text, config_data), end="")
    return 0


async def _signals(app: web.Application) -> AsyncIterator[None]:
    from ttft_exporter.server import EXPORTER

    loop = asyncio.get_running_loop()
    # The reload itself runs as a job of the app lifecycle (server.py).
    loop.add_signal_handler(signal.SIGHUP, app[EXPORTER].reload_requested.set)
    yield
    loop.remove_signal_handler(signal.SIGHUP)


def serve(state: ExporterState, host: str, port: int, limits: ListenerLimits | None = None) -> int:
    """Serve until SIGTERM/SIGINT, draining background work on the way out."""
    from ttft_exporter.listener import ListenerLimits

    return asyncio.run(_serve(state, host, port, limits or ListenerLimits()))


async def _serve(state: ExporterState, host: str, port: int, limits: ListenerLimits) -> int:
    # Bind first: a port in use is one line and exit 1, before any probe starts (the
    # app's startup starts the probe loops) and before any other line is logged.
    from ttft_exporter.listener import BoundSockets, bind_error_text

    try:
        sockets = await BoundSockets.bind(host, port)
    except OSError as exc:
        print(
            f"ttft-exporter: cannot listen on {host}:{port}: {bind_error_text(exc)}",
            file=sys.stderr,
        )
        return 1
    try:
        return await _serve_bound(state, sockets, host, port, limits)
    finally:
        sockets.server.close()


async def _serve_bound(
    state: ExporterState, sockets: BoundSockets, host: str, port: int, limits: ListenerLimits
) -> int:
    from aiohttp import web

    from ttft_exporter.listener import (
        ConnectionGuard,
        GatedSite,
        install_accept_error_handler,
        raise_fd_limit,
    )
    from ttft_exporter.server import create_app
    from ttft_exporter.webconfig import WebConfig, build_server_ssl_context

    soft, _hard = raise_fd_limit()
    # Probes, Flux and the server share the descriptors, and asyncio accepts up to a
    # 128-socket backlog per wake-up before the guard can refuse any (a starved loop
    # can hold more than one batch): keep room beside the cap.
    if limits.max_connections > soft // 2 or limits.max_connections + 2 * 128 + 64 > soft:
        log.warning(
            "--web.max-connections leaves too few of the open-files limit for probes",
            extra=fields(max_connections=limits.max_connections, open_files_limit=soft),
        )
    loop = asyncio.get_running_loop()
    install_accept_error_handler(loop, state.metrics)
    web_config = state.web_config or WebConfig()
    tls = web_config.tls_server_config
    context = None if tls is None else build_server_ssl_context(tls)
    app = create_app(state)
    app.cleanup_ctx.append(_signals)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=5.0, keepalive_timeout=limits.idle_timeout
    )
    await runner.setup()
    stop = asyncio.Event()
    try:
        site = GatedSite(
            runner,
            host,
            port,
            guard=ConnectionGuard(limits, state.metrics),
            ssl_context=context,
            sockets=sockets,
        )
        await site.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        scheme = "https" if context is not None else "http"
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        port = site.port  # the bound one, for `:0`
        log.info(
            "serving",
            extra=fields(
                version=__version__,
                metrics=f"{scheme}://{shown}:{port}/metrics",
                config=str(state.holder.path),
                max_connections=limits.max_connections,
            ),
        )
        print(
            f"ttft-exporter {__version__}: metrics at {scheme}://{shown}:{port}/metrics",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
