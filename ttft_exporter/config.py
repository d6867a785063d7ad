"""Configuration models (pydantic v2), loading with every problem reported at once, and
the holder that swaps a validated config atomically on reload."""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
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
    ConfigPath,
    Regex,
    StrictModel,
    check_free_form,
    check_http_url,
    check_name,
    field_rule,
    read_bounded,
    read_secret_pair,
    resolving_secrets,
)
from ttft_exporter.yamlsafe import YAMLLimitError, load_yaml

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BucketsConfig",
    "ChatMessage",
    "Config",
    "ConfigHolder",
    "HeaderValue",
    "HistogramsConfig",
    "OpenAIChatTarget",
    "OpenAICompletionsTarget",
    "TLSConfig",
    "TargetConfig",
    "TargetDefaults",
    "load_config",
    "parse_config",
    "redacted_headers",
    "validation_problems",
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


def _check_label_name(name: str) -> str:
    if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise ValueError(
            "invalid label name: letters, digits and '_' only, not starting with a digit or '__'"
        )
    if name in RESERVED_LABELS:
        raise ValueError("reserved label name (set by the exporter or by Prometheus)")
    return name


# Each key is checked on its own, so every bad label is reported at once.
LabelName = Annotated[str, AfterValidator(_check_label_name)]


class HeaderValue(StrictModel):
    """A request header value given inline, by environment variable or by file.
    Secret unless `secret: false`: masked in /config and redacted from every text."""

    value: str | None = Field(None, repr=False, description="The value itself.")
    value_env: str | None = Field(None, description="Environment variable holding the value.")
    value_file: ConfigPath | None = Field(
        None, description="File holding the value (surrounding whitespace stripped)."
    )
    secret: bool = Field(
        True, description="false for values that may be shown (X-Team: ml); default true."
    )

    _resolved: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> Self:
        given = [n for n in ("value", "value_env", "value_file") if getattr(self, n) is not None]
        if len(given) != 1:
            raise field_rule("value", "set exactly one of value, value_env or value_file")
        if self.value is not None:
            self._resolved = self.value
        else:
            # Read now, so that a missing one is a config error (located at its field).
            read = read_secret_pair(
                "value_env", self.value_env, "value_file", self.value_file, info
            )
            self._resolved = None if read is None else read.get_secret_value()
        if self._resolved is not None:
            problem = _header_value_problem(self._resolved)
            if problem:
                raise field_rule("", problem)
        return self

    @property
    def resolved(self) -> str | None:
        """The value, read from its source (None when secrets were not resolved)."""
        return self._resolved


def _header_value_problem(value: str) -> str | None:
    if len(value) > HEADER_VALUE_LIMIT:
        return f"longer than {HEADER_VALUE_LIMIT} characters"
    if any(c in value for c in "\r\n\0"):
        return "must not contain CR, LF or NUL"
    return None


def _check_inline_header(value: str) -> str:
    problem = _header_value_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError("invalid header name")
    return name


def _header_kind(value: Any) -> str:
    return "header-inline" if isinstance(value, str) else "header-source"


