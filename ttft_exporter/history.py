"""Recent probe results for the index page and `/probe?debug=true`; failures are kept
after they age out of the main list, as blackbox_exporter does."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from ttft_exporter.probes.base import ProbeResult

__all__ = ["History", "ProbeRecord"]


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One finished probe, with its log lines (secrets already redacted)."""

    id: int
    target: str
    result: ProbeResult
    log: tuple[str, ...]


class History:
    """The last `limit` probes plus the last `limit` failures that aged out."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._recent: deque[ProbeRecord] = deque()
        self._failures: deque[ProbeRecord] = deque(maxlen=max(limit, 1))
        self._ids = itertools.count(1)

    def add(self, target: str, result: ProbeResult, log: list[str]) -> ProbeRecord:
        """Keep a finished probe."""
        record = ProbeRecord(next(self._ids), target, result, tuple(log))
        if self.limit <= 0:
            return record
        self._recent.append(record)
        if len(self._recent) > self.limit:
            old = self._recent.popleft()
            if not old.result.success:
                self._failures.append(old)
        return record

    def records(self) -> list[ProbeRecord]:
        """Every kept record, newest first."""
        return sorted([*self._recent, *self._failures], key=lambda r: r.id, reverse=True)

    def get(self, record_id: int) -> ProbeRecord | None:
        """A record by id."""
        return next((r for r in self.records() if r.id == record_id), None)
