"""Soak (issue #8): the real exporter for 5 minutes with 20 healthy targets at a 1 s
interval and one hostile peer of each kind, sampling its RSS, open descriptors, task
count and the healthy targets' TTFT every 5 s.

The exporter runs in a child process (`benchmarks/soak_exporter.py`: the real
`cli.serve` path with its connection cap, header deadline and fd limit, plus an
in-process sampler, since the asyncio task count can only be read from inside). The
open-files limit of the child is set to 1024 (soft and hard, `--nofile`), the common
default under which the slowloris fault was first seen. The LLM simulator and the two
bulk hostile servers (`tests/hostile_server.py`) run in processes of their own; the
other hostile servers, the slowloris client, the scrapes, the /probe bursts and the
reloads run in this process.

Probe targets (interval 1 s, timeout 900 ms, `concurrency: 64`):
- `healthy-00` … `healthy-19`: the reference stream (first text at 300 ms, 20 chunks).
- `hostile-stall`: headers, the role chunk and 4 tokens, then nothing (item 6/10).
- `hostile-long-line`: `data: ` and 200 MB without a line end (item 6).
- `hostile-huge-stream`: 200 MB of valid chunks, above `max_response_bytes` (item 11).
- `hostile-redirect`: 307 to another local server, with an API key and an
  `X-Auth-Token` configured (item 12; the other server counts what reaches it).
- `hostile-usage`: a valid stream whose usage claims 1e18 completion tokens (item 15).
- `hostile-echo-key`: 401 with the API key and the token echoed back, in four forms in
  turn: across the 4096-byte read, across the excerpt cut, JSON `\\u` escaped,
  percent-encoded (items 13, 14).
- `hostile-expect`: `expect: ^(\\w+\\s?)+!$` on a 40-letter answer, exponential for a
  backtracking engine (item 5).
Flux instances:
- `flux-hostile-frames`: a real `metrics_update` each second, each followed by one
  hostile frame (negative, huge, string and boolean `events.total`, 5000 fractional
  digits, year 1, non-ASCII digits, not JSON) (item 1).
- `flux-garbage-http`: a raw TCP server answering malformed HTTP to the canary (every
  second) and to the WebSocket upgrade (items 3, 4).
Clients, after a 60 s baseline of the healthy targets alone (then a reload adds the rest),
in cycles of 30 s (10 s with `--quick`):
- slowloris for the first half of each cycle: 300 connections that send part of a
  request head and a byte every 5 s, reopened 0.5 s after the exporter closes them
  (item 9; the cap is 256).
- in the middle of each half, 100 concurrent `/probe` calls (stall, huge stream,
  expect), each on a new connection (item 10);
- in the middle of each half, the config file replaced by one with a 9⁹-leaf YAML bomb
  in `extra_body` and a reload (must fail and keep the running config), then the good
  file back and a reload (items 7, 8): by SIGHUP while slowloris fills the cap, by
  `POST /-/reload` otherwise.
- `/metrics` scraped every 5 s on a kept-alive connection, as Prometheus does.

At the end: `/`, `/logs`, `/config`, `/metrics`, `/probe?debug=true` of the echo target
and the exporter's whole log are searched for the secrets (the full values, any 8-char
prefix, the escaped forms); SIGTERM, and the time to exit.

Reported: per-sample series, growth (mean of the first minute vs the last minute),
maxima, healthy success ratio and TTFT p50/p99 (whole run, first and last minute),
each hostile target's outcome by reason, Flux counters, the listener's drop counters.

Usage: ``python -m benchmarks.bench_soak [--duration 300] [--quick] [--json PATH]``
(`--quick` is 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import REFERENCE, REPO, emit, log, pct, proc_cpu_seconds, sim_process
from benchmarks.soak_servers import (
    CaptureServer,
    EchoKeyServer,
    FluxFramesServer,
    GarbageHTTPServer,
    ImplausibleUsageServer,
    RedirectServer,
    Slowloris,
    free_port,
)

HEALTHY = 20
SAMPLE_INTERVAL = 5.0
NOFILE = 1024
SLOWLORIS_CONNECTIONS = 300
BURST = {"hostile-stall": 50, "hostile-huge-stream": 25, "hostile-expect": 25}
EXPECT_BACKTRACKING = r"^(\w+\s?)+!$"
KEY_ENV = "SOAK_API_KEY"
TOKEN_ENV = "SOAK_AUTH_TOKEN"  # noqa: S105 - the variable's name, not its value
SCRAPE_TIMEOUT = 10.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

MODELS: dict[str, dict[str, Any]] = {
    "ref": REFERENCE,
    # The role chunk and 4 tokens, then silence with the connection open.
    "stall": {**REFERENCE, "ttft": 0.05, "stall_after": 4, "keepalive_interval": None},
    # 40 letters: `(\w+\s?)+!$` has 2^40 ways to fail on it in a backtracking engine.
    "letters": {"ttft": 0.05, "itl": 0.0, "tokens": 40, "token_text": "a"},
}

BOMB = """
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def build_config(urls: dict[str, str], sim_url: str, *, hostile: bool = True) -> dict[str, Any]:
    """The soak's config file as data (`hostile=False`: the healthy targets alone)."""
    credentials = {
        "api_key_env": KEY_ENV,
        "headers": {"X-Auth-Token": {"value_env": TOKEN_ENV}},
    }
    targets: list[dict[str, Any]] = [
        {"name": f"healthy-{i:02d}", "url": sim_url, "model": "ref"} for i in range(HEALTHY)
    ]
    targets += [
        {"name": "hostile-stall", "url": sim_url, "model": "stall"},
        {"name": "hostile-long-line", "url": urls["long-line"], "model": "m"},
        {"name": "hostile-huge-stream", "url": urls["huge-stream"], "model": "m"},
        {"name": "hostile-redirect", "url": urls["redirect"], "model": "m", **credentials},
        {"name": "hostile-usage", "url": urls["usage"], "model": "m"},
        {"name": "hostile-echo-key", "url": urls["echo"], "model": "m", **credentials},
        {
            "name": "hostile-expect",
            "url": sim_url,
            "model": "letters",
            "expect": EXPECT_BACKTRACKING,
        },
    ]
    if not hostile:
        targets = targets[:HEALTHY]
    # `targets` last: the bomb config appends one more target to this text.
    return {
        "concurrency": 64,
        "defaults": {"interval": "1s", "timeout": "900ms"},
        "flux": []
        if not hostile
        else [
            {"name": "flux-hostile-frames", "url": urls["flux-frames"]},
            {
                "name": "flux-garbage-http",
                "url": urls["flux-garbage"],
                "reconnect": {"initial": "500ms", "max": "5s"},
                "canary": {"interval": "1s", "timeout": "500ms"},
            },
        ],
        "targets": [{"protocol": "openai-chat", "prompt": "hello", **t} for t in targets],
    }


