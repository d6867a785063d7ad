"""Validation pieces every config section shares: the strict model base, located
cross-field errors, names, URLs and secrets read from the environment or a file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo
from pydantic_core import PydanticCustomError

__all__ = [
    "LABEL_NAME",
    "StrictModel",
    "check_http_url",
    "check_name",
    "compile_regex",
    "field_rule",
    "read_secret",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class StrictModel(BaseModel):
    """Unknown keys are errors; a loaded config is never mutated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_rule(field: str, message: str) -> PydanticCustomError:
    """A cross-field error located at `field` of the model that raises it; the loader
    appends the field to the model's path (`targets[1].timeout: ...`)."""
    return PydanticCustomError("field_rule", message, {"field": field})


def check_name(value: str) -> str:
    """A name that becomes a label value and a URL parameter."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            "must start with a letter or digit and use only letters, digits, "
            "'_', '.', ':' or '-' (at most 128 characters)"
        )
    return value


def compile_regex(value: Any) -> Any:
    """A `mode="before"` validator body: compile a pattern string, with the regex
    error as the message (other values pass through to the type check)."""
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def check_http_url(value: str, secret_hint: str) -> str:
    """An absolute http(s) URL without credentials, trailing slash dropped."""
    from yarl import URL

    try:
        url = URL(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    if url.user or url.password:
        raise ValueError(f"must not contain credentials; use {secret_hint}")
    return value.rstrip("/")


def read_secret(
    env_field: str,
    env_name: str | None,
    file_field: str,
    file_path: Path | None,
    info: ValidationInfo | None = None,
) -> SecretStr | None:
    """The secret named by an `*_env` or `*_file` field (at most one may be set), read
    now so that a missing secret is a config error, not a failing probe later. With the
    validation context `{"resolve_secrets": False}` (e.g. `ttft-exporter rules`, which
    needs no secret) nothing is read."""
    if env_name and file_path:
        raise field_rule(env_field, f"set {env_field} or {file_field}, not both")
    context = info.context if info is not None else None
    if isinstance(context, dict) and context.get("resolve_secrets") is False:
        return None
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            raise field_rule(env_field, f"environment variable {env_name} is not set or empty")
        return SecretStr(value)
    if file_path:
        try:
            value = Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise field_rule(file_field, f"cannot read: {exc.strerror}") from None
        if not value:
            raise field_rule(file_field, "file is empty")
        return SecretStr(value)
    return None
