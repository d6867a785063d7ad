"""`bench compare A.json B.json`: the steps of two runs side by side, matched by their
load, with B's change over A for each figure (latencies in ms, `+` is slower)."""

from __future__ import annotations

from collections.abc import Callable

from ttft_exporter.bench.results import BenchResults, StepResult

__all__ = ["FIGURES", "compare"]

Figure = Callable[[StepResult], float | None]


def _ms(name: str, key: str) -> Figure:
    def get(step: StepResult) -> float | None:
        value: float | None = getattr(getattr(step.stats, name), key)
        return None if value is None else value * 1000

    return get


FIGURES: tuple[tuple[str, Figure], ...] = (
    ("ttft p50 ms", _ms("ttft", "p50")),
    ("ttft p99 ms", _ms("ttft", "p99")),
    ("tpot p50 ms", _ms("tpot", "p50")),
    ("itl p99 ms", _ms("itl", "p99")),
    ("e2e p99 ms", _ms("e2e", "p99")),
    ("req/s", lambda s: s.stats.requests_per_second),
    ("out tok/s", lambda s: s.stats.output_tokens_per_second),
    ("goodput %", lambda s: None if s.stats.goodput is None else s.stats.goodput * 100),
    ("errors", lambda s: float(s.stats.requests - s.stats.succeeded)),
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _delta(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    change = b - a
    share = f" ({change / a:+.0%})" if a else ""
    return f"{change:+,.1f}{share}"


def _key(step: StepResult) -> tuple[str, float]:
    return step.kind, step.load


def compare(a: BenchResults, b: BenchResults, *, names: tuple[str, str] = ("A", "B")) -> str:
    """The comparison table; steps in only one run are listed as such."""
    lines = [
        f"A: {names[0]} ({a.run.target}, {a.run.model})",
        f"B: {names[1]} ({b.run.target}, {b.run.model})",
    ]
    b_steps = {_key(s): s for s in b.steps}
    a_keys = {_key(s) for s in a.steps}
    for step in a.steps:
        other = b_steps.get(_key(step))
        label = f"c={step.load:g}" if step.kind == "concurrency" else f"r={step.load:g}/s"
        if other is None:
            lines.append(f"\n{label}: only in A")
            continue
        flags = []
        if step.self_watch.client_bound:
            flags.append("A client-bound")
        if other.self_watch.client_bound:
            flags.append("B client-bound")
        lines.append(f"\n{label}" + (f" ({', '.join(flags)})" if flags else ""))
        lines.append(f"{'figure':>12} {'A':>10} {'B':>10} {'B - A':>18}")
        for name, get in FIGURES:
            va, vb = get(step), get(other)
            lines.append(f"{name:>12} {_cell(va):>10} {_cell(vb):>10} {_delta(va, vb):>18}")
    for step in b.steps:
        if _key(step) not in a_keys:
            label = f"c={step.load:g}" if step.kind == "concurrency" else f"r={step.load:g}/s"
            lines.append(f"\n{label}: only in B")
    return "\n".join(lines) + "\n"