def bomb_config_text(good: str) -> str:
    """The good file plus one target whose `extra_body` is a YAML bomb."""
    return (
        good
        + """- name: bomb
  protocol: openai-chat
  url: http://127.0.0.1:9/v1
  model: m
  prompt: hi
  extra_body:"""
        + BOMB
    )


def write_atomic(path: Path, text: str) -> None:
    """Replace the file in one rename, so a reload never reads half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.asynccontextmanager
async def hostile_process(mode: str) -> AsyncIterator[str]:
    """`python -m tests.hostile_server MODE 200` in its own process; its base URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.hostile_server",
        mode,
        "200",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None  # noqa: S101 - PIPE was requested
        async with asyncio.timeout(START_TIMEOUT):
            line = await process.stdout.readline()
        yield f"http://127.0.0.1:{int(line)}/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


class Exporter:
    """The exporter child: its samples (stdout), its log (a file), its port."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str]) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = env
        self.port = free_port()
        self.samples: list[dict[str, Any]] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        """Base URL of the exporter."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the child and read its sample lines as they come."""
        with self.log_path.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.soak_exporter",
                "--config.file",
                str(self.config_path),
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                "--nofile",
                str(NOFILE),
                "--sample-interval",
                str(SAMPLE_INTERVAL),
                cwd=REPO,
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            raise RuntimeError("the exporter child was not started with a stdout pipe")
        async for line in process.stdout:
            if line.strip():
                # Stamped on arrival, on this process's clock, to place it in a phase.
                self.samples.append({**json.loads(line), "received": time.perf_counter()})

    async def stop(self) -> dict[str, Any]:
        """SIGTERM; the exit status and how long the drain took."""
        if self.process is None:
            return {}
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        killed = False
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.process.wait()
        except TimeoutError:
            killed = True
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await self._reader
        return {
            "exit_status": self.process.returncode,
            "seconds_to_exit": round(time.perf_counter() - started, 3),
            "killed_after_timeout": killed,
        }

    def cpu_seconds(self) -> float:
        """CPU seconds the child used so far."""
        return proc_cpu_seconds(self.process.pid) if self.process else math.nan

    def sighup(self) -> None:
        """Ask for a reload the way an operator (or a config-reloader sidecar) does."""
        if self.process is not None:
            self.process.send_signal(signal.SIGHUP)

    def log_count(self, text: str) -> int:
        """How many lines of the exporter's log so far contain `text`."""
        return self.log_path.read_text(errors="replace").count(text)


