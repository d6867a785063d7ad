"""Side by side (#14): `ttft-exporter bench`, guidellm and aiperf against the SAME
reference stream (performance.md: first text at 300 ms, 20 chunks of 2 tokens 20 ms
apart, 40 tokens in usage, a role-only chunk with the headers, keep-alive comments),
ONE simulator process for the whole run, each client as a subprocess measured the
same way, at 1 stream and at 200 concurrent streams, interleaved over rounds.

For each client run it reports:
- TTFT median error at 1 stream and median drift at 200 streams: the client's p50 (read
  from the client's own per-request output file, its measured requests) minus the
  simulator's own p50 (arrival to first text write, perf_counter = CLOCK_MONOTONIC in
  both processes) over the requests that arrived in the client's measured window
  (its first to its last measured request start, placed on the monotonic clock with
  the wall-minus-monotonic offset read just before the run); p99 minus true p99 the same;
- client CPU seconds per 1M output tokens: the CPU of the client's whole process tree
  (`getrusage(RUSAGE_CHILDREN)` delta around the waited-for subprocess), start-up
  included, over 40 tokens x the requests the simulator received during the process's
  life; plus the start-up CPU on its own (the tree's CPU, sampled from /proc, when the
  first request reached the simulator) and the CPU over the measured window only;
- peak memory: the largest single process (VmHWM) and the largest sampled PSS sum over
  the tree (PSS, so pages a forked tree shares are not counted twice);
- the simulator's own first-write p99 in the window, at 200 streams against 1 stream;
- failed requests, and a failed run with its reason (exit status, timeout, no output).

The peers need a Hugging Face tokenizer at start-up; this one is built offline (a small
WordLevel vocabulary trained with the `tokenizers` package of a peer's own venv) unless
`--tokenizer DIR` gives one. guidellm runs with HF_HUB_OFFLINE=1; aiperf runs without it,
because its offline mode sends a local path to `snapshot_download` (which rejects it);
with a local directory it loads the files and needs no hub.

Usage::

    python -m benchmarks.side_by_side [--guidellm PATH] [--aiperf PATH] [--rounds 2]
        [--requests 30] [--duration 20] [--streams 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import REFERENCE, SimProcess, log, pct, sim_process

MS = 1000.0
TOKENS_PER_REQUEST = 40  # the reference stream; every client asks for exactly 40
PROMPT_TOKENS = 64
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SAMPLE_INTERVAL = 0.5  # a /proc scan costs the harness ~1 % of a core at this pace
_RUN_TIMEOUT_SLACK = 180.0  # start-up (imports, tokenizer, dataset) and shutdown
_TAIL = 1200  # characters of a failed tool's output kept as the reason

# Trains a tiny tokenizer offline and wraps it so AutoTokenizer.from_pretrained(DIR)
# loads it. Runs in a peer's venv (it has `tokenizers` and `transformers`).
_MAKE_TOKENIZER = r"""
import json, random, sys
from pathlib import Path
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
rng = random.Random(7)
letters = "abcdefghijklmnopqrstuvwxyz"
words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(2000)]
text = [" ".join(rng.choice(words) for _ in range(50)) for _ in range(400)]
tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.decoder = decoders.WordPiece(prefix="##")
special = ["<unk>", "<s>", "</s>", "<pad>"]
tok.train_from_iterator(text, trainers.WordLevelTrainer(special_tokens=special))
tok.save(str(out / "tokenizer.json"))
names = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072, **names}
(out / "tokenizer_config.json").write_text(json.dumps(config))
(out / "special_tokens_map.json").write_text(json.dumps(names))
from transformers import AutoTokenizer
print(len(AutoTokenizer.from_pretrained(str(out))))
"""


@dataclass(frozen=True)
class Level:
    """One load level: `streams` concurrent streams, stopped by a count or a duration."""

    name: str
    streams: int
    requests: int | None = None
    duration: float | None = None


@dataclass
class ClientResult:
    """What a client's own output file says about its measured requests."""

    ttfts: list[float] = field(default_factory=list)  # seconds, successful requests
    starts: list[float] = field(default_factory=list)  # Unix seconds, measured requests
    failed: int = 0
    cut: int = 0  # in flight when the tool's own stop came, cancelled by the tool
    reported_output_tokens: int = 0


