"""Run every ttft_exporter benchmark and write a Markdown summary.

Usage (from the repository root): ``.venv/bin/python benchmarks/run.py [--quick]``

Each benchmark runs in a fresh interpreter (``python -m benchmarks.<name> --json
results/<name>.json``) that starts its own simulator child process, so no benchmark's
memory, warm caches or leftover connections count in another's figures. The summary,
with the performance.md targets next to the measured values, is printed and written to
``benchmarks/results/summary.md``; the raw figures are in ``benchmarks/results/*.json``.

Other processes on the machine distort latency figures, so before each benchmark the
runner waits (bounded) for the CPU to be quiet, and it reports how many cores other
processes used while each benchmark ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Bench:
    """One benchmark module and its time limits (seconds) in full and quick mode."""

    name: str
    module: str
    title: str
    limit_full: float
    limit_quick: float


BENCHES = (
    Bench("ttft", "benchmarks.bench_ttft", "TTFT fidelity and streaming traps", 300, 90),
    Bench("cpu", "benchmarks.bench_cpu", "client CPU per 1M tokens", 120, 45),
    Bench("rss", "benchmarks.bench_rss", "RSS with 10 targets", 90, 45),
    Bench("render", "benchmarks.bench_render", "/metrics render, 100 targets", 60, 30),
)

QUIET_CORES = 0.25


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_cores(seconds: float) -> float:
    """Cores busy on the whole machine over a short window."""
    busy0, _ = _cpu_jiffies()
    time.sleep(seconds)
    busy1, _ = _cpu_jiffies()
    return (busy1 - busy0) / os.sysconf("SC_CLK_TCK") / seconds


def wait_quiet(max_wait: float) -> float:
    """Wait (at most `max_wait` s) until other processes use < QUIET_CORES cores;
    returns the last reading."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy_cores(1.0)
    while busy >= QUIET_CORES and time.monotonic() < deadline:
        print(f"  machine busy ({busy:.2f} cores used by others); waiting", file=sys.stderr)
        busy = machine_busy_cores(2.0)
    return busy


def run_bench(bench: Bench, quick: bool, max_wait: float) -> dict[str, Any]:
    """Run one benchmark module in a fresh interpreter; its JSON plus run facts."""
    out = RESULTS / f"{bench.name}.json"
    out.unlink(missing_ok=True)
    before_busy = wait_quiet(max_wait)
    command = [sys.executable, "-m", bench.module, "--json", str(out)]
    if quick:
        command.append("--quick")
    print(f"== {bench.name}: {bench.title} ==", file=sys.stderr, flush=True)
    busy0, _ = _cpu_jiffies()
    own0 = _children_cpu()
    wall0 = time.perf_counter()
    limit = bench.limit_quick if quick else bench.limit_full
    error = None
    try:
        completed = subprocess.run(command, cwd=REPO, timeout=limit, check=False)
        if completed.returncode != 0:
            error = f"exit status {completed.returncode}"
    except subprocess.TimeoutExpired:
        error = f"timed out after {limit:.0f}s"
    wall = time.perf_counter() - wall0
    busy1, _ = _cpu_jiffies()
    own = _children_cpu() - own0
    machine = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
    data: dict[str, Any] = json.loads(out.read_text()) if out.exists() and not error else {}
    data["_run"] = {
        "wall_s": wall,
        "error": error,
        "quiet_before_cores": before_busy,
        # Machine CPU minus the benchmark's own process tree (client + simulator).
        "others_cores": max(0.0, machine - own) / wall if wall > 0 else 0.0,
    }
    return data


# Formatting


def _f(value: Any, spec: str = "+.2f", unit: str = " ms") -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "n/a"
    return f"{value:{spec}}{unit}"


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "PASS" if ok else "**MISS**"


def _level(ttft: dict[str, Any], streams: int, mode: str) -> dict[str, Any]:
    for row in ttft.get("levels", []):
        if row["streams"] == streams and row["mode"] == mode:
            found: dict[str, Any] = row
            return found
    return {}


def _within(value: Any, low: float, high: float) -> bool | None:
    if not isinstance(value, int | float) or math.isnan(value):
        return None
    return low <= value <= high


