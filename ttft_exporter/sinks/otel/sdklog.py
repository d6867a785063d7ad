"""The OpenTelemetry SDK's own log records (export failures, retries), redacted: a
gRPC collector that refuses a token and echoes it in its status details would
otherwise put the token in the SDK's "Failed to export … error details: …" line
(tests/unit/test_secrets.py produces it). One handler on the `opentelemetry` logger
rewrites every record of the SDK in place (message and traceback redacted, then cut)
before it propagates to the exporter's own handlers, which run after it."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable

from ttft_exporter.redact import Redactor

__all__ = ["redact_sdk_logs"]

# An SDK log line quotes a response body or a status message at most.
_LINE_LIMIT = 2048
_SDK_LOGGER = "opentelemetry"


class _RedactingHandler(logging.Handler):
    """Redacts the records passing through; emits nothing itself."""

    def __init__(self) -> None:
        super().__init__()
        self.redactor = Redactor()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        except Exception:  # noqa: BLE001 - a record that cannot format loses its text
            text = f"unformattable log record of {record.name}"
        # In place: the handlers after this one (the root's) see only this text.
        record.msg = self.redactor.cut(text, _LINE_LIMIT)
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None


_HANDLER = _RedactingHandler()


def redact_sdk_logs(secrets: Iterable[str]) -> None:
    """Redact `secrets` from every SDK log record from now on (added to those given
    before: an old provider still shutting down may log with the old headers)."""
    sdk = logging.getLogger(_SDK_LOGGER)
    if _HANDLER not in sdk.handlers:
        sdk.addHandler(_HANDLER)
    _HANDLER.redactor = Redactor([*_HANDLER.redactor.secrets, *secrets])