@dataclass
class TreeRun:
    """A subprocess run with its whole process tree measured."""

    returncode: int | None
    timed_out: bool
    started: float  # perf_counter
    ended: float
    cpu_s: float  # getrusage(RUSAGE_CHILDREN) delta: every waited-for process of the tree
    samples: list[tuple[float, float, float, float]]  # (t, tree cpu, PSS sum MB, max HWM MB)
    processes_seen: int


@dataclass(frozen=True)
class Tool:
    """A load tester: how to run it at a level and how to read its per-request output."""

    name: str
    version: str
    command: Callable[[Level, str, Path], list[str]]
    parse: Callable[[Path], ClientResult]
    env: dict[str, str]


# ---------------------------------------------------------------- process tree


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, cpu s) for every readable process (no /proc/PID/task/*/children here)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; fields resume after the closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return table


def _memory_mb(pid: int) -> tuple[float, float]:
    """(PSS, VmHWM) of a process in MB (10^6 bytes). PSS splits shared pages among the
    processes sharing them, so the sum over a forked tree does not count them twice."""
    pss = hwm = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024 / 1e6
                break
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024 / 1e6
                break
    return pss, hwm


def _tree_sample(root: int, seen: set[int]) -> tuple[float, float, float]:
    """(tree cpu s, PSS sum MB, largest VmHWM MB) of root and its live descendants."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in table.items():
        children.setdefault(ppid, []).append(pid)
    cpu = pss = hwm = 0.0
    stack = [root] if root in table else []
    while stack:
        pid = stack.pop()
        seen.add(pid)
        cpu += table[pid][1]
        p_pss, p_hwm = _memory_mb(pid)
        pss += p_pss
        hwm = max(hwm, p_hwm)
        stack.extend(children.get(pid, ()))
    return cpu, pss, hwm


async def run_tree(
    cmd: Sequence[str], env: dict[str, str], timeout: float, log_path: Path
) -> TreeRun:
    """Run cmd in its own session, sample its tree, bound it by `timeout` (then SIGTERM,
    then SIGKILL of the whole group); CPU from getrusage of the waited-for children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    samples: list[tuple[float, float, float, float]] = []
    seen: set[int] = set()
    waiter = asyncio.ensure_future(process.wait())
    timed_out = False
    deadline = started + timeout
    while not waiter.done():
        now = time.perf_counter()
        if now > deadline:
            timed_out = True
            break
        cpu, rss, hwm = await asyncio.to_thread(_tree_sample, process.pid, seen)
        samples.append((time.perf_counter(), cpu, rss, hwm))
        await asyncio.wait({waiter}, timeout=_SAMPLE_INTERVAL)
    if timed_out:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), grace)
            if waiter.done():
                break
    ended = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Anything of the group still alive (a daemonised helper) is not the next run's.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return TreeRun(
        returncode=process.returncode,
        timed_out=timed_out,
        started=started,
        ended=ended,
        cpu_s=cpu_s,
        samples=samples,
        processes_seen=len(seen),
    )


def _cpu_at(samples: Sequence[tuple[float, float, float, float]], t: float) -> float:
    """The sampled tree CPU at time t (linear between samples; NaN outside them)."""
    for (t0, c0, _, _), (t1, c1, _, _) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
    return math.nan


# ---------------------------------------------------------------- the three clients


def _ours(exe: str) -> Tool:
    def command(level: Level, url: str, out: Path) -> list[str]:
        stop = (
            ["--requests", str(level.requests), "--warmup", "1"]
            if level.requests is not None
            else ["--duration", f"{level.duration:g}s", "--warmup", "auto"]
        )
        return [
            exe, "bench", "--url", f"{url}/v1", "--protocol", "openai-chat", "--model", "ref",
            "--concurrency", str(level.streams), *stop,
            "--max-tokens", str(TOKENS_PER_REQUEST), "--prompt.tokens", str(PROMPT_TOKENS),
            "--timeout", "60s", "--seed", "1", "--output-dir", str(out), "--no-plots",
        ]  # fmt: skip

    def parse(out: Path) -> ClientResult:
        data = json.loads((out / "results.json").read_text())
        result = ClientResult()
        for record in data["records"]:
            if record["warmup"]:
                continue
            result.starts.append(float(record["start"]))
            if record["success"] and record["ttft"] is not None:
                result.ttfts.append(float(record["ttft"]))
                result.reported_output_tokens += int(record["output_tokens"] or 0)
            else:
                result.failed += 1
        return result

    return Tool("ttft-exporter bench", _version(exe, "ttft-exporter"), command, parse, {})


def _guidellm(exe: str, tokenizer: Path) -> Tool:
    def command(level: Level, url: str, out: Path) -> list[str]:
        # guidellm's warm-up is a duration (>= 1 s) or a share; 1 s is about one
        # request per stream at 200 streams and one request at 1 stream (0.68 s each).
        if level.requests is not None:
            constraint = f"kind=max_requests,count={level.requests + 2}"
        else:
            constraint = f"kind=max_duration,seconds={(level.duration or 0) + 1:g}"
        return [
            exe, "run",
            "--backend",
            f"kind=openai_http,target={url},model=ref,validate_backend=false,timeout=60",
            "--profile", f"kind=concurrent,streams={level.streams},warmup=1",
            "--constraint", constraint,
            "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
            "--data",
            f"kind=synthetic_text,prompt_tokens={PROMPT_TOKENS},"
            f"output_tokens={TOKENS_PER_REQUEST}",
            "--output", f"kind=json,path={out / 'benchmarks.json'}",
            "--disable-console-interactive",
        ]  # fmt: skip

    def parse(out: Path) -> ClientResult:
        data = json.loads((out / "benchmarks.json").read_text())
        (bench,) = data["benchmarks"]
        result = ClientResult()
        for status, records in bench["requests"].items():
            for record in records or ():
                result.starts.append(float(record["request_start_time"]))
                ttft = record.get("time_to_first_token_ms")
                if status == "successful" and ttft is not None:
                    result.ttfts.append(float(ttft) / MS)
                    result.reported_output_tokens += int(record.get("output_tokens") or 0)
                elif status == "incomplete":
                    result.cut += 1
                else:
                    result.failed += 1
        return result

    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return Tool("guidellm", _version(exe, "guidellm"), command, parse, env)


def _aiperf(exe: str, tokenizer: Path) -> Tool:
    def command(level: Level, url: str, out: Path) -> list[str]:
        if level.requests is not None:
            stop = ["--request-count", str(level.requests), "--warmup-request-count", "1"]
        else:
            stop = [
                "--benchmark-duration", f"{level.duration:g}", "--benchmark-grace-period", "10",
                "--warmup-request-count", str(level.streams),
            ]  # fmt: skip
        return [
            exe, "profile", "--model", "ref", "--url", url, "--endpoint-type", "chat",
            "--streaming", "--tokenizer", str(tokenizer), "--concurrency", str(level.streams),
            *stop,
            "--prompt-input-tokens-mean", str(PROMPT_TOKENS),
            "--prompt-output-tokens-mean", str(TOKENS_PER_REQUEST),
            "--extra-inputs", "ignore_eos:true", "--use-server-token-count",
            "--request-timeout-seconds", "60", "--random-seed", "1",
            "--output-artifact-dir", str(out), "--ui-type", "none",
            "--no-server-metrics", "--no-gpu-telemetry", "--no-auto-plot",
        ]  # fmt: skip

    def parse(out: Path) -> ClientResult:
        result = ClientResult()
        with (out / "profile_export.jsonl").open() as lines:
            for line in lines:
                record = json.loads(line)
                meta = record.get("metadata", {})
                if meta.get("benchmark_phase") != "profiling":
                    continue
                result.starts.append(int(meta["request_start_ns"]) / 1e9)
                ttft = (record.get("metrics") or {}).get("time_to_first_token")
                if meta.get("was_cancelled"):
                    result.cut += 1
                elif record.get("error") is None and ttft:
                    result.ttfts.append(float(ttft["value"]) / MS)
                    tokens = record["metrics"].get("output_token_count") or {}
                    result.reported_output_tokens += int(tokens.get("value") or 0)
                else:
                    result.failed += 1
        return result

    return Tool(
        "aiperf", _version(exe, "aiperf"), command, parse, {"HF_HUB_DISABLE_TELEMETRY": "1"}
    )


def _version(exe: str, dist: str) -> str:
    """The distribution's version, asked of the interpreter beside the executable."""
    python = Path(exe).parent / "python"
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout.strip()
    return "unknown"


def make_tokenizer(python: Path, target: Path) -> None:
    """Build the offline tokenizer directory with a peer venv's interpreter."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(
        [str(python), "-c", _MAKE_TOKENIZER, str(target)],
        check=True,
        timeout=300,
        env=env,
        capture_output=True,
    )


# ---------------------------------------------------------------- one run


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


async def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (at most max_wait s) for a second in which the machine is busy below
    `threshold` cores (this harness and the idle simulator included); the last reading."""
    deadline = time.perf_counter() + max_wait
    while True:
        b0, t0 = _machine_busy_s(), time.perf_counter()
        await asyncio.sleep(1.0)
        busy = (_machine_busy_s() - b0) / (time.perf_counter() - t0)
        if busy < threshold or time.perf_counter() > deadline:
            return busy


def _wall_offset() -> float:
    """time.time() - time.perf_counter(), from the tightest of a few paired reads."""
    best: tuple[float, float] = (math.inf, 0.0)
    for _ in range(20):
        p0 = time.perf_counter()
        wall = time.time()
        p1 = time.perf_counter()
        best = min(best, (p1 - p0, wall - (p0 + p1) / 2))
    return best[1]


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-_TAIL:]
    return ""


async def run_one(
    sim: SimProcess, tool: Tool, level: Level, work: Path, tag: str, quiet_wait: float
) -> dict[str, Any]:
    """One client run at one level, measured and compared with the simulator's truth."""
    out = work / tag
    out.mkdir(parents=True, exist_ok=True)
    cmd = tool.command(level, f"http://127.0.0.1:{sim.port}", out)
    timeout = (level.duration or level.requests or 0) * 1.5 + _RUN_TIMEOUT_SLACK
    quiet = await wait_quiet(quiet_wait)
    load_before = os.getloadavg()
    offset = _wall_offset()
    sim_cpu0, busy0, self0 = sim.cpu_seconds(), _machine_busy_s(), time.process_time()
    run = await run_tree(cmd, tool.env, timeout, out / "output.log")
    sim_cpu1, busy1, self1 = sim.cpu_seconds(), _machine_busy_s(), time.process_time()
    wall = run.ended - run.started
    # Cores the rest of the machine (other users' processes) used during the run.
    others = (busy1 - busy0) - run.cpu_s - (sim_cpu1 - sim_cpu0) - (self1 - self0)
    row: dict[str, Any] = {
        "tool": tool.name,
        "version": tool.version,
        "level": level.name,
        "streams": level.streams,
        "command": cmd,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "returncode": run.returncode,
        "timed_out": run.timed_out,
        "wall_s": wall,
        "machine_busy_cores_before": quiet,
        "others_cores_during": others / wall if wall > 0 else math.nan,
        "cpu_s": run.cpu_s,
        "processes": run.processes_seen,
        "peak_rss_largest_mb": max((s[3] for s in run.samples), default=math.nan),
        "peak_rss_sum_mb": max((s[2] for s in run.samples), default=math.nan),
        "sim_cpu_s": sim_cpu1 - sim_cpu0,
    }
    try:
        client = tool.parse(out)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        client = None
        row["error"] = f"no readable output ({type(exc).__name__}: {exc})"
    if run.timed_out or run.returncode != 0 or client is None or not client.ttfts:
        row["failed_run"] = True
        row["error"] = row.get("error") or (
            "timed out" if run.timed_out else f"exit status {run.returncode}"
        )
        row["output_tail"] = _tail(out / "output.log")
        log(f"{tool.name} {level.name}: FAILED ({row['error']})")
        if client is None or not client.ttfts:
            return row
    # Everything the simulator received while the process lived, and the measured window.
    expected = (level.requests or 0) + int((level.duration or 0) * level.streams / 0.6) + 2000
    try:
        records = await sim.requests(min(20_000, expected))
    except (aiohttp.ClientError, TimeoutError) as exc:
        row.update(failed_run=True, error=f"simulator records unreadable ({exc!r})")
        return row
    lived = [r for r in records if run.started <= r["arrival"] <= run.ended]
    first = min(client.starts) - offset
    last = max(client.starts) - offset
    window = [r for r in lived if first <= r["arrival"] <= last + 0.25]
    server = [
        r["first_text_written"] - r["arrival"]
        for r in window
        if r.get("first_text_written") is not None
    ]
    tokens_lived = TOKENS_PER_REQUEST * sum(
        1 for r in lived if r.get("first_text_written") is not None
    )
    tokens_window = TOKENS_PER_REQUEST * len(server)
    first_arrival = min((r["arrival"] for r in lived), default=math.nan)
    window_cpu = _cpu_at(run.samples, last) - _cpu_at(run.samples, first)
    row.update(
        {
            "requests_measured": len(client.starts),
            "failed": client.failed,
            "cut_at_stop": client.cut,
            "server_requests_lived": len(lived),
            "server_requests_window": len(server),
            "client_ttft_p50_ms": pct(client.ttfts, 50) * MS,
            "client_ttft_p99_ms": pct(client.ttfts, 99) * MS,
            "server_ttft_p50_ms": pct(server, 50) * MS,
            "server_ttft_p99_ms": pct(server, 99) * MS,
            "drift_p50_ms": (pct(client.ttfts, 50) - pct(server, 50)) * MS,
            "drift_p99_ms": (pct(client.ttfts, 99) - pct(server, 99)) * MS,
            "reported_output_tokens": client.reported_output_tokens,
            "server_output_tokens": tokens_lived,
            "cpu_s_per_1m_tokens": run.cpu_s / tokens_lived * 1e6 if tokens_lived else None,
            "startup_cpu_s": _cpu_at(run.samples, first_arrival),
            "window_cpu_s_per_1m_tokens": (
                window_cpu / tokens_window * 1e6 if tokens_window else None
            ),
            "sampled_tree_cpu_s": run.samples[-1][1] if run.samples else math.nan,
        }
    )
    log(
        f"{tool.name} {level.name}: n={row['requests_measured']} failed={client.failed} "
        f"drift p50 {row['drift_p50_ms']:+.2f} p99 {row['drift_p99_ms']:+.1f} ms | server p99 "
        f"{row['server_ttft_p99_ms']:.1f} ms | cpu {run.cpu_s:.1f} s "
        f"({row['cpu_s_per_1m_tokens'] or math.nan:.0f}/1M tok) | rss "
        f"{row['peak_rss_largest_mb']:.0f}/{row['peak_rss_sum_mb']:.0f} MB | others "
        f"{row['others_cores_during']:.2f} cores"
    )
    return row


# ---------------------------------------------------------------- table


def _f(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, fmt)


def table(rows: list[dict[str, Any]], rounds: int, streams: int) -> str:
    """One Markdown row per client and round: its 1-stream and N-stream runs."""
    head = (
        (
            "| client | round | TTFT median error, 1 stream | median drift, N streams "
            "| p99 − true p99, N streams | CPU s per 1M tokens, N streams (whole process, "
            "start-up included) | start-up CPU s | CPU s per 1M tokens, measured window "
            "| peak RSS largest process / PSS sum of the tree "
            "| server first-write p99, N vs 1 stream "
            "| failed requests, 1 / N streams | other processes' cores during the runs, 1 / N "
            "streams |\n|" + "---|" * 12
        )
        .replace("N stream", f"{streams} stream")
        .replace("N vs", f"{streams} vs")
    )
    lines = [head]
    tools = list(dict.fromkeys(r["tool"] for r in rows))
    for tool in tools:
        for n in range(1, rounds + 1):
            mine = [r for r in rows if r["tool"] == tool and r["round"] == n]
            one = next((r for r in mine if r["streams"] == 1), {})
            many = next((r for r in mine if r["streams"] > 1), {})
            if not mine:
                continue
            cells = [
                tool + (f" {mine[0]['version']}" if mine[0]["version"] != "unknown" else ""),
                str(n),
                _cell_ms(one, "drift_p50_ms", ".2f"),
                _cell_ms(many, "drift_p50_ms", ".2f"),
                _cell_ms(many, "drift_p99_ms", ".1f"),
                _f(many.get("cpu_s_per_1m_tokens"), ".0f")
                + (f" ({_f(many.get('cpu_s'), '.1f')} s)" if many else ""),
                _f(many.get("startup_cpu_s"), ".1f"),
                _f(many.get("window_cpu_s_per_1m_tokens"), ".0f"),
                f"{_f(many.get('peak_rss_largest_mb'), '.0f')} / "
                f"{_f(many.get('peak_rss_sum_mb'), '.0f')} MB",
                f"{_f(many.get('server_ttft_p99_ms'), '.1f')} vs "
                f"{_f(one.get('server_ttft_p99_ms'), '.1f')} ms",
                f"{_failed(one)} / {_failed(many)}",
                f"{_f(one.get('others_cores_during'), '.2f')} / "
                f"{_f(many.get('others_cores_during'), '.2f')}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell_ms(row: dict[str, Any], key: str, fmt: str) -> str:
    if row.get("failed_run") and key not in row:
        return f"FAILED: {row.get('error', '?')}"
    value = row.get(key)
    return "–" if value is None else f"{value:+{fmt}} ms"


def _failed(row: dict[str, Any]) -> str:
    if not row:
        return "–"
    if row.get("failed_run") and "failed" not in row:
        return "run failed"
    text = f"{row.get('failed', 0)} of {row.get('requests_measured', 0)}"
    return text + (f" (+{row['cut_at_stop']} cut at stop)" if row.get("cut_at_stop") else "")


# ---------------------------------------------------------------- main


def _simulator() -> contextlib.AbstractAsyncContextManager[SimProcess]:
    return sim_process({"ref": REFERENCE}, record_requests=20_000, max_seconds=7200)


def _uptime() -> str:
    return Path("/proc/loadavg").read_text().strip()


def _find(explicit: str | None, name: str) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which(name)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Every available client at both levels, interleaved, against one simulator."""
    work = Path(args.workdir or tempfile.mkdtemp(prefix="side_by_side-"))
    ours_exe = args.ttft_exporter or str(Path(sys.executable).parent / "ttft-exporter")
    peers = {"guidellm": _find(args.guidellm, "guidellm"), "aiperf": _find(args.aiperf, "aiperf")}
    tokenizer = Path(args.tokenizer) if args.tokenizer else work / "tokenizer"
    notes: list[str] = []
    if not args.tokenizer and any(peers.values()):
        python = Path(next(p for p in peers.values() if p)).parent / "python"
        try:
            make_tokenizer(python, tokenizer)
        except (OSError, subprocess.SubprocessError) as exc:
            notes.append(f"tokenizer build failed: {exc}")
    tools = [_ours(ours_exe)]
    if peers["guidellm"]:
        tools.append(_guidellm(peers["guidellm"], tokenizer))
    else:
        notes.append("guidellm not run: no executable (--guidellm PATH)")
    if peers["aiperf"]:
        tools.append(_aiperf(peers["aiperf"], tokenizer))
    else:
        notes.append("aiperf not run: no executable (--aiperf PATH)")
    levels = (
        Level("1 stream", 1, requests=args.requests),
        Level(f"{args.streams} streams", args.streams, duration=args.duration),
    )
    loadavg_start = _uptime()
    log(f"load average before: {loadavg_start}; work dir {work}")
    rows: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(_simulator())
        for n in range(1, args.rounds + 1):
            for tool in tools:
                for level in levels:
                    tag = f"r{n}-{tool.name.split()[0]}-{level.streams}"
                    row = await run_one(sim, tool, level, work, tag, args.quiet_wait)
                    row["round"] = n
                    rows.append(row)
                    if sim.process.returncode is None:
                        continue
                    # The one simulator is gone (on this shared machine, killed from
                    # outside): this run's truth is void; say so, start another.
                    note = (
                        f"simulator exited with status {sim.process.returncode} during "
                        f"{tool.name} {level.name}, round {n}; a new one was started"
                    )
                    log(note)
                    notes.append(note)
                    row.update(failed_run=True, error="simulator died during the run")
                    for key in [k for k in row if k.startswith(("drift", "server_"))]:
                        del row[key]
                    sim = await stack.enter_async_context(_simulator())
    loadavg_end = _uptime()
    log(f"load average after: {loadavg_end}")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_start": loadavg_start,
        "loadavg_end": loadavg_end,
        "nproc": os.cpu_count(),
        "reference": REFERENCE,
        "tokens_per_request": TOKENS_PER_REQUEST,
        "prompt_tokens": PROMPT_TOKENS,
        "tokenizer": str(tokenizer),
        "versions": {t.name: t.version for t in tools},
        "levels": [asdict(level) for level in levels],
        "notes": notes,
        "runs": rows,
        "table": table(rows, args.rounds, args.streams),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the Markdown table (and the JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--guidellm", help="the guidellm executable (default: on PATH)")
    parser.add_argument("--aiperf", help="the aiperf executable (default: on PATH)")
    parser.add_argument("--ttft-exporter", help="default: ttft-exporter beside this Python")
    parser.add_argument("--tokenizer", help="a local HF tokenizer dir (default: build one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=30, help="measured, at 1 stream")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds, at --streams")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="wait up to this long for a quiet machine"
    )
    parser.add_argument("--workdir", help="where each run's output goes (default: a temp dir)")
    parser.add_argument("--json", help="also write the full result here")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(
        f"{result['date']}, {result['nproc']} cores, load average before "
        f"{result['loadavg_start']}, after {result['loadavg_end']}\n"
    )
    print(result["table"])
    for note in result["notes"]:
        print(f"\n- {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