def _all(*checks: bool | None) -> bool | None:
    if any(c is None for c in checks):
        return None
    return all(checks)


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(figure, target, measured, verdict) rows of the main table."""
    rows: list[tuple[str, str, str, str]] = []
    ttft = results.get("ttft", {})
    one_f, one_r = _level(ttft, 1, "fresh"), _level(ttft, 1, "reuse")
    rows.append(
        (
            "TTFT median error, 1 stream (vs server truth; vs injected 300 ms in brackets)",
            "within ±1 ms",
            f"fresh {_f(one_f.get('err_vs_truth_p50_ms'))} ({_f(one_f.get('err_p50_ms'))}); "
            f"reuse {_f(one_r.get('err_vs_truth_p50_ms'))} ({_f(one_r.get('err_p50_ms'))})",
            _verdict(
                _all(
                    _within(one_f.get("err_vs_truth_p50_ms"), -1, 1),
                    _within(one_r.get("err_vs_truth_p50_ms"), -1, 1),
                )
            ),
        )
    )
    c_f, c_r = _level(ttft, 200, "fresh"), _level(ttft, 200, "reuse")
    failed = sum(c_f.get("failures", {}).values()) + sum(c_r.get("failures", {}).values())
    rows.append(
        (
            "TTFT median drift over truth, 200 concurrent streams (per-request matched)",
            "≤ +15 ms",
            f"fresh {_f(c_f.get('err_vs_truth_p50_ms'))}; "
            f"reuse {_f(c_r.get('err_vs_truth_p50_ms'))} (failed probes: {failed})",
            _verdict(
                _all(
                    _within(c_f.get("err_vs_truth_p50_ms"), -math.inf, 15),
                    _within(c_r.get("err_vs_truth_p50_ms"), -math.inf, 15),
                )
            ),
        )
    )
    rows.append(
        (
            "TTFT p99 minus true p99, 200 streams",
            "≤ +60 ms",
            f"fresh {_f(c_f.get('p99_minus_true_p99_ms'))}; "
            f"reuse {_f(c_r.get('p99_minus_true_p99_ms'))}",
            _verdict(
                _all(
                    _within(c_f.get("p99_minus_true_p99_ms"), -math.inf, 60),
                    _within(c_r.get("p99_minus_true_p99_ms"), -math.inf, 60),
                )
            ),
        )
    )
    rows.append(
        (
            "Server first-write p99 at 200 streams (client must not slow the server)",
            "≈ 310 ms unloaded (peers: 770–810 ms)",
            f"fresh {_f(c_f.get('server_late_p99_ms', math.nan) + 300, '.1f')}; "
            f"reuse {_f(c_r.get('server_late_p99_ms', math.nan) + 300, '.1f')}; client "
            f"{_f(c_f.get('client_cores'), '.2f', '')}/{_f(c_r.get('client_cores'), '.2f', '')}"
            " cores (peers ~1.6)",
            _verdict(
                _all(
                    _within(c_f.get("server_late_p99_ms"), -math.inf, 15),
                    _within(c_r.get("server_late_p99_ms"), -math.inf, 15),
                )
            ),
        )
    )
    cpu = results.get("cpu", {})
    idle = cpu.get("idle", {})
    per_model = {r["model"]: r for r in cpu.get("rounds", [])}
    rows.append(
        (
            "Client CPU seconds per 1M streamed tokens (1 token/chunk)",
            "≤ 40, cost follows tokens, not wall time",
            ", ".join(
                f"{m} {_f(r['cpu_s_per_1m_tokens'], '.1f', ' s')}" for m, r in per_model.items()
            )
            + f"; slow/paced cost ×{_f(cpu.get('slow_over_paced_cost'), '.2f', '')} for wall "
            f"×{_f(cpu.get('slow_over_paced_wall'), '.2f', '')}; idle "
            f"{_f(idle.get('cores', math.nan) * 100, '.2f', '% core')}",
            _verdict(
                _all(
                    _within(cpu.get("cpu_s_per_1m_tokens_max"), 0, 40),
                    _within(cpu.get("slow_over_paced_cost"), 0, 1.5),
                    _within(idle.get("cores"), 0, 0.01),
                )
            ),
        )
    )
    rss = results.get("rss", {})
    baseline = rss.get("baseline_after_imports", {}).get("VmRSS")
    rows.append(
        (
            "Client memory, 10 targets at 1 s",
            "≤ 60 MB RSS",
            f"VmRSS {_f(rss.get('vmrss_mb'), '.1f', ' MB')} "
            f"(peak {_f(rss.get('vmhwm_mb'), '.1f', ' MB')}; {_f(baseline, '.1f', ' MB')} "
            "after imports)",
            _verdict(_within(rss.get("vmhwm_mb"), 0, 60)),
        )
    )
    traps = ttft.get("traps", [])
    passed = sum(1 for t in traps if t["passed"])
    rows.append(
        (
            "Streaming traps handled (role chunk, keep-alive, open after [DONE], no usage, "
            "reasoning)",
            "5 of 5",
            f"{passed} of {len(traps)}"
            + (
                " (failed: " + ", ".join(t["trap"] for t in traps if not t["passed"]) + ")"
                if passed < len(traps)
                else ""
            ),
            _verdict(passed == 5 if traps else None),
        )
    )
    render = results.get("render", {})
    rc, http = render.get("render_classic", {}), render.get("http_classic", {})
    rows.append(
        (
            "/metrics with 100 targets: MetricStore.render()",
            "≤ 20 ms",
            f"p50 {_f(rc.get('p50_ms'), '.1f')}, p99 {_f(rc.get('p99_ms'), '.1f')}",
            _verdict(_within(rc.get("p99_ms"), 0, 20)),
        )
    )
    sizes = render.get("body_bytes", {})
    size = sizes.get("http_classic", math.nan)
    rows.append(
        (
            "/metrics with 100 targets: whole HTTP request, identity",
            "≤ 20 ms",
            f"p50 {_f(http.get('p50_ms'), '.1f')}, p99 {_f(http.get('p99_ms'), '.1f')}; "
            f"body {_f(size / 1e6, '.2f', ' MB')}",
            _verdict(_within(http.get("p99_ms"), 0, 20)),
        )
    )
    gz = render.get("http_gzip", {})
    rows.append(
        (
            "/metrics with 100 targets: whole HTTP request, gzip (Prometheus' default)",
            "≤ 20 ms",
            f"p50 {_f(gz.get('p50_ms'), '.1f')}, p99 {_f(gz.get('p99_ms'), '.1f')}; "
            f"body {_f(sizes.get('http_gzip', math.nan) / 1e3, '.0f', ' kB')}",
            _verdict(_within(gz.get("p99_ms"), 0, 20)),
        )
    )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def detail_sections(results: dict[str, dict[str, Any]]) -> str:
    """The per-benchmark tables under the summary."""
    parts: list[str] = []
    ttft = results.get("ttft", {})
    if ttft.get("levels"):
        parts.append(
            "### TTFT by concurrency (ms; error = measured TTFT − reference)\n\n"
            + _table(
                [
                    "streams",
                    "conn",
                    "ok/n",
                    "vs 300 p50",
                    "vs 300 p99",
                    "vs truth p50",
                    "vs truth p99",
                    "p99 − true p99",
                    "server late p50/p99",
                    "client send p50",
                    "sim queue p50",
                    "delivery p50",
                    "if stamped at send p50/p99",
                    "cores client/sim",
                ],
                [
                    [
                        str(r["streams"]),
                        r["mode"],
                        f"{r['ok']}/{r['probes']}",
                        _f(r["err_p50_ms"], "+.2f", ""),
                        _f(r["err_p99_ms"], "+.2f", ""),
                        _f(r["err_vs_truth_p50_ms"], "+.2f", ""),
                        _f(r["err_vs_truth_p99_ms"], "+.2f", ""),
                        _f(r["p99_minus_true_p99_ms"], "+.2f", ""),
                        f"{_f(r['server_late_p50_ms'], '+.1f', '')}/"
                        f"{_f(r['server_late_p99_ms'], '+.1f', '')}",
                        _f(r["client_send_p50_ms"], ".2f", ""),
                        _f(r["server_queue_p50_ms"], ".2f", ""),
                        _f(r["post_write_p50_ms"], ".2f", ""),
                        f"{_f(r.get('from_send_vs_truth_p50_ms'), '+.2f', '')}/"
                        f"{_f(r.get('from_send_vs_truth_p99_ms'), '+.2f', '')}",
                        f"{r['client_cores']:.2f}/{r['sim_cores']:.2f}",
                    ]
                    for r in ttft["levels"]
                ],
            )
            + "\n\nSession creation (create_session, per target): "
            + ", ".join(
                f"{r['streams']} {r['mode']}: {r['session_create_cpu_ms']:.1f} ms CPU each"
                for r in ttft["levels"]
                if r["streams"] >= 100
            )
        )
    if ttft.get("traps"):
        parts.append(
            "### Streaming traps\n\n"
            + _table(
                ["trap", "result", "TTFT", "tokens (source)", "wall", "failed checks"],
                [
                    [
                        t["trap"],
                        "PASS" if t["passed"] else "FAIL",
                        _f(t["ttft_ms"], ".1f"),
                        f"{t['output_tokens']} ({t['usage_source']})",
                        _f(t["wall_s"], ".2f", " s"),
                        "; ".join(t["failed_checks"]) or "-",
                    ]
                    for t in ttft["traps"]
                ],
            )
        )
    cpu = results.get("cpu", {})
    if cpu.get("rounds"):
        parts.append(
            "### Client CPU (token-bound load)\n\n"
            + _table(
                [
                    "pacing",
                    "itl",
                    "streams",
                    "tokens",
                    "wall",
                    "CPU (user+sys)",
                    "s / 1M tok",
                    "client cores",
                    "sim cores",
                ],
                [
                    [
                        r["model"],
                        _f(r["itl_ms"], ".0f"),
                        str(r["streams"]),
                        str(r["tokens"]),
                        _f(r["wall_s"], ".2f", " s"),
                        f"{r['cpu_s']:.2f} s ({r['user_s']:.2f}+{r['sys_s']:.2f})",
                        _f(r["cpu_s_per_1m_tokens"], ".1f", ""),
                        _f(r["client_cores"], ".2f", ""),
                        _f(r["sim_cores"], ".2f", ""),
                    ]
                    for r in cpu["rounds"]
                ],
            )
            + f"\n\nIdle, {cpu['idle']['sessions']} sessions with warm connections: "
            f"{cpu['idle']['cpu_s']:.4f} CPU s over {cpu['idle']['wall_s']:.1f} s."
        )
    rss = results.get("rss", {})
    if rss.get("samples"):
        parts.append(
            "### RSS, exporter with 10 targets (MB)\n\n"
            + _table(
                ["t (s)", "VmRSS", "VmHWM", "/metrics bytes"],
                [
                    [f"{s['t']:.1f}", f"{s['VmRSS']:.1f}", f"{s['VmHWM']:.1f}", str(s["body"])]
                    for s in rss["samples"]
                ],
            )
            + f"\n\nAfter imports {rss['baseline_after_imports']['VmRSS']:.1f} MB, after start "
            f"{rss['after_start']['VmRSS']:.1f} MB, ru_maxrss {rss['ru_maxrss_mb']:.1f} MB; "
            f"{rss['probes_ok']} probes ok, {rss['probes_failed']} failed; exporter CPU "
            f"{rss['exporter_cpu_cores'] * 100:.1f}% of a core."
        )
    render = results.get("render", {})
    if render.get("render_classic"):
        keys = [
            "render_classic",
            "render_openmetrics",
            "handler_direct",
            "http_classic",
            "http_openmetrics",
            "http_gzip",
        ]
        parts.append(
            "### /metrics, 100 targets (ms)\n\n"
            + _table(
                ["what", "p50", "p99", "max", "runs"],
                [
                    [
                        k,
                        _f(render[k]["p50_ms"], ".2f", ""),
                        _f(render[k]["p99_ms"], ".2f", ""),
                        _f(render[k]["max_ms"], ".2f", ""),
                        str(render[k]["runs"]),
                    ]
                    for k in keys
                    if k in render
                ],
            )
            + f"\n\nBody: {render['store_lines']} lines from the store; HTTP bodies "
            + ", ".join(f"{k} {v} B" for k, v in render.get("body_bytes", {}).items())
        )
    return "\n\n".join(parts)


def environment() -> str:
    """One line about the machine and versions."""
    try:
        import aiohttp

        aiohttp_version = aiohttp.__version__
    except ImportError:
        aiohttp_version = "?"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = "?"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, git {rev or '?'} (+ working tree), "
        f"Python {platform.python_version()}, aiohttp {aiohttp_version}, asyncio default loop, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )


def render_summary(results: dict[str, dict[str, Any]], quick: bool, wall: float) -> str:
    """The whole Markdown summary."""
    rows = [list(r) for r in summary_rows(results)]
    runs = "; ".join(
        f"{name} {r['_run']['wall_s']:.0f} s"
        + (f" ERROR {r['_run']['error']}" if r["_run"]["error"] else "")
        + f", others {r['_run']['others_cores']:.2f} cores"
        for name, r in results.items()
    )
    return (
        f"# ttft_exporter benchmark summary{' (--quick)' if quick else ''}\n\n"
        f"{environment()}. Total {wall:.0f} s. Simulator in a separate process.\n\n"
        + _table(["figure", "target (performance.md)", "measured", "verdict"], rows)
        + "\n\n"
        + detail_sections(results)
        + f"\n\nRuns: {runs}. `others` is CPU used by unrelated processes during the run; "
        "values above ~0.2 cores mean the latency figures are pessimistic.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller, under a minute")
    parser.add_argument(
        "--only", help="comma-separated subset of: " + ", ".join(b.name for b in BENCHES)
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="seconds to wait for a quiet machine before each benchmark (default 20, quick 3)",
    )
    args = parser.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else {b.name for b in BENCHES}
    max_wait = args.max_wait if args.max_wait is not None else (3.0 if args.quick else 20.0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {
        bench.name: run_bench(bench, args.quick, max_wait)
        for bench in BENCHES
        if bench.name in wanted
    }
    text = render_summary(results, args.quick, time.perf_counter() - start)
    (RESULTS / "summary.md").write_text(text)
    print(text)
    return 1 if any(r["_run"]["error"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