# Every key and value is checked on its own, so every bad header is reported at once.
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
# A plain `Name: value` is a secret header value given inline. The discriminator picks
# one branch, so a bad mapping reports its own problem, not also "must be a string".
HeaderSpec = Annotated[
    Annotated[str, AfterValidator(_check_inline_header), Tag("header-inline")]
    | Annotated[HeaderValue, Tag("header-source")],
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


def _header_values(headers: Mapping[str, HeaderSpec]) -> tuple[dict[str, str], list[str]]:
    """Every header's value (each was read and checked by its own validator) and the
    secret ones among them."""
    values: dict[str, str] = {}
    secrets: list[str] = []
    for name, spec in headers.items():
        value = spec if isinstance(spec, str) else spec.resolved
        if value is None:  # not resolved: the caller asked for no secrets
            continue
        values[name] = value
        if isinstance(spec, str) or spec.secret:
            secrets.append(value)
            # `Bearer <key>`: a server may echo the bare key without its scheme.
            scheme, _, credential = value.partition(" ")
            if credential.strip() and scheme.isalpha():
                secrets.append(credential.strip())
    return values, secrets


class TLSConfig(StrictModel):
    """TLS settings for https targets."""

    ca_file: ConfigPath | None = Field(
        None,
        description="PEM bundle to verify the server with, instead of the system store.",
    )
    cert_file: ConfigPath | None = Field(
        None, description="Client certificate (PEM) for mutual TLS."
    )
    key_file: ConfigPath | None = Field(None, description="Client key (PEM) for mutual TLS.")
    insecure_skip_verify: bool = Field(
        False,
        validate_default=True,
        description="Do not verify the server certificate. For tests only.",
    )
    server_name: str | None = Field(
        None,
        description="Name to verify the certificate against (SNI), if not the URL host.",
    )

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: Path | None) -> Path | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @field_validator("insecure_skip_verify")
    @classmethod
    def _pair(cls, value: bool, info: ValidationInfo) -> bool:
        # A field declared after both files, validated even when absent: the pair rule
        # is checked beside the files' own problems, not after them.
        data = info.data
        both_valid = "cert_file" in data and "key_file" in data
        if both_valid and (data["cert_file"] is None) != (data["key_file"] is None):
            raise field_rule(
                "cert_file", "cert_file and key_file must be set together", sibling=True
            )
        return value

    @model_validator(mode="after")
    def _loads(self, info: ValidationInfo) -> Self:
        # Files that exist but do not load (not PEM, a key that does not match) are a
        # config problem too, reported with the others rather than in a later pass.
        if (self.ca_file is None and self.cert_file is None) or not resolving_secrets(info):
            return self
        from ttft_exporter.probes.session import build_ssl_context  # a cycle at import time

        try:
            build_ssl_context(self)
        except (ssl.SSLError, OSError) as exc:
            raise field_rule("", f"cannot load TLS files: {exc}") from None
        return self


class ChatMessage(StrictModel):
    """One chat message of a probe prompt."""

    role: Literal["system", "user", "assistant", "developer"]
    content: str


class HistogramsConfig(StrictModel):
    """The optional histograms of a target. Each costs the bucket count + 3 series per
    target, so only the histograms the alert rules read are on by default (TTFT,
    duration and TPOT are always on)."""

    time_to_first_byte: bool = Field(
        False, description="ttft_probe_time_to_first_byte_seconds (response headers)."
    )
    time_to_first_chunk: bool = Field(
        False, description="ttft_probe_time_to_first_chunk_seconds (first data event)."
    )
    time_to_first_output_token: bool | Literal["auto"] = Field(
        "auto",
        description=(
            "ttft_probe_time_to_first_output_token_seconds; auto: off until a probe of "
            "the target streams reasoning text, then on for as long as the series live."
        ),
    )
    inter_chunk_latency: bool = Field(
        False, description="ttft_probe_inter_chunk_latency_seconds (every gap)."
    )


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
    "histograms",
)
# Defaults merged key by key into a target's own mapping (the target's keys win).
_MERGED = ("headers", "labels", "histograms")


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
    api_key_file: ConfigPath | None = None
    max_response_bytes: int | None = Field(None, ge=1024, le=1 << 30)
    on_suspect: Literal["record", "drop"] | None = None
    histograms: HistogramsConfig | None = None


