"""The OpenTelemetry SDK's own log records (export failures, retries), redacted: a
collector that answers 401 with the token it was sent would otherwise put the token in
the SDK's "Failed to export … reason: <body>" line. The `opentelemetry` logger stops
propagating; one handler on it redacts every record (message and traceback), cuts it,
and hands it to `ttft_exporter.otel.sdk`, whose records reach the exporter's handlers
and formats like any other."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable

from ttft_exporter.redact import Redactor

__all__ = ["redact_sdk_logs"]

# An SDK log line quotes a response body at most; a few KiB is plenty.
_LINE_LIMIT = 2048
_SDK_LOGGER = "opentelemetry"
_TARGET_LOGGER = "ttft_exporter.otel.sdk"


class _RedactingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.redactor = Redactor()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        except Exception:  # noqa: BLE001 - a record that cannot format is dropped, said so
            text = f"unformattable OpenTelemetry SDK log record from {record.name}"
        clean = logging.makeLogRecord(
            {
                "name": _TARGET_LOGGER,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": self.redactor.cut(text, _LINE_LIMIT),
                "args": None,
                "created": record.created,
                "msecs": record.msecs,
                "pathname": record.pathname,
                "lineno": record.lineno,
                "funcName": record.funcName,
                "thread": record.thread,
                "threadName": record.threadName,
                "process": record.process,
            }
        )
        logging.getLogger(_TARGET_LOGGER).handle(clean)


_HANDLER = _RedactingHandler()


def redact_sdk_logs(secrets: Iterable[str]) -> None:
    """Route the SDK's log records through the redacting handler, redacting `secrets`
    from now on (added to those given before: an old provider still shutting down may
    log with the old headers)."""
    sdk = logging.getLogger(_SDK_LOGGER)
    if _HANDLER not in sdk.handlers:
        sdk.addHandler(_HANDLER)
        sdk.propagate = False
    _HANDLER.redactor = Redactor([*_HANDLER.redactor.secrets, *secrets])
