"""Configuration models (pydantic v2), loading with every problem reported at once, and
the holder that swaps a validated config atomically on reload."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ttft_exporter.durations import Duration, format_duration
from ttft_exporter.errors import ConfigError, ConfigProblem
from ttft_exporter.flux.config import FluxInstanceConfig
from ttft_exporter.redact import PLACEHOLDER, Redactor
from ttft_exporter.slo import SLOsConfig
from ttft_exporter.validation import (
    LABEL_NAME,
    Regex,
    StrictModel,
    check_free_form,
    check_http_url,
    check_name,
    field_rule,
    read_bounded,
    read_secret,
)
from ttft_exporter.yamlsafe import YAMLLimitError, load_yaml

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BucketsConfig",
    "ChatMessage",
    "Config",
    "ConfigHolder",
    "HeaderValue",
    "OpenAIChatTarget",
    "OpenAICompletionsTarget",
    "TLSConfig",
    "TargetConfig",
    "TargetDefaults",
    "load_config",
    "parse_config",
    "redacted_headers",
]

DEFAULT_MAX_RESPONSE_BYTES = 4 << 20
"""Most response body bytes one probe reads unless `max_response_bytes` says otherwise
(4 MiB): a 64-token answer is a few KiB of SSE, so this is far above any real answer,
and it bounds the memory and CPU a broken or hostile server can take from the event
loop that every target shares."""

# Label names a user may not set through `labels`: they are ours, or Prometheus'.
RESERVED_LABELS = frozenset(
    {
        "target",
        "model",
        "protocol",
        "reason",
        "outcome",
        "phase",
        "usage_source",
        "le",
        "quantile",
        "instance",
        "job",
        "flux",
        "type",
        "group",
    }
)
# RFC 9110 token: what a header name may be.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
MAX_HEADERS = 64
HEADER_VALUE_LIMIT = 8 * 1024


class HeaderValue(StrictModel):
    """A request header value given inline, by environment variable or by file.
    Secret unless `secret: false`: masked in /config and redacted from every text."""

    value: str | None = Field(None, repr=False, description="The value itself.")
    value_env: str | None = Field(None, description="Environment variable holding the value.")
    value_file: Path | None = Field(
        None, description="File holding the value (surrounding whitespace stripped)."
    )
    secret: bool = Field(
        True, description="false for values that may be shown (X-Team: ml); default true."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [n for n in ("value", "value_env", "value_file") if getattr(self, n) is not None]
        if len(given) != 1:
            raise field_rule("value", "set exactly one of value, value_env or value_file")
        return self


def _header_kind(value: Any) -> str:
    return "header-inline" if isinstance(value, str) else "header-source"


# A plain `Name: value` is a secret header value given inline. The discriminator picks
# one branch, so a bad mapping reports its own problem, not also "must be a string".
HeaderSpec = Annotated[
    Annotated[str, Tag("header-inline")] | Annotated[HeaderValue, Tag("header-source")],
    Discriminator(_header_kind),
]
_UNION_TAGS = ("header-inline", "header-source")


def redacted_headers(headers: Mapping[str, HeaderSpec] | None) -> dict[str, Any] | None:
    """Headers as shown in /config and debug output: secret values as `<secret>`."""
    if headers is None:
        return None
    out: dict[str, Any] = {}
    for name, spec in headers.items():
        if isinstance(spec, str):
            out[name] = PLACEHOLDER
            continue
        view = spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        if spec.value is not None:
            view["value"] = spec.value if not spec.secret else PLACEHOLDER
        view["secret"] = spec.secret
        out[name] = view
    return out


def _resolve_headers(
    headers: Mapping[str, HeaderSpec], info: ValidationInfo
) -> tuple[dict[str, str], list[str]]:
    """Every header's value (read from the environment or files now, so a missing one
    is a config error) and the secret ones among them."""
    if len(headers) > MAX_HEADERS:
        raise field_rule("headers", f"more than {MAX_HEADERS} headers")
    values: dict[str, str] = {}
    secrets: list[str] = []
    for name, spec in headers.items():
        where = f"headers.{name}"
        if not _HEADER_NAME.fullmatch(name):
            raise field_rule(where, "invalid header name")
        if isinstance(spec, str):
            value: str | None = spec
            secret = True
        else:
            secret = spec.secret
            read = read_secret(
                f"{where}.value_env", spec.value_env, f"{where}.value_file", spec.value_file, info
            )
            value = read.get_secret_value() if read is not None else spec.value
        if value is None:  # not resolved: the caller asked for no secrets
            continue
        if len(value) > HEADER_VALUE_LIMIT:
            raise field_rule(where, f"longer than {HEADER_VALUE_LIMIT} characters")
        if any(c in value for c in "\r\n\0"):
            raise field_rule(where, "must not contain CR, LF or NUL")
        values[name] = value
        if secret:
            secrets.append(value)
            # `Bearer <key>`: a server may echo the bare key without its scheme.
            scheme, _, credential = value.partition(" ")
            if credential.strip() and scheme.isalpha():
                secrets.append(credential.strip())
    return values, secrets


class TLSConfig(StrictModel):
    """TLS settings for https targets."""

    ca_file: Path | None = Field(
        None,
        description="PEM bundle to verify the server with, instead of the system store.",
    )
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Client key (PEM) for mutual TLS.")
    insecure_skip_verify: bool = Field(
        False, description="Do not verify the server certificate. For tests only."
    )
    server_name: str | None = Field(
        None,
        description="Name to verify the certificate against (SNI), if not the URL host.",
    )

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise field_rule("cert_file", "cert_file and key_file must be set together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise field_rule(name, f"file not found: {path}")
        return self


class ChatMessage(StrictModel):
    """One chat message of a probe prompt."""

    role: Literal["system", "user", "assistant", "developer"]
    content: str


# Fields a `defaults:` block may set for every target; values in a target win.
_DEFAULTABLE = (
    "interval",
    "timeout",
    "max_tokens",
    "headers",
    "labels",
    "reuse_connections",
    "cache_bust",
    "include_usage",
    "continuous_usage_stats",
    "tls",
    "api_key_env",
    "api_key_file",
    "max_response_bytes",
    "on_suspect",
)


class TargetDefaults(StrictModel):
    """Values applied to every target that does not set them."""

    interval: Duration | None = None
    timeout: Duration | None = None
    max_tokens: int | None = Field(None, ge=1)
    headers: dict[str, HeaderSpec] | None = Field(None, repr=False)
    labels: dict[str, str] | None = None
    reuse_connections: bool | None = None
    cache_bust: bool | None = None
    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None
    tls: TLSConfig | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    max_response_bytes: int | None = Field(None, ge=1024, le=1 << 30)
    on_suspect: Literal["record", "drop"] | None = None


class _TargetBase(StrictModel):
    name: str = Field(description="Unique name; the `target` label.")
    url: str = Field(description="Base URL of the API, e.g. http://vllm:8000/v1.")
    model: str = Field(
        min_length=1, description="Model name sent in the request; the `model` label."
    )
    interval: Duration = Field(15.0, description="Time between probes.")
    timeout: Duration = Field(10.0, description="Deadline of one probe; must be below interval.")
    max_tokens: int = Field(64, ge=1, le=1_000_000, description="max_tokens sent with the request.")
    headers: dict[str, HeaderSpec] = Field(
        default_factory=dict,
        repr=False,
        description=(
            "Extra request headers: `Name: value`, or `Name: {value|value_env|value_file, "
            "secret}`. Every value is secret unless marked `secret: false`."
        ),
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the API key (sent as Bearer token).",
    )
    api_key_file: Path | None = Field(None, description="File holding the API key.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Static labels added to every series of this target.",
    )
    reuse_connections: bool = Field(
        False,
        description=(
            "Keep connections alive between probes. Off: every probe pays DNS, "
            "connect and TLS, as blackbox does."
        ),
    )
    cache_bust: bool = Field(
        True,
        description="Put a random nonce at the start of the prompt to defeat prefix caching.",
    )
    include_usage: bool = Field(
        True, description="Ask for the usage chunk (stream_options.include_usage)."
    )
    continuous_usage_stats: bool = Field(
        False,
        description="Also ask for usage on every chunk (vLLM's continuous_usage_stats).",
    )
    expect: Regex | None = Field(
        None,
        description=(
            "Regular expression (RE2 syntax: linear time, no backreferences or lookaround) "
            "the first 64 KiB of the answer text must match, else failure content_mismatch."
        ),
    )
    max_response_bytes: int = Field(
        DEFAULT_MAX_RESPONSE_BYTES,
        ge=1024,
        le=1 << 30,
        description="Most response body bytes one probe reads, else failure protocol.",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra JSON fields merged into the request body (ignore_eos, ...).",
    )
    tls: TLSConfig = Field(default_factory=TLSConfig)
    on_suspect: Literal["record", "drop"] = Field(
        "record",
        description=(
            "What a suspect probe's timings do (the exporter was starved during it): "
            "record them (default) or drop them from the latency histograms; it is "
            "counted either way."
        ),
    )

    _api_key: SecretStr | None = PrivateAttr(None)
    _header_values: dict[str, str] = PrivateAttr(default_factory=dict)
    _redactor: Redactor = PrivateAttr(default_factory=Redactor)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, "api_key_env or api_key_file")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not LABEL_NAME.fullmatch(key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r}")
            if key in RESERVED_LABELS:
                raise ValueError(f"label name {key!r} is reserved")
        return value

    @field_validator("extra_body")
    @classmethod
    def _extra_body(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_free_form(value)  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _cross_field(self, info: ValidationInfo) -> Self:
        if self.timeout <= 0:
            raise field_rule("timeout", "must be above 0")
        if self.timeout >= self.interval:
            raise field_rule(
                "timeout", f"must be below interval ({format_duration(self.interval)})"
            )
        self._api_key = read_secret(
            "api_key_env", self.api_key_env, "api_key_file", self.api_key_file, info
        )
        for header in self.headers:
            if header.lower() == "authorization" and self._api_key is not None:
                raise field_rule(
                    "headers",
                    "Authorization is set by api_key_env/api_key_file; do not set both",
                )
        self._header_values, header_secrets = _resolve_headers(self.headers, info)
        api_key = [self._api_key.get_secret_value()] if self._api_key else []
        # Built here, in the loader's thread: the loop only uses it.
        self._redactor = Redactor([*api_key, *header_secrets])
        return self

    @property
    def api_key(self) -> SecretStr | None:
        """The resolved API key, if any. Never log or print it."""
        return self._api_key

    @property
    def redactor(self) -> Redactor:
        """Replaces this target's secrets (API key, secret header values) in free text."""
        return self._redactor

    def request_headers(self) -> dict[str, str]:
        """The configured headers with their resolved values. Never log them."""
        return dict(self._header_values)

    def secrets(self) -> list[str]:
        """Every secret value this target holds that free text is searched for."""
        return list(self._redactor.secrets)

    def redacted(self) -> dict[str, Any]:
        """The target as plain data with secret header values hidden (for debug output)."""
        data = self.model_dump(mode="json", exclude_defaults=False)
        data["headers"] = redacted_headers(self.headers)
        if self.expect is not None:
            data["expect"] = self.expect.pattern
        return data

    def fingerprint(self) -> str:
        """Changes whenever anything that affects probing changes (secrets included)."""
        data = self.model_dump(mode="json")
        data["expect"] = self.expect.pattern if self.expect else None
        digest = hashlib.sha256(repr(sorted(data.items())).encode())
        if self._api_key is not None:
            digest.update(self._api_key.get_secret_value().encode())
        # Values from value_env/value_file: a rotated one restarts the target's loop.
        for name, value in sorted(self._header_values.items()):
            digest.update(f"{name}\0{value}\0".encode())
        return digest.hexdigest()