class _TargetBase(StrictModel):
    name: str = Field(description="Unique name; the `target` label.")
    url: str = Field(description="Base URL of the API, e.g. http://vllm:8000/v1.")
    model: str = Field(
        min_length=1, description="Model name sent in the request; the `model` label."
    )
    interval: Duration = Field(15.0, description="Time between probes.")
    timeout: Duration = Field(
        10.0, validate_default=True, description="Deadline of one probe; must be below interval."
    )
    max_tokens: int = Field(64, ge=1, le=1_000_000, description="max_tokens sent with the request.")
    headers: dict[HeaderName, HeaderSpec] = Field(
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
    api_key_file: ConfigPath | None = Field(
        None, validate_default=True, description="File holding the API key."
    )
    labels: dict[LabelName, str] = Field(
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
    histograms: HistogramsConfig = Field(
        default_factory=HistogramsConfig,
        description="Optional histograms of this target (series count per target).",
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

    # Every rule spanning fields is a field validator reading the fields declared
    # before it (info.data), not a model validator: pydantic skips model validators
    # once any field failed, which reported problems in several passes (issue #9).
    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            raise ValueError("must be above 0")
        interval = info.data.get("interval")
        if interval is not None and value >= interval:
            raise ValueError(f"must be below interval ({format_duration(interval)})")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, HeaderSpec]) -> dict[str, HeaderSpec]:
        if len(value) > MAX_HEADERS:
            raise ValueError(f"more than {MAX_HEADERS} headers")
        return value

    @field_validator("api_key_file")
    @classmethod
    def _api_key_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Validated even when absent: the one place for every rule of the key pair.
        env = info.data.get("api_key_env")
        if (env or value) and any(
            h.lower() == "authorization" for h in info.data.get("headers", {})
        ):
            raise field_rule(
                "headers",
                "Authorization is set by api_key_env/api_key_file; do not set both",
                sibling=True,
            )
        read_secret_pair("api_key_env", env, "api_key_file", value, info, sibling=True)
        return value

    @field_validator("extra_body")
    @classmethod
    def _extra_body(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_free_form(value)  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> Self:
        # Every rule was checked field by field; this only assembles the results (the
        # secrets were read once, by the field validators, and are cached per load).
        self._api_key = read_secret_pair(
            "api_key_env", self.api_key_env, "api_key_file", self.api_key_file, info
        )
        self._header_values, header_secrets = _header_values(self.headers)
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
        None, validate_default=True, description="Full message list; or give `prompt`."
    )

    @field_validator("messages")
    @classmethod
    def _prompt_or_messages(
        cls, value: list[ChatMessage] | None, info: ValidationInfo
    ) -> list[ChatMessage] | None:
        # A prompt that failed its own validation is not in info.data: not judged here.
        if "prompt" in info.data and (info.data["prompt"] is None) == (value is None):
            raise field_rule("prompt", "set exactly one of prompt or messages", sibling=True)
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value


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
                    key in _MERGED and isinstance(out[key], Mapping) and isinstance(value, Mapping)
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

    def target_thresholds(self, target: TargetConfig) -> dict[str, list[float]]:
        """The latency thresholds that apply to one target, by bucket set (the first
        `slos.targets` entry selecting it wins, as in the rules)."""
        labels = {"model": target.model, "protocol": target.protocol, **target.labels}
        return self.slos.target_thresholds(target.name, labels)

    def target(self, name: str) -> TargetConfig | None:
        """The configured target of that name, if any."""
        for target in self.targets:
            if target.name == name:
                return target
        return None


Loc = tuple[int | str, ...]


def _user_loc(loc: Iterable[int | str]) -> Loc:
    """pydantic's error location without the parts users never wrote: union tags
    (the protocol), function validators and `[key]` markers."""
    out: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (
            part in PROTOCOL_TAGS
            or part in _UNION_TAGS
            or part.startswith("function-")
            or part.endswith("]")
        ):
            continue
        out.append(part)
    return tuple(out)


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _file_order(data: Any, loc: Loc) -> tuple[int, ...]:
    """Where `loc` is in the file: the position of each key in its mapping (YAML
    mappings load in file order) and each index in its list. A key the file does not
    have (a rule about a default value) sorts after its mapping's keys."""
    key: list[int] = []
    node = data
    for part in loc:
        if isinstance(node, Mapping):
            keys = list(node)
            if part not in node:
                key.append(len(keys))
                break
            key.append(keys.index(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key.append(part)
            node = node[part]
        else:
            break
    return tuple(key)


def _not_a_string(value: Any) -> str:
    # YAML reads `name: 500` as an int and `name: yes` as a bool: say how to get a string.
    if isinstance(value, bool):
        return "must be a string; quote it (YAML reads yes, no, on, off, true, false as booleans)"
    if isinstance(value, int | float):
        return f'must be a string; quote it: "{value}"'
    return "must be a string"


def _problem(err: Any) -> tuple[Loc, str]:
    loc = _user_loc(err["loc"])
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "field_rule":
        field = str(ctx.get("field", ""))
        if ctx.get("sibling") and loc:
            loc = loc[:-1]
        if field:
            loc = (*loc, field)
        return loc, err["msg"]
    if kind == "extra_forbidden":
        return loc, "unknown field"
    if kind == "union_tag_invalid":
        return (
            (*loc, "protocol"),
            f"unknown protocol {ctx.get('tag')!r}; known: {', '.join(PROTOCOL_TAGS)}",
        )
    if kind == "union_tag_not_found":
        return (*loc, "protocol"), f"protocol is required; known: {', '.join(PROTOCOL_TAGS)}"
    if kind == "string_type":
        return loc, _not_a_string(err.get("input"))
    message = err["msg"].removeprefix("Value error, ")
    return loc, message.replace("Input should be", "must be", 1)


def validation_problems(exc: ValidationError, data: Any) -> list[ConfigProblem]:
    """The problems of a ValidationError of `data`, located and in file order."""
    return _sorted_problems(data, [_problem(err) for err in exc.errors(include_url=False)])


def _sorted_problems(data: Any, located: Iterable[tuple[Loc, str]]) -> list[ConfigProblem]:
    """One list in file order, one style: `path: message`. The sort is stable, so
    problems at the same place keep the order they were found in."""
    ordered = sorted(located, key=lambda item: _file_order(data, item[0]))
    return [ConfigProblem(_format_loc(loc), message) for loc, message in ordered]


def parse_config(
    data: Any,
    source: str = "<config>",
    *,
    resolve_secrets: bool = True,
    base_dir: Path | None = None,
) -> Config:
    """Validate already-parsed YAML data; raises ConfigError listing every problem, in
    file order. Every field is checked, and every rule spanning fields and every
    secret read runs beside them (as field validators), so one pass finds them all."""
    if data is None:
        # An empty file (or only comments) is a mistake: a path typo'd into an empty
        # new file, a volume mounted empty. `{}` says "no targets" on purpose.
        raise ConfigError(source, [ConfigProblem("", "the file is empty")])
    if not isinstance(data, Mapping):
        raise ConfigError(source, [ConfigProblem("", "the top level must be a mapping")])
    # Checked on the raw data so that a duplicate is reported with every other problem.
    located = _duplicate_names(data.get("targets"), "targets")
    located += _duplicate_names(data.get("flux"), "flux")
    try:
        context = {"resolve_secrets": resolve_secrets, "base_dir": base_dir}
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        located = [_problem(err) for err in exc.errors(include_url=False)] + located
        raise ConfigError(source, _sorted_problems(data, located)) from None
    if located:
        raise ConfigError(source, _sorted_problems(data, located))
    return config


def _duplicate_names(targets: Any, section: str) -> list[tuple[Loc, str]]:
    if not isinstance(targets, list):
        return []
    seen: set[str] = set()
    problems: list[tuple[Loc, str]] = []
    for index, target in enumerate(targets):
        name = target.get("name") if isinstance(target, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            what = "target" if section == "targets" else "flux instance"
            problems.append(((section, index, "name"), f"duplicate {what} name {name!r}"))
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
    config = parse_config(data, str(path), resolve_secrets=resolve_secrets, base_dir=path.parent)
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