async def wait_healthy(session: aiohttp.ClientSession, base: str) -> None:
    """Poll /-/ready until the exporter answers 200 (bounded)."""
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/-/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)


class Scraper:
    """/metrics every SAMPLE_INTERVAL on one kept-alive connection, as Prometheus does."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.last_body = ""

    async def run(self) -> None:
        """Scrape until cancelled."""
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        headers = {"Accept-Encoding": "gzip", "X-Prometheus-Scrape-Timeout-Seconds": "10"}
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:
                started = time.perf_counter()
                try:
                    async with session.get(f"{self.base}/metrics", headers=headers) as response:
                        body = await response.text()
                        if response.status != 200:
                            self.errors[f"HTTP {response.status}"] += 1
                        else:
                            self.latencies.append(time.perf_counter() - started)
                            self.last_body = body
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.errors[type(exc).__name__] += 1
                await asyncio.sleep(max(0.0, SAMPLE_INTERVAL - (time.perf_counter() - started)))

    def summary(self) -> dict[str, Any]:
        """Scrape outcomes and latency."""
        ms = [x * 1000 for x in self.latencies]
        return {
            "ok": len(ms),
            "errors": dict(self.errors),
            "p50_ms": pct(ms, 50),
            "p99_ms": pct(ms, 99),
            "max_ms": max(ms, default=math.nan),
        }


async def fresh_request(method: str, url: str, timeout: float = 15.0) -> tuple[str, float, str]:
    """One request on a new connection (as a separate client would open): the status
    (or the error's type), the seconds it took and the body."""
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as session,
            session.request(method, url) as response,
        ):
            body = await response.text()
            return str(response.status), time.perf_counter() - started, body
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__, time.perf_counter() - started, ""


RELOAD_FAILED = "reload failed; keeping the running configuration"
RELOADED = "configuration reloaded"


