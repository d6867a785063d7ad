"""Every exception of ttft_exporter, under one base, and the closed set of failure reasons."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "FailureReason",
    "ProbeFailure",
    "ProbeRejected",
    "TTFTExporterError",
]


class TTFTExporterError(Exception):
    """Base class of every error this package raises on purpose."""


class FailureReason(enum.StrEnum):
    """Why a probe failed. A closed enum because it becomes the `reason` label."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    TIMEOUT = "timeout"
    STREAM_ERROR = "stream_error"
    PROTOCOL = "protocol"
    # The stream ended cleanly but incomplete: no finish reason, or (for protocols with
    # a terminator such as OpenAI's `[DONE]`) EOF before the terminator.
    TRUNCATED = "truncated"
    NO_TOKENS = "no_tokens"
    CONTENT_MISMATCH = "content_mismatch"
    INTERNAL = "internal"


class ProbeFailure(TTFTExporterError):  # noqa: N818 - a failure is data, not an error
    """Raised inside a probe at the point where the cause of a failure is known.

    `detail` is a short human text for logs and `/probe?debug=true`. It must never
    contain secrets or response text longer than a short excerpt. Response text that
    may echo a secret goes into `excerpt` instead, uncut and outside the message: the
    probe engine redacts it, then cuts it, then appends it to the detail.
    """

    def __init__(self, reason: FailureReason, detail: str, *, excerpt: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.excerpt = excerpt


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One validation problem: where (`targets[1].timeout`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(TTFTExporterError):
    """A configuration file that cannot be used, with every problem found in it."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid configuration {source}:\n{lines}")


class ProbeRejected(TTFTExporterError):  # noqa: N818 - an answer to a client, not a bug
    """An ad-hoc probe that was not started: the HTTP status for the client (429 when
    the target is busy, 503 when no slot was free in time), a message and a
    Retry-After in seconds."""

    def __init__(self, status: int, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
