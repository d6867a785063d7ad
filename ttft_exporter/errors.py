"""Every exception of ttft_exporter, under one base, and the closed sets of failure
reasons of every component: each becomes a `reason` label, so each is an enum whose
values are the label values."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AdhocRejectReason",
    "CanaryFailureError",
    "ConfigError",
    "ConfigProblem",
    "FailureReason",
    "FluxCanaryReason",
    "FluxReconnectReason",
    "FluxValueError",
    "HTTPDropReason",
    "ProbeFailure",
    "ProbeRejected",
    "TTFTExporterError",
    "YAMLLimitError",
]


class TTFTExporterError(Exception):
    """Base class of every error this package raises on purpose."""


class FailureReason(enum.StrEnum):
    """Why a probe failed. A closed enum because it becomes the `reason` label."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    # The proxy (proxy_url or the environment's) refused the connection, refused the
    # CONNECT tunnel, or asked for credentials (407).
    PROXY = "proxy"
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


class AdhocRejectReason(enum.StrEnum):
    """Why a `/probe` request was answered without probing
    (`ttft_exporter_adhoc_probes_rejected_total`)."""

    TARGET_BUSY = "target_busy"  # 429: the target had a probe in flight
    POOL_TIMEOUT = "pool_timeout"  # 503: no ad-hoc slot became free within the deadline
    BUDGET_EXHAUSTED = "budget_exhausted"  # 429: the target's daily budget is spent


class HTTPDropReason(enum.StrEnum):
    """Why the exporter's own HTTP server closed a connection
    (`ttft_exporter_http_connections_dropped_total`)."""

    LIMIT = "limit"  # over --web.max-connections, closed at accept
    CLIENT_LIMIT = "client_limit"  # over --web.max-connections-per-client
    HEADER_TIMEOUT = "header_timeout"  # no handshake and request head in time


class FluxReconnectReason(enum.StrEnum):
    """Why a Flux WebSocket connection ended or failed (`ttft_flux_reconnects_total`)."""

    CONNECT_FAILED = "connect_failed"
    CLOSED = "closed"
    ERROR = "error"
    STALE = "stale"
    PING_TIMEOUT = "ping_timeout"


class FluxCanaryReason(enum.StrEnum):
    """Why a Flux canary check failed (`ttft_flux_canary_failures_total`)."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    NOT_PROPAGATED = "not_propagated"
    PROTOCOL = "protocol"


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


class CanaryFailureError(TTFTExporterError):
    """A Flux canary check failed for a bounded reason."""

    def __init__(
        self, reason: FluxCanaryReason, detail: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class YAMLLimitError(TTFTExporterError, ValueError):
    """A well-formed document the loader refuses; `path` locates it (`targets[0].url`)."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.path = path
        self.message = f"{message}{where}"


class FluxValueError(TTFTExporterError):
    """A Flux message value that is present but not one Flux sends; the decoder turns
    it into a malformed message (never raised out of the decoder)."""