class Attacks:
    """The periodic attacks, in cycles of `period` seconds: slowloris on for the first
    half, off for the second; a /probe burst and a bad-then-good reload pair in the
    middle of each half. With slowloris on, new connections find the cap full, so
    the reloads go by SIGHUP (their outcome read from the exporter's log); with it
    off, by `POST /-/reload`."""

    def __init__(self, exporter: Exporter, good: str, period: float) -> None:
        self.exporter = exporter
        self.good = good
        self.period = period
        self.slowloris = Slowloris(exporter.port, connections=SLOWLORIS_CONNECTIONS)
        self.phases: list[tuple[float, str]] = []
        self.burst_status: dict[str, Counter[str]] = {}
        self.burst_seconds: dict[str, list[float]] = {}
        self.reloads: list[dict[str, Any]] = []

    async def run(self) -> None:
        """Until cancelled."""
        half = self.period / 2
        try:
            while True:
                for phase in ("slowloris", "quiet"):
                    self.phases.append((time.perf_counter(), phase))
                    if phase == "slowloris":
                        await self.slowloris.start()
                    await asyncio.sleep(half / 2)
                    await self.burst(phase)
                    await self.reload_pair(via="sighup" if phase == "slowloris" else "post")
                    await asyncio.sleep(max(0.0, self.phases[-1][0] + half - time.perf_counter()))
                    if phase == "slowloris":
                        await self.slowloris.stop()
        finally:
            await self.slowloris.stop()

    def phase_at(self, when: float) -> str:
        """The phase in force at `when` (a perf_counter stamp)."""
        current = "baseline"
        for start, phase in self.phases:
            if start <= when:
                current = phase
        return current

    async def burst(self, phase: str) -> None:
        """BURST concurrent /probe calls, each on its own connection."""
        base = self.exporter.base
        calls = [
            fresh_request("GET", f"{base}/probe?target={name}")
            for name, count in BURST.items()
            for _ in range(count)
        ]
        status = self.burst_status.setdefault(phase, Counter())
        seconds = self.burst_seconds.setdefault(phase, [])
        for code, took, _body in await asyncio.gather(*calls):
            status[code] += 1
            seconds.append(took)
        log(f"/probe burst ({phase}): {dict(status)} so far")

    async def reload_pair(self, via: str) -> None:
        """The YAML bomb (must fail, running config kept), then the good file back."""
        path = self.exporter.config_path
        write_atomic(path, bomb_config_text(self.good))
        bad = await self.reload(via, RELOAD_FAILED)
        write_atomic(path, self.good)
        good = await self.reload(via, RELOADED)
        self.reloads.append({"via": via, "bomb": bad, "good": good})
        log(f"reload by {via}: bomb -> {bad['outcome']}, good -> {good['outcome']}")

    async def reload(self, via: str, expect_line: str) -> dict[str, Any]:
        """One reload; its outcome (HTTP status, or the log line that appeared)."""
        if via == "post":
            status, took, body = await fresh_request(
                "POST", f"{self.exporter.base}/-/reload", timeout=30
            )
            return {"outcome": status, "seconds": round(took, 3), "body": body[:160]}
        before = self.exporter.log_count(expect_line)
        started = time.perf_counter()
        self.exporter.sighup()
        outcome = "no log line within 30 s"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                # The log is a file another process writes: polling is the way.
                while self.exporter.log_count(expect_line) == before:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                outcome = expect_line
        return {"outcome": outcome, "seconds": round(time.perf_counter() - started, 3)}

    def summary(self) -> dict[str, Any]:
        """What the attacks got back."""
        return {
            "period_s": self.period,
            "burst_calls_per_burst": sum(BURST.values()),
            "bursts_by_phase": {
                phase: {
                    "bursts": len(self.burst_seconds[phase]) // sum(BURST.values()),
                    "status": dict(status),
                    "call_seconds_p50": pct(self.burst_seconds[phase], 50),
                    "call_seconds_max": max(self.burst_seconds[phase], default=math.nan),
                }
                for phase, status in self.burst_status.items()
            },
            "reloads": self.reloads,
            "slowloris": self.slowloris.summary(),
        }


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (not idle or iowait), /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class _Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# Analysis


