"""`ttft-exporter bench`: the command line of the load tester, in the exporter's
flag style. `run(argv)` returns the exit code: 0, or 1 with one line naming the flag
(or file) at fault."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NoReturn, TextIO

from ttft_exporter import __version__
from ttft_exporter.bench.compare import compare
from ttft_exporter.bench.goodput import parse_slo
from ttft_exporter.bench.merge import merge_results
from ttft_exporter.bench.profile import (
    SWEEP_CONCURRENCY,
    Step,
    StepKind,
    Warmup,
    parse_loads,
    parse_stop,
    parse_warmup,
)
from ttft_exporter.bench.progress import Progress, format_table
from ttft_exporter.bench.prompts import (
    JSONLPrompts,
    PromptSource,
    SyntheticPrompts,
    load_tokenizer,
)
from ttft_exporter.bench.results import (
    BenchResults,
    RunInfo,
    read_results,
    records_csv,
    results_schema,
    write_results,
)
from ttft_exporter.bench.runner import FIXED_OUTPUT_PROTOCOLS, BenchPlan, Runner
from ttft_exporter.bench.selfwatch import ClientBound, SelfWatch
from ttft_exporter.durations import parse_duration
from ttft_exporter.errors import ConfigError
from ttft_exporter.eventloop import EVENT_LOOPS, EventLoopError, loop_name
from ttft_exporter.eventloop import run as run_on_loop
from ttft_exporter.targets import TargetBase

__all__ = ["build_parser", "run"]

Profile = Literal["concurrency", "rate", "sweep"]
# Kubernetes sets it in each pod of an Indexed Job: the worker's index.
_INDEX_ENV = "JOB_COMPLETION_INDEX"
# Each worker's seed is the run's seed plus this times its index: disjoint streams.
_SEED_STRIDE = 1_000_003


class UsageError(Exception):
    """A flag or file the user got wrong; the message names it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `ttft-exporter bench` (a run; `compare`/`merge` have their own)."""
    p = _Parser(
        prog="ttft-exporter bench",
        description="Load-test an LLM endpoint with the exporter's probe engine. "
        "Also: `bench compare A.json B.json`, `bench merge OUT.json IN.json...`, "
        "`bench schema`.",
    )
    a = p.add_argument
    a("--config.file", dest="config_file", help="exporter config holding the target")
    a("--target", help="the name of the target in --config.file")
    a("--url", help="ad hoc: base URL of the API (instead of --config.file)")
    a("--protocol", default="openai-chat", help="ad hoc: protocol (default: %(default)s)")
    a("--model", help="ad hoc: model name")
    a("--api-key-env", dest="api_key_env", help="ad hoc: environment variable with the API key")
    a(
        "--profile",
        choices=("concurrency", "rate", "sweep"),
        help="default: rate if --rate "
        "is given, else concurrency; sweep: the highest load meeting --slo",
    )
    a(
        "--concurrency",
        help="concurrent streams per step, comma-separated (default: 1; "
        f"sweep: {','.join(f'{c:g}' for c in SWEEP_CONCURRENCY)})",
    )
    a("--rate", help="requests per second per step (Poisson arrivals), comma-separated")
    a("--requests", type=int, help="measured requests per step (default: 100)")
    a("--duration", help="measure each step this long instead, e.g. 30s")
    a(
        "--warmup",
        default="auto",
        help="requests (10) or a duration (5s) before each step, "
        "not measured; auto: one per stream (concurrency), 1s (rate) (default: %(default)s)",
    )
    a("--slo", help="SLOs for goodput and sweep, e.g. ttft=800ms,tpot=60ms,e2e=10s")
    a(
        "--slo.min-goodput",
        dest="min_goodput",
        default="99%",
        help="a step meets the SLOs when this share of requests does (default: %(default)s)",
    )
    a(
        "--max-tokens",
        dest="max_tokens",
        type=int,
        help="output tokens per request (default: the target's max_tokens)",
    )
    a(
        "--no-fixed-output",
        dest="fixed_output",
        action="store_false",
        help="do not send "
        "ignore_eos/min_tokens (sent for openai protocols, so every answer has max-tokens tokens)",
    )
    a(
        "--prompt.tokens",
        dest="prompt_tokens",
        type=int,
        default=256,
        help="synthetic prompt length in tokens (default: %(default)s)",
    )
    a(
        "--prompt.tokens-stddev",
        dest="prompt_stddev",
        type=float,
        default=0.0,
        help="its standard deviation (default: %(default)s)",
    )
    a(
        "--prompt.tokenizer",
        dest="tokenizer",
        help="a local tokenizer.json to count tokens "
        "(needs the tokenizers package); without it counts are approximate",
    )
    a(
        "--prompts",
        help='a JSONL file of prompts (a string or {"prompt", "max_tokens"} '
        "per line) instead of synthetic ones",
    )
    a("--timeout", default="60s", help="deadline of one request (default: %(default)s)")
    a(
        "--fresh-connections",
        dest="fresh",
        action="store_true",
        help="open a new connection for every request (default: reuse, or the target's setting)",
    )
    a("--seed", type=int, help="seed of prompts and arrivals (worker i uses seed + i x 1000003)")
    a(
        "--event-loop",
        dest="event_loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="the client's event loop: auto takes uvloop when installed, which costs less "
        "CPU per token (default: %(default)s)",
    )
    a("--worker", type=int, help=f"this worker's index (default: ${_INDEX_ENV} or 0)")
    a(
        "--output-dir",
        dest="output_dir",
        default="bench-results",
        help="writes results.json, results.csv and plots here (default: %(default)s)",
    )
    a("--no-plots", dest="plots", action="store_false", help="write no plots")
    a(
        "--client-bound.max-suspect-share",
        dest="max_suspect",
        default="5%",
        help="a step with more suspect requests is client-bound (default: %(default)s)",
    )
    a(
        "--client-bound.loop-lag",
        dest="loop_lag",
        default="25ms",
        help="a request during which the event loop was later than this is suspect "
        "(default: %(default)s)",
    )
    a("--version", action="version", version=f"ttft-exporter {__version__}")
    return p


def _share(text: str, flag: str) -> float:
    item = text.strip()
    try:
        value = float(item[:-1]) / 100 if item.endswith("%") else float(item)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a share (99% or 0.99)") from None
    if not 0 <= value <= 1:
        raise UsageError(f"{flag}: must be between 0 and 100%")
    return value


def _target(args: argparse.Namespace) -> TargetBase:
    from ttft_exporter.config import load_config, parse_config

    if args.config_file is not None:
        if args.url is not None:
            raise UsageError("--url: give --config.file with --target, or --url, not both")
        if args.target is None:
            raise UsageError("--target: required with --config.file")
        try:
            config, _ = load_config(args.config_file)
        except ConfigError as exc:
            raise UsageError(f"--config.file: {exc}") from None
        for target in config.targets:
            if target.name == args.target:
                return target
        names = ", ".join(t.name for t in config.targets)
        raise UsageError(f"--target: no target {args.target!r} in {args.config_file} ({names})")
    if args.url is None:
        raise UsageError("--url: give --url (with --model) or --config.file with --target")
    if args.model is None:
        raise UsageError("--model: required with --url")
    spec = {
        "name": "bench",
        "protocol": args.protocol,
        "url": args.url,
        "model": args.model,
        "prompt": "hello",
        "interval": "1h",
        "timeout": "59m",
        "reuse_connections": True,
    }
    if args.api_key_env:
        spec["api_key_env"] = args.api_key_env
    try:
        return parse_config({"targets": [spec]}).targets[0]
    except ConfigError as exc:
        # The loader lists every problem, one per line after a heading: here they are
        # problems of flags, named as such, on one line.
        lines = str(exc).splitlines()[1:] or [str(exc)]
        problems = "; ".join(_as_flag(line.strip()) for line in lines)
        raise UsageError(problems) from None


def _as_flag(problem: str) -> str:
    """`targets[0].api_key_env: ...` as `--api-key-env: ...`."""
    head, sep, rest = problem.partition(": ")
    if sep and head.startswith("targets[0]."):
        return "--" + head.removeprefix("targets[0].").replace("_", "-") + sep + rest
    return problem


def _steps(args: argparse.Namespace) -> tuple[tuple[Step, ...], Profile]:
    profile: Profile = args.profile or ("rate" if args.rate is not None else "concurrency")
    if args.rate is not None and args.concurrency is not None:
        raise UsageError("--rate: give --concurrency or --rate, not both")
    if profile == "rate" and args.rate is None:
        raise UsageError("--rate: required with --profile rate")
    if profile == "sweep" and not args.slo:
        raise UsageError("--slo: a sweep needs SLOs to find the highest load meeting them")
    kind: StepKind = "rate" if args.rate is not None else "concurrency"
    if kind == "rate":
        loads = parse_loads(args.rate, "--rate", integer=False)
    elif args.concurrency is not None:
        loads = parse_loads(args.concurrency, "--concurrency", integer=True)
    else:
        loads = SWEEP_CONCURRENCY if profile == "sweep" else (1.0,)
    if profile == "sweep" and list(loads) != sorted(loads):
        raise UsageError("--concurrency: a sweep's loads must be in ascending order")
    stop = parse_stop(args.requests, args.duration)
    steps = []
    for index, load in enumerate(loads):
        if args.warmup == "auto":
            warmup = Warmup(requests=int(load)) if kind == "concurrency" else Warmup(duration=1.0)
        else:
            warmup = parse_warmup(args.warmup)
        steps.append(Step(index, kind, load, stop, warmup))
    return tuple(steps), profile


def _prompts(args: argparse.Namespace, seed: int | None) -> PromptSource:
    counter = load_tokenizer(args.tokenizer) if args.tokenizer else None
    if args.prompts:
        return JSONLPrompts(Path(args.prompts), counter=counter)
    return SyntheticPrompts(args.prompt_tokens, args.prompt_stddev, seed=seed, counter=counter)


def _worker(args: argparse.Namespace) -> int:
    if args.worker is not None:
        worker: int = args.worker
    else:
        raw = os.environ.get(_INDEX_ENV, "0")
        if not raw.isdigit():
            raise UsageError(f"--worker: ${_INDEX_ENV} is {raw!r}, not an index")
        worker = int(raw)
    if worker < 0:
        raise UsageError("--worker: must not be negative")
    return worker


def _plan(args: argparse.Namespace) -> tuple[BenchPlan, Profile]:
    try:
        steps, profile = _steps(args)
        slo = parse_slo(args.slo) if args.slo else {}
        timeout = parse_duration(args.timeout)
        if timeout <= 0:
            raise UsageError("--timeout: must be above 0")
        worker = _worker(args)
        seed = None if args.seed is None else args.seed + worker * _SEED_STRIDE
        prompts = _prompts(args, seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    target = _target(args)
    update: dict[str, object] = {}
    if args.max_tokens is not None:
        if args.max_tokens < 1:
            raise UsageError("--max-tokens: must be at least 1")
        update["max_tokens"] = args.max_tokens
    if args.fresh:
        update["reuse_connections"] = False
    if update:
        target = target.model_copy(update=update)
    plan = BenchPlan(
        target=target,
        steps=steps,
        prompts=prompts,
        slo=slo,
        min_goodput=_share(args.min_goodput, "--slo.min-goodput"),
        sweep=profile == "sweep",
        fixed_output=args.fixed_output,
        timeout=timeout,
        worker=worker,
        seed=seed,
    )
    return plan, profile


async def _execute(plan: BenchPlan, watch: SelfWatch, progress: Progress) -> Runner:
    runner = Runner(
        plan,
        watch,
        on_step_start=progress.start_step,
        on_record=progress.on_record,
        on_step_end=progress.end_step,
    )
    async with watch:
        await runner.run()
    return runner


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan, profile = _plan(args)
    max_suspect = _share(args.max_suspect, "--client-bound.max-suspect-share")
    try:
        loop_lag = parse_duration(args.loop_lag)
    except ValueError as exc:
        raise UsageError(f"--client-bound.loop-lag: {exc}") from None
    try:
        event_loop = loop_name(args.event_loop)
    except EventLoopError as exc:
        raise UsageError(str(exc)) from None
    out_dir = Path(args.output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--output-dir: cannot create {out_dir}: {exc.strerror}") from None
    target = plan.target
    fixed = (
        target.max_tokens
        if plan.fixed_output and target.protocol in FIXED_OUTPUT_PROTOCOLS
        else None
    )
    print(
        f"ttft-exporter bench: {target.name} ({target.protocol}, model {target.model}), "
        f"{len(plan.steps)} step(s), prompts: {plan.prompts.counting} token counts"
        + ("" if fixed else ", output length not fixed (protocol has no ignore_eos)")
        + f", event loop {event_loop}",
        file=err,
    )
    started = time.time()
    progress = Progress(err, tty=err.isatty(), steps=len(plan.steps))
    watch = SelfWatch(bound=loop_lag, thresholds=ClientBound(max_suspect_share=max_suspect))
    runner = run_on_loop(_execute(plan, watch, progress), event_loop)
    results = BenchResults(
        run=RunInfo(
            tool=f"ttft-exporter {__version__}",
            target=target.name,
            protocol=target.protocol,
            model=target.model,
            # Credentials are refused in URLs at load; any known secret is redacted anyway.
            url=target.redactor.redact(target.url),
            profile=profile,
            slo=plan.slo,
            min_goodput=plan.min_goodput,
            seed=plan.seed,
            workers=1,
            prompt_counting=plan.prompts.counting,
            fixed_output_tokens=fixed,
            reuse_connections=target.reuse_connections,
            event_loop=event_loop,
            started_at=started,
        ),
        steps=runner.steps,
        sweep=runner.sweep,
        records=list(runner.records),
    )
    out.write(format_table(results.steps, results.sweep))
    _write_all(results, out_dir, plots=args.plots, err=err)
    return 0


def _write_all(results: BenchResults, out_dir: Path, *, plots: bool, err: TextIO) -> None:
    write_results(results, out_dir / "results.json")
    (out_dir / "results.csv").write_text(records_csv(results))
    written = [out_dir / "results.json", out_dir / "results.csv"]
    if plots:
        from ttft_exporter.bench.plots import PlotsUnavailableError, write_plots

        try:
            written += write_plots(results, out_dir)
        except PlotsUnavailableError as exc:
            print(f"ttft-exporter bench: {exc}", file=err)
    for path in written:
        print(f"wrote {path}", file=err)


def _compare(argv: Sequence[str], out: TextIO) -> int:
    p = _Parser(prog="ttft-exporter bench compare")
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    args = p.parse_args(argv)
    try:
        a, b = read_results(Path(args.a)), read_results(Path(args.b))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out.write(compare(a, b, names=(args.a, args.b)))
    return 0


def _merge(argv: Sequence[str], err: TextIO) -> int:
    p = _Parser(prog="ttft-exporter bench merge")
    p.add_argument("output", metavar="OUT.json")
    p.add_argument("inputs", metavar="IN.json", nargs="+")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    args = p.parse_args(argv)
    try:
        merged = merge_results([read_results(Path(path)) for path in args.inputs])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    output = Path(args.output)
    write_results(merged, output)
    (output.with_suffix(".csv")).write_text(records_csv(merged))
    print(
        f"wrote {output} ({len(merged.records)} records of {merged.run.workers} workers)", file=err
    )
    sys.stdout.write(format_table(merged.steps, merged.sweep))
    return 0


def run(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`ttft-exporter bench ...`; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(argv)
    try:
        if argv and argv[0] == "compare":
            return _compare(argv[1:], out)
        if argv and argv[0] == "merge":
            return _merge(argv[1:], err)
        if argv and argv[0] == "schema":
            import json

            out.write(json.dumps(results_schema(), indent=2) + "\n")
            return 0
        return _run(build_parser().parse_args(argv), out, err)
    except UsageError as exc:
        print(f"ttft-exporter bench: {exc}", file=err)
        return 1
