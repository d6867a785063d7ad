"""Plots of a results file (PNG and SVG): TTFT, TPOT and ITL percentiles against the
load, and the throughput-latency curve. matplotlib is an optional dependency (the
`bench` extra), imported only here and only when plots are asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttft_exporter.bench.results import BenchResults, StepResult
from ttft_exporter.bench.stats import Distribution

__all__ = ["FIGSIZE", "PLOT_DPI", "PLOT_NAMES", "PlotsUnavailableError", "write_plots"]

FIGSIZE = (9.0, 3.2)  # inches: 900 x 320 pixels at PLOT_DPI
PLOT_DPI = 100
PLOT_NAMES = ("latency", "throughput")


class PlotsUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib as mpl

        mpl.use("Agg")  # files only: never a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotsUnavailableError(
            "plots need matplotlib: pip install 'ttft-exporter[bench]' "
            "(or pass --no-plots); the JSON and CSV were written"
        ) from None
    return plt


def _ms(dist: Distribution, key: str) -> float:
    value = getattr(dist, key)
    return float("nan") if value is None else value * 1000


def _label(steps: list[StepResult]) -> str:
    return "concurrent streams" if steps[0].kind == "concurrency" else "requests/s offered"


def write_plots(results: BenchResults, out_dir: Path) -> list[Path]:
    """Write latency.{png,svg} and throughput.{png,svg}; returns the paths. Client-bound
    steps are drawn hollow: their figures include the client's own delay."""
    plt = _pyplot()
    steps = sorted(results.steps, key=lambda s: s.load)
    if not steps:
        return []
    loads = [s.load for s in steps]
    written: list[Path] = []

    fig, axes = plt.subplots(1, 3, figsize=FIGSIZE, dpi=PLOT_DPI)
    for ax, name in zip(axes, ("ttft", "tpot", "itl"), strict=True):
        for key, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            ax.plot(loads, [_ms(getattr(s.stats, name), key) for s in steps], style, label=key)
        for i, step in enumerate(s for s in steps if s.self_watch.client_bound):
            ax.axvline(
                step.load, color="red", alpha=0.3, lw=6, label="client-bound" if i == 0 else None
            )
        ax.set_title(f"{name.upper()} (ms)")
        ax.set_xlabel(_label(steps))
        _load_axis(ax, loads)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{results.run.target} ({results.run.model})", fontsize="medium")
    fig.tight_layout()
    written += _save(fig, out_dir / "latency")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=PLOT_DPI)
    tput = [s.stats.output_tokens_per_second for s in steps]
    for key, style in (("p50", "o-"), ("p99", "^:")):
        ax.plot(tput, [_ms(s.stats.ttft, key) for s in steps], style, label=f"TTFT {key}")
    for step, x in zip(steps, tput, strict=True):
        ax.annotate(f"{step.load:g}", (x, _ms(step.stats.ttft, "p50")), fontsize="x-small")
    ax.set_xlabel("output tokens/s (client-bound steps: red)")
    for step, x in zip(steps, tput, strict=True):
        if step.self_watch.client_bound:
            ax.plot([x], [_ms(step.stats.ttft, "p50")], "o", color="red", alpha=0.5)
    ax.set_ylabel("TTFT (ms)")
    ax.set_title("throughput vs latency (labels: load)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    written += _save(fig, out_dir / "throughput")
    plt.close(fig)
    return written


def _load_axis(ax: Any, loads: list[float]) -> None:
    """Log scale for loads spanning a wide range, ticked at the loads themselves."""
    if max(loads) / min(loads) >= 8:
        ax.set_xscale("log")
    ax.set_xticks(loads)
    ax.set_xticklabels([f"{load:g}" for load in loads], fontsize="small")
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def _save(fig: Any, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        # No bbox_inches="tight": the image keeps FIGSIZE x PLOT_DPI pixels exactly.
        fig.savefig(path, dpi=PLOT_DPI)
    return paths
