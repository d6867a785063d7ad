"""Validation pieces every config section shares: the strict model base, located
cross-field errors, names, URLs, user regular expressions (RE2) and secrets read from
the environment or a file."""

from __future__ import annotations

import functools
import json
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SecretStr,
    ValidationInfo,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "LABEL_NAME",
    "MAX_PATTERN_CHARS",
    "ConfigPath",
    "Regex",
    "RegexMatch",
    "StrictModel",
    "check_free_form",
    "check_http_url",
    "check_name",
    "field_rule",
    "read_bounded",
    "read_env_secret",
    "read_file_secret",
    "read_secret_pair",
    "resolving_secrets",
]

# Key and token files hold one line; a bigger one is a mistake (or /dev/zero).
SECRET_FILE_LIMIT = 64 * 1024
# Free-form values (extra_body) are sent with every probe: bounded at load.
FREE_FORM_BYTES = 64 * 1024
FREE_FORM_DEPTH = 16
_FREE_FORM_NODES = 10_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class StrictModel(BaseModel):
    """Unknown keys are errors; a loaded config is never mutated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_rule(field: str, message: str, *, sibling: bool = False) -> PydanticCustomError:
    """A cross-field error located at `field` of the model that raises it; the loader
    appends the field to the model's path (`targets[1].timeout: ...`). From a field
    validator, `sibling=True`: `field` replaces the validated field in the path. An
    empty `field` locates the error at the model (or field) itself."""
    return PydanticCustomError("field_rule", message, {"field": field, "sibling": sibling})


def check_name(value: str) -> str:
    """A name that becomes a label value and a URL parameter."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            "must start with a letter or digit and use only letters, digits, "
            "'_', '.', ':' or '-' (at most 128 characters)"
        )
    return value


MAX_PATTERN_CHARS = 4096
"""Longest user regular expression accepted (RE2 also caps each compiled program at
its default 8 MiB of memory)."""


@functools.cache
def _re2() -> tuple[Any, Any]:
    """The re2 module and its options, imported at the first pattern: RE2 and the C++
    runtime it loads cost about 2.5 MB of RSS, which a config without a pattern (and
    `ttft-exporter bench`) need not pay (issue #14)."""
    import re2

    options = re2.Options()
    # A bad pattern is reported once, as a config problem; RE2 would also log it to stderr.
    options.log_errors = False
    return re2, options


class RegexMatch(Protocol):
    """The part of a match object callers may use."""

    def group(self, *groups: int | str) -> Any: ...

    def span(self, group: int | str = 0) -> tuple[int, int]: ...


class Regex:
    r"""A regular expression from the configuration, compiled with RE2.

    Matching time is linear in the text whatever the pattern (RE2 never backtracks),
    so no pattern can stall the event loop the way `^(\w+\s?)+$` stalls Python's `re`.
    The price is RE2 syntax (https://github.com/google/re2/wiki/Syntax): no
    backreferences (`\1`), no lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), `\z` instead
    of `\Z`, and `\w`, `\d`, `\s`, `\b` match ASCII only (`\pL`, `\p{Greek}`
    for Unicode). A pattern RE2 cannot compile is rejected at load.

    A pydantic field type: validated from a string, dumped as its pattern.
    """

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"regular expression longer than {MAX_PATTERN_CHARS} characters")
        re2, options = _re2()
        try:
            self._compiled = re2.compile(pattern, options)
        except re2.error as exc:
            raise ValueError(
                f"invalid regular expression: {_re2_message(exc)} "
                "(RE2 syntax: no backreferences or lookaround)"
            ) from None
        self.pattern = pattern

    def search(self, text: str) -> RegexMatch | None:
        """The first match anywhere in `text` (like `re.Pattern.search`)."""
        found: RegexMatch | None = self._compiled.search(text)
        return found

    def fullmatch(self, text: str) -> RegexMatch | None:
        """A match of the whole of `text` (like `re.Pattern.fullmatch`)."""
        found: RegexMatch | None = self._compiled.fullmatch(text)
        return found

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Regex) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.pattern
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, _schema: core_schema.CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "regex", "maxLength": MAX_PATTERN_CHARS}

    @classmethod
    def _validate(cls, value: Any) -> Regex:
        if isinstance(value, Regex):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a string (a regular expression)")
        return cls(value)


def _re2_message(exc: Exception) -> str:
    # RE2's error carries its message as bytes: b'invalid perl operator: (?='.
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


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