def metric_values(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics body, keyed by name and sorted labels."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def select(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> dict[str, float]:
    """Samples of `name` whose labels include `labels`, keyed by their other labels."""
    out: dict[str, float] = {}
    for (sample_name, sample_labels), value in values.items():
        if sample_name != name:
            continue
        found = dict(sample_labels)
        if all(found.get(k) == v for k, v in labels.items()):
            rest = ",".join(f"{k}={v}" for k, v in sample_labels if k not in labels)
            out[rest] = value
    return out


def window_mean(samples: Sequence[dict[str, Any]], key: str) -> float:
    """Mean of `key` over the samples (NaN if none)."""
    values = [float(s[key]) for s in samples]
    return sum(values) / len(values) if values else math.nan


def healthy_stats(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Healthy targets over these samples: probes, failures, TTFT p50/p99."""
    ok = 0
    failed: Counter[str] = Counter()
    ttft: list[float] = []
    per_target: Counter[str] = Counter()
    for sample in samples:
        for name, row in sample["targets"].items():
            if not name.startswith("healthy-"):
                continue
            ok += row["ok"]
            failed.update(row["failed"])
            ttft.extend(row["ttft_ms"])
            per_target[name] += row["ok"] + sum(row["failed"].values())
    total = ok + sum(failed.values())
    return {
        "probes": total,
        "ok": ok,
        "failed": dict(failed),
        "success_ratio": ok / total if total else math.nan,
        "ttft_p50_ms": pct(ttft, 50),
        "ttft_p99_ms": pct(ttft, 99),
        "ttft_max_ms": max(ttft, default=math.nan),
        "fewest_probes_of_a_target": min(per_target.values(), default=0),
    }


def hostile_outcomes(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per non-healthy target: successes and failures by reason over the run."""
    out: dict[str, dict[str, Any]] = {}
    for sample in samples:
        for name, row in sample["targets"].items():
            if name.startswith("healthy-"):
                continue
            entry = out.setdefault(name, {"ok": 0, "failed": Counter()})
            entry["ok"] += row["ok"]
            entry["failed"].update(row["failed"])
    return {name: {"ok": e["ok"], "failed": dict(e["failed"])} for name, e in sorted(out.items())}


def resource_summary(samples: Sequence[dict[str, Any]], window: float) -> dict[str, Any]:
    """Growth (first vs last window), maxima and final values of the process readings."""
    if not samples:
        return {}
    end = samples[-1]["t"]
    first = [s for s in samples if s["t"] <= samples[0]["t"] + window]
    last = [s for s in samples if s["t"] >= end - window]
    out: dict[str, Any] = {"window_s": window}
    for key, scale in (("rss_kb", 1024 / 1e6), ("fds", 1.0), ("tasks", 1.0), ("threads", 1.0)):
        name = "rss_mb" if key == "rss_kb" else key
        a, b = window_mean(first, key) * scale, window_mean(last, key) * scale
        out[name] = {
            "first_window_mean": round(a, 2),
            "last_window_mean": round(b, 2),
            "growth": round(b - a, 2),
            "max": round(max(s[key] for s in samples) * scale, 2),
            "final": round(samples[-1][key] * scale, 2),
        }
    out["vmhwm_mb"] = round(samples[-1]["hwm_kb"] * 1024 / 1e6, 2)
    lags = [s["lag_max_ms"] for s in samples]
    out["loop_lag_ms"] = {
        "max": max(lags),
        "median_of_sample_max": pct(lags, 50),
        "worst_sample_p99": max(s["lag_p99_ms"] for s in samples),
        "late_over_50ms": sum(s["lag_over_50ms"] for s in samples),
        # The part of a late step the exporter's thread spent on CPU (the rest is
        # the OS running other processes on this busy 2-core machine).
        "held_on_cpu_max": max(s["held_max_ms"] for s in samples),
        "steps": "50 ms sleeps; lag = overshoot",
    }
    out["http_connections_max"] = max(s["http_connections"] or 0 for s in samples)
    out["not_ready_samples"] = sum(1 for s in samples if not s["ready"])
    out["history_missed"] = sum(s["history_missed"] for s in samples)
    return out


def leak_scan(texts: dict[str, str], secret_values: Sequence[str]) -> dict[str, list[str]]:
    """Where any secret, any 8-char prefix or suffix of one, or its escaped forms show."""
    needles: set[str] = set()
    for secret in secret_values:
        needles |= {secret[:8], secret[-8:], secret[4:12]}
        needles.add("".join(f"%{b:02X}" for b in secret[:8].encode()))
        needles.add("".join(f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(secret[:8])))
    found: dict[str, list[str]] = {}
    for where, text in texts.items():
        hits = sorted(n for n in needles if n in text)
        if hits:
            found[where] = hits
    return found


async def collect_surfaces(base: str) -> dict[str, str]:
    """The exporter's pages that show probe details, for the leak scan."""
    texts: dict[str, str] = {}
    for path in ("/", "/config", "/metrics"):
        texts[path] = (await fresh_request("GET", base + path))[2]
    ids = sorted(set(_log_ids(texts["/"])))
    for record in ids:
        texts[f"/logs?id={record}"] = (await fresh_request("GET", f"{base}/logs?id={record}"))[2]
    for name in ("hostile-echo-key", "hostile-redirect"):
        # Ad-hoc probes of a busy target answer 429: try a few times.
        for _ in range(10):
            status, _, body = await fresh_request("GET", f"{base}/probe?target={name}&debug=true")
            if status == "200":
                texts[f"/probe?target={name}&debug=true"] = body
                break
            await asyncio.sleep(0.3)
    return texts


def _log_ids(index_html: str) -> list[int]:
    ids = []
    for part in index_html.split('href="logs?id=')[1:]:
        digits = part.split('"', 1)[0]
        if digits.isdigit():
            ids.append(int(digits))
    return ids


def final_counters(body: str) -> dict[str, Any]:
    """The exporter's own counters that say whether each fault was contained."""
    values = metric_values(body)
    tokens = select(values, "ttft_probe_output_tokens_total", target="hostile-usage")
    return {
        "background_errors": select(values, "ttft_exporter_background_errors_total"),
        "background_down": select(values, "ttft_exporter_background_down"),
        "probes_skipped": select(values, "ttft_exporter_probes_skipped_total"),
        "http_dropped": select(values, "ttft_exporter_http_connections_dropped_total"),
        "http_accept_errors": select(values, "ttft_exporter_http_accept_errors_total"),
        "adhoc_rejected": select(values, "ttft_exporter_adhoc_probes_rejected_total"),
        "reload_successful": select(values, "ttft_exporter_config_last_reload_successful"),
        "flux_up": select(values, "ttft_flux_up"),
        "flux_restarts": select(values, "ttft_flux_restarts_total"),
        "flux_malformed": select(values, "ttft_flux_malformed_messages_total"),
        "flux_reconnects": select(values, "ttft_flux_reconnects_total"),
        "flux_canary_failures": select(values, "ttft_flux_canary_failures_total"),
        "usage_rejected": select(values, "ttft_probe_usage_rejected_total"),
        "hostile_usage_output_tokens": tokens,
    }


async def soak(duration: float, baseline: float) -> dict[str, Any]:
    """Healthy targets alone for `baseline` seconds, then the hostile config by a
    reload and the attacks for `duration` seconds; tear down, analyse."""
    period = 10.0 if duration < 60 else 30.0
    key = f"SOAKKEY-{secrets.token_hex(12)}"
    token = f"SOAKTOK-{secrets.token_hex(12)}"
    capture = CaptureServer()
    redirect = RedirectServer(f"http://127.0.0.1:{capture.port}/v1/chat/completions")
    echo = EchoKeyServer()
    servers: list[_Server] = [
        capture,
        redirect,
        echo,
        usage := ImplausibleUsageServer(),
        frames := FluxFramesServer(),
        garbage := GarbageHTTPServer(),
    ]
    workdir = Path(tempfile.mkdtemp(prefix="ttft-soak-"))
    try:
        for server in servers:
            # The capture server first: the redirect points at its port.
            await server.start()
            if server is capture:
                redirect.location = f"http://127.0.0.1:{capture.port}/v1/chat/completions"
        async with (
            sim_process(MODELS, record_requests=0, max_seconds=duration + baseline + 300) as sim,
            hostile_process("long-line") as long_line,
            hostile_process("huge-stream") as huge,
        ):
            urls = {
                "redirect": redirect.url,
                "usage": usage.url,
                "echo": echo.url,
                "long-line": long_line,
                "huge-stream": huge,
                "flux-frames": frames.url,
                "flux-garbage": garbage.url,
            }
            calm = yaml.safe_dump(build_config(urls, sim.url, hostile=False), sort_keys=False)
            good = yaml.safe_dump(build_config(urls, sim.url), sort_keys=False)
            config_path = workdir / "soak.yml"
            write_atomic(config_path, calm)
            env = {**os.environ, KEY_ENV: key, TOKEN_ENV: token}
            exporter = Exporter(config_path, workdir / "exporter.log", env)
            await exporter.start()
            async with aiohttp.ClientSession() as session:
                await wait_healthy(session, exporter.base)
            scraper = Scraper(exporter.base)
            scraping = asyncio.create_task(scraper.run())
            log(f"exporter up on {exporter.base}; {HEALTHY} healthy targets for {baseline:.0f} s")
            busy0 = machine_busy_seconds()
            await asyncio.sleep(baseline)
            busy_baseline = (machine_busy_seconds() - busy0) / baseline
            write_atomic(config_path, good)
            switch = await fresh_request("POST", f"{exporter.base}/-/reload", timeout=30)
            if switch[0] != "200":
                raise RuntimeError(f"the reload to the hostile config failed: {switch}")
            attacks = Attacks(exporter, good, period)
            log(f"hostile config loaded; attacks for {duration:.0f} s")
            sim_cpu0, cpu0 = sim.cpu_seconds(), exporter.cpu_seconds()
            busy0 = machine_busy_seconds()
            wall0 = time.perf_counter()
            attacking = asyncio.create_task(attacks.run())
            try:
                while (left := wall0 + duration - time.perf_counter()) > 0:
                    await asyncio.sleep(min(30.0, left))
                    if exporter.samples:
                        s = exporter.samples[-1]
                        log(
                            f"t={s['t']:.0f}s rss {s['rss_kb'] / 1000:.1f} MB fds {s['fds']} "
                            f"tasks {s['tasks']} lag max {s['lag_max_ms']:.1f} ms"
                        )
            finally:
                attacking.cancel()
                await asyncio.gather(attacking, return_exceptions=True)
            wall = time.perf_counter() - wall0
            busy_attack = (machine_busy_seconds() - busy0) / wall
            exporter_cpu = exporter.cpu_seconds() - cpu0
            sim_cpu = sim.cpu_seconds() - sim_cpu0
            # With slowloris gone, so every page is reachable.
            surfaces = await collect_surfaces(exporter.base)
            scraping.cancel()
            await asyncio.gather(scraping, return_exceptions=True)
            stop = await exporter.stop()
        log_text = exporter.log_path.read_text(errors="replace")
    finally:
        for server in reversed(servers):
            await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    surfaces["exporter log (stderr)"] = log_text
    samples = exporter.samples
    for sample in samples:
        # Readings are taken at the sample's moment: the phase in force then.
        sample["phase"] = attacks.phase_at(sample.pop("received"))
    # The first sample after the switch straddles it: attack figures start after it.
    calm_samples = [s for s in samples if s["phase"] == "baseline"][1:]
    attack_samples = [s for s in samples if s["phase"] != "baseline"][1:]
    if not attack_samples or not calm_samples:
        raise RuntimeError("the exporter wrote too few samples")
    window = min(60.0, duration / 3)
    end = attack_samples[-1]["t"]
    begin = attack_samples[0]["t"]
    metrics_body = surfaces.get("/metrics") or scraper.last_body
    return {
        "duration_s": round(wall, 1),
        "baseline_s": baseline,
        "healthy_targets": HEALTHY,
        "sample_interval_s": SAMPLE_INTERVAL,
        "nofile_limit": NOFILE,
        "resources_baseline": resource_summary(calm_samples, baseline),
        "resources": resource_summary(attack_samples, window),
        "resources_by_phase": {
            phase: resource_summary([s for s in attack_samples if s["phase"] == phase], duration)
            for phase in ("slowloris", "quiet")
        },
        "healthy": {
            "baseline": healthy_stats(calm_samples),
            "under_attack": healthy_stats(attack_samples),
            "first_window": healthy_stats([s for s in attack_samples if s["t"] <= begin + window]),
            "last_window": healthy_stats([s for s in attack_samples if s["t"] >= end - window]),
            "reference_ttft_ms": REFERENCE["ttft"] * 1000,
        },
        "hostile_targets": hostile_outcomes(attack_samples),
        "redirect_target": {
            "requests_redirected": redirect.requests,
            "requests_reaching_other_host": capture.requests,
            "credentials_reaching_other_host": dict(capture.credential_headers),
        },
        "echo_server": {"requests": echo.requests, "with_both_credentials": echo.credentials_seen},
        "flux_servers": {
            "hostile_frames_sent": frames.hostile_sent,
            "hostile_frames_connections": frames.connections,
            "garbage_http_requests": garbage.requests,
        },
        "counters_at_end": final_counters(metrics_body),
        "scrapes": scraper.summary(),
        "attacks": attacks.summary(),
        "leaks": leak_scan(surfaces, [key, token]),
        "surfaces_scanned": len(surfaces),
        "exporter_log_bytes": len(log_text.encode()),
        "exporter_log_lines": log_text.count("\n"),
        "exporter_cpu_cores": exporter_cpu / wall if wall else math.nan,
        "sim_cpu_cores": sim_cpu / wall if wall else math.nan,
        # Every process on the machine, this benchmark's included (2 cores here).
        "machine_busy_cores": {"baseline": busy_baseline, "attacks": busy_attack},
        "loadavg_at_end": os.getloadavg(),
        "shutdown": stop,
        "samples": samples,
        "_log": log_text,
    }


def main(argv: list[str] | None = None) -> None:
    """`[--duration S] [--baseline S] [--quick] [--json PATH]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument(
        "--baseline", type=float, default=None, help="healthy-only seconds first (60; quick 10)"
    )
    parser.add_argument("--quick", action="store_true", help="30 s of attacks, 10 s baseline")
    parser.add_argument("--json", help="write the result here instead of stdout")
    args = parser.parse_args(argv)
    duration = 30.0 if args.quick else args.duration
    baseline = args.baseline if args.baseline is not None else (10.0 if args.quick else 60.0)
    result = asyncio.run(soak(duration, baseline))
    log_text = result.pop("_log")
    if args.json:
        # The exporter's log beside the figures, for reading after the run.
        Path(args.json).with_suffix(".exporter.log").write_text(log_text)
    result["quick"] = args.quick
    emit(result, args.json)


if __name__ == "__main__":
    main()