class OpenAIChatTarget(_TargetBase):
    """A streaming OpenAI Chat Completions endpoint (`POST {url}/chat/completions`)."""

    protocol: Literal["openai-chat"]
    prompt: str | None = Field(None, description="User prompt; or give `messages`.")
    messages: list[ChatMessage] | None = Field(
        None, description="Full message list; or give `prompt`."
    )

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> Self:
        if (self.prompt is None) == (self.messages is None):
            raise field_rule("prompt", "set exactly one of prompt or messages")
        if self.messages is not None and not self.messages:
            raise field_rule("messages", "must not be empty")
        return self


class OpenAICompletionsTarget(_TargetBase):
    """A streaming legacy Completions endpoint (`POST {url}/completions`)."""

    protocol: Literal["openai-completions"]
    prompt: str = Field(min_length=1, description="Prompt text.")


TargetConfig = Annotated[
    OpenAIChatTarget | OpenAICompletionsTarget, Field(discriminator="protocol")
]
PROTOCOL_TAGS = ("openai-chat", "openai-completions")


class BucketsConfig(StrictModel):
    """Histogram bucket boundaries (seconds) overriding the defaults."""

    latency: list[float] | None = Field(None, description="TTFT, TTFOT, TTFB, first chunk.")
    duration: list[float] | None = Field(None, description="End-to-end duration.")
    inter_token: list[float] | None = Field(None, description="Inter-chunk gaps and TPOT.")

    @field_validator("latency", "duration", "inter_token")
    @classmethod
    def _sorted(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty")
        if any(v <= 0 for v in value):
            raise ValueError("boundaries must be above 0")
        if sorted(set(value)) != value:
            raise ValueError("boundaries must be strictly increasing")
        return value


class Config(StrictModel):
    """The whole configuration file."""

    defaults: TargetDefaults = Field(default_factory=TargetDefaults)
    concurrency: int = Field(
        16,
        ge=1,
        le=10_000,
        description="Most probes running at once, over all targets.",
    )
    buckets: BucketsConfig = Field(default_factory=BucketsConfig)
    targets: list[TargetConfig] = Field(default_factory=list)
    flux: list[FluxInstanceConfig] = Field(
        default_factory=list, description="Flux instances to watch."
    )
    slos: SLOsConfig = Field(default_factory=SLOsConfig, description="Service level objectives.")
    suspect_loop_lag: Duration = Field(
        0.01,
        description=(
            "Event-loop lag above which a probe overlapping it is suspect (cause loop_lag)."
        ),
    )

    @field_validator("suspect_loop_lag")
    @classmethod
    def _suspect_loop_lag(cls, value: float) -> float:
        # Below 1 ms a busy moment of the loop's own work would mark every probe.
        if not 0.001 <= value <= 10.0:
            raise ValueError("must be between 1ms and 10s")
        return value

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        defaults = data.get("defaults")
        targets = data.get("targets")
        if not isinstance(defaults, Mapping) or not isinstance(targets, list):
            return data
        known = {k: v for k, v in defaults.items() if k in _DEFAULTABLE and v is not None}
        merged: list[Any] = []
        for target in targets:
            if not isinstance(target, Mapping):
                merged.append(target)
                continue
            out = dict(target)
            for key, value in known.items():
                if key in ("api_key_env", "api_key_file") and (
                    "api_key_env" in target or "api_key_file" in target
                ):
                    continue
                if key not in out:
                    out[key] = value
                elif (
                    key in ("headers", "labels")
                    and isinstance(out[key], Mapping)
                    and isinstance(value, Mapping)
                ):
                    out[key] = {**value, **out[key]}
            merged.append(out)
        return {**data, "targets": merged}

    def bucket_overrides(self) -> dict[str, list[float]]:
        """Bucket boundaries the config replaces, by bucket set."""
        return {
            name: list(values)
            for name, values in self.buckets.model_dump().items()
            if values is not None
        }

    def thresholds(self) -> dict[str, list[float]]:
        """Latency thresholds named anywhere in the config, by bucket set."""
        return self.slos.thresholds()

    def target(self, name: str) -> TargetConfig | None:
        """The configured target of that name, if any."""
        for target in self.targets:
            if target.name == name:
                return target
        return None


def _format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in PROTOCOL_TAGS or part in _UNION_TAGS:
            # pydantic puts the discriminator value into the path; users never wrote it.
            continue
        elif part.startswith("function-") or part.endswith("]"):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _problems(exc: ValidationError) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for err in exc.errors(include_url=False):
        path = _format_loc(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == "field_rule":
            field = str(ctx.get("field", ""))
            path = f"{path}.{field}" if path and not field.startswith("targets[") else field or path
            message = err["msg"]
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "union_tag_invalid":
            message = f"unknown protocol {ctx.get('tag')!r}; known: {', '.join(PROTOCOL_TAGS)}"
            path = f"{path}.protocol" if path else "protocol"
        elif err["type"] == "union_tag_not_found":
            message = f"protocol is required; known: {', '.join(PROTOCOL_TAGS)}"
            path = f"{path}.protocol" if path else "protocol"
        else:
            message = err["msg"].removeprefix("Value error, ")
            message = message.replace("Input should be", "must be", 1)
        problems.append(ConfigProblem(path, message))
    return problems


def parse_config(data: Any, source: str = "<config>", *, resolve_secrets: bool = True) -> Config:
    """Validate already-parsed YAML data; raises ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, [ConfigProblem("", "the top level must be a mapping")])
    # Checked on the raw data so that a duplicate is reported with every other problem.
    problems = _duplicate_names(data.get("targets"), "targets")
    problems += _duplicate_names(data.get("flux"), "flux")
    try:
        config = Config.model_validate(data, context={"resolve_secrets": resolve_secrets})
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc) + problems) from None
    if problems:
        raise ConfigError(source, problems)
    return config


def _duplicate_names(targets: Any, section: str) -> list[ConfigProblem]:
    if not isinstance(targets, list):
        return []
    seen: set[str] = set()
    problems = []
    for index, target in enumerate(targets):
        name = target.get("name") if isinstance(target, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            what = "target" if section == "targets" else "flux instance"
            problems.append(
                ConfigProblem(f"{section}[{index}].name", f"duplicate {what} name {name!r}")
            )
        seen.add(name)
    return problems


# A config is a few KiB; a file this big is a mistake, and parsing it would take seconds.
CONFIG_FILE_LIMIT = 4 * 1024 * 1024


def load_config(path: str | Path, *, resolve_secrets: bool = True) -> tuple[Config, str]:
    """Read, parse and validate a config file; returns it with its SHA-256. Without
    `resolve_secrets`, API keys and tokens are not read (for commands that need none).
    Blocking and CPU-bound: on a running loop, call it in a worker thread."""
    path = Path(path)
    try:
        raw = read_bounded(path, CONFIG_FILE_LIMIT)
    except OSError as exc:
        raise ConfigError(
            str(path), [ConfigProblem("", f"cannot read file: {exc.strerror}")]
        ) from None
    except ValueError as exc:
        raise ConfigError(str(path), [ConfigProblem("", f"cannot read file: {exc}")]) from None
    try:
        data = load_yaml(raw)
    except YAMLLimitError as exc:
        raise ConfigError(str(path), [ConfigProblem(exc.path, exc.message)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            str(path), [ConfigProblem("", f"invalid YAML: {where}{problem}")]
        ) from None
    except RecursionError:
        # Only the pure-Python parser recurses; libyaml caps nesting itself.
        raise ConfigError(
            str(path), [ConfigProblem("", "invalid YAML: nested too deeply")]
        ) from None
    config = parse_config(data, str(path), resolve_secrets=resolve_secrets)
    return config, hashlib.sha256(raw).hexdigest()


class ConfigHolder:
    """The running config; replaced whole, never mutated, so readers need no lock."""

    def __init__(self, path: Path | None, config: Config, checksum: str = "") -> None:
        self.path = path
        self.config = config
        self.checksum = checksum

    def swap(self, config: Config, checksum: str) -> Config:
        """Install a new config and return the previous one."""
        old, self.config, self.checksum = self.config, config, checksum
        return old