def _secret_cache(info: ValidationInfo | None) -> dict[tuple[str, str], SecretStr] | None:
    context = info.context if info is not None else None
    if not isinstance(context, dict):
        return None
    cache: dict[tuple[str, str], SecretStr] = context.setdefault("_secrets", {})
    return cache


def resolving_secrets(info: ValidationInfo | None) -> bool:
    """False under the validation context `{"resolve_secrets": False}` (e.g.
    `ttft-exporter rules`, which needs no secret): nothing is read then."""
    context = info.context if info is not None else None
    return not (isinstance(context, dict) and context.get("resolve_secrets") is False)


def read_env_secret(
    field: str, name: str, info: ValidationInfo | None, *, sibling: bool = False
) -> SecretStr | None:
    """The secret in environment variable `name`, read now so that a missing one is a
    config error located at `field` (see field_rule for `sibling`), not a failing
    probe later. Read once per validation: a field validator reports the problem, the
    model keeps the value."""
    if not resolving_secrets(info):
        return None
    cache = _secret_cache(info)
    if cache is not None and ("env", name) in cache:
        return cache["env", name]
    value = os.environ.get(name, "").strip()
    if not value:
        raise field_rule(field, f"environment variable {name} is not set or empty", sibling=sibling)
    secret = SecretStr(value)
    if cache is not None:
        cache["env", name] = secret
    return secret


def read_file_secret(
    field: str, path: Path, info: ValidationInfo | None, *, sibling: bool = False
) -> SecretStr | None:
    """The secret in file `path` (surrounding whitespace stripped), like
    read_env_secret."""
    if not resolving_secrets(info):
        return None
    cache = _secret_cache(info)
    if cache is not None and ("file", str(path)) in cache:
        return cache["file", str(path)]
    try:
        value = read_bounded(Path(path), SECRET_FILE_LIMIT).decode("utf-8").strip()
    except OSError as exc:
        raise field_rule(field, f"cannot read: {exc.strerror}", sibling=sibling) from None
    except UnicodeDecodeError:
        raise field_rule(field, "not UTF-8 text", sibling=sibling) from None
    except ValueError as exc:
        raise field_rule(field, str(exc), sibling=sibling) from None
    if not value:
        raise field_rule(field, "file is empty", sibling=sibling)
    secret = SecretStr(value)
    if cache is not None:
        cache["file", str(path)] = secret
    return secret


def read_secret_pair(
    env_field: str,
    env_name: str | None,
    file_field: str,
    file_path: Path | None,
    info: ValidationInfo | None,
    *,
    sibling: bool = False,
) -> SecretStr | None:
    """The secret named by an `*_env` or `*_file` field (at most one may be set)."""
    if env_name and file_path:
        raise field_rule(env_field, f"set {env_field} or {file_field}, not both", sibling=sibling)
    if env_name:
        return read_env_secret(env_field, env_name, info, sibling=sibling)
    if file_path:
        return read_file_secret(file_field, file_path, info, sibling=sibling)
    return None


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    context = info.context
    base = context.get("base_dir") if isinstance(context, dict) else None
    if base is None or value.is_absolute():
        return value
    return Path(base) / value


ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]
"""A file named in the config: a relative path is relative to the config file's
directory (validation context `base_dir`), as in Prometheus and the web config, so a
config and the files beside it work from any working directory."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Raises OSError when it
    cannot be read and ValueError (with the message to show) when it is not a regular
    file or too big: `/dev/zero` or a FIFO would otherwise block or never end."""
    # O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {format_size(limit)} ({info.st_size} bytes)")
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew while we read
        raise ValueError(f"larger than {format_size(limit)}")
    return data


def format_size(size: int) -> str:
    """`4 MiB`, `64 KiB` or bytes."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def check_free_form(value: Any) -> Any:
    """A free-form JSON value from the config (e.g. `extra_body`): JSON data, at most
    FREE_FORM_DEPTH levels deep and FREE_FORM_BYTES long once serialized. Checked
    iteratively, so a deep or huge value costs no recursion and stops early."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if depth > FREE_FORM_DEPTH:
            raise ValueError(f"nested deeper than {FREE_FORM_DEPTH} levels")
        if nodes > _FREE_FORM_NODES:
            raise ValueError(f"more than {_FREE_FORM_NODES} values")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    try:
        size = len(json.dumps(value, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"must be JSON data: {exc}") from None
    if size > FREE_FORM_BYTES:
        raise ValueError(f"larger than {format_size(FREE_FORM_BYTES)} as JSON ({size} bytes)")
    return value
