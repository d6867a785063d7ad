"""SLOs and goodput as vLLM defines them (`vllm bench serve --goodput`): a request is
good when it succeeded and meets every given SLO (TTFT, TPOT, e2e); TPOT counts as 0
when it was not measured (one output token). Goodput is the share of the measured
requests that are good, and their number per second."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ttft_exporter.bench.records import RequestRecord
from ttft_exporter.durations import parse_duration

__all__ = ["SLO_KEYS", "count_good", "is_good", "parse_slo"]

# `e2el` is vLLM's spelling of e2e.
SLO_KEYS = ("ttft", "tpot", "e2e")
_ALIASES = {"e2el": "e2e"}


def parse_slo(text: str) -> dict[str, float]:
    """`ttft=800ms,tpot=60ms,e2e=5s` into seconds; ValueError naming `--slo`."""
    slo: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        key = _ALIASES.get(key.strip(), key.strip())
        if not sep or key not in SLO_KEYS:
            raise ValueError(
                f"--slo: {part.strip()!r}: want key=duration with key one of "
                f"{', '.join(SLO_KEYS)} (e.g. ttft=800ms,tpot=60ms)"
            )
        if key in slo:
            raise ValueError(f"--slo: {key} given twice")
        try:
            seconds = parse_duration(value.strip())
        except ValueError as exc:
            raise ValueError(f"--slo: {key}: {exc}") from None
        if seconds <= 0:
            raise ValueError(f"--slo: {key}: must be above 0")
        slo[key] = seconds
    return slo


def is_good(record: RequestRecord, slo: Mapping[str, float]) -> bool:
    """Succeeded and met every SLO given (a missing TPOT counts as 0, as in vLLM)."""
    if not record.success:
        return False
    figures = {"ttft": record.ttft, "tpot": record.tpot or 0.0, "e2e": record.e2e}
    for key, bound in slo.items():
        value = figures[key]
        if value is None or value > bound:
            return False
    return True


def count_good(records: Iterable[RequestRecord], slo: Mapping[str, float]) -> int:
    """How many of `records` are good."""
    return sum(1 for record in records if is_good(record, slo))
