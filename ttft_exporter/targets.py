"""The target fields every protocol shares, and the base model each protocol's config
model extends (its own module under `probes/` adds the protocol's fields). A leaf: it
imports nothing of `config.py` or `probes/`, so both can import it."""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

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
from pydantic_core import InitErrorDetails, PydanticCustomError
from yarl import URL

from ttft_exporter.budget import BudgetConfig, CostConfig, check_budget_needs_cost
from ttft_exporter.durations import Duration, format_duration
from ttft_exporter.redact import PLACEHOLDER, Redactor
from ttft_exporter.scenarios import (
    COLD_SCENARIO,
    DEFAULT_SCENARIO,
    MAX_SCENARIOS,
    ChatMessage,
    ColdConfig,
    ScenarioConfig,
)
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

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HEADER_UNION_TAGS",
    "RESERVED_LABELS",
    "ChatMessage",
    "HeaderMap",
    "HeaderName",
    "HeaderSpec",
    "HeaderValue",
    "HistogramsConfig",
    "TLSConfig",
    "TargetBase",
    "environment_proxy",
    "forbidden_in_header",
    "header_values",
    "prompt_or_messages",
    "proxy_secrets",
    "redacted_headers",
    "redacted_proxy_url",
    "target_labels",
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
        "scenario",
    }
)
# RFC 9110 token: what a header name may be.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
MAX_HEADERS = 64
HEADER_VALUE_LIMIT = 8 * 1024
# What aiohttp refuses in a header value at send time (RFC 9110 §5.5: control characters
# but HTAB, and DEL). Refused at load instead: at send time it was a ValueError on every
# probe, reported as `internal` with a traceback.
_FORBIDDEN_HEADER_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# A CA bundle is ~220 KiB (Mozilla's); a certificate chain or key a few KiB.
TLS_FILE_LIMIT = 4 << 20
MAX_REDIRECTS_LIMIT = 20


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
    if forbidden_in_header(value):
        return "must not contain CR, LF, NUL or another control character"
    return None


def forbidden_in_header(value: str) -> bool:
    """Whether a header value holds a character no HTTP client may send (the value is
    never quoted in a message: it is usually a secret)."""
    return _FORBIDDEN_HEADER_CHARS.search(value) is not None


def _check_inline_header(value: str) -> str:
    problem = _header_value_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_proxy_url(value: str) -> str:
    # Messages never repeat the value: it may carry the proxy's password.
    try:
        url = URL(value)
    except (ValueError, TypeError):
        raise ValueError("invalid URL") from None
    if url.scheme == "https":
        raise ValueError(
            "https:// proxies are not supported: use an http:// proxy (an https target "
            "is tunnelled through it with CONNECT, end to end encrypted)"
        )
    if url.scheme != "http" or not url.host:
        raise ValueError("must be an absolute http:// URL: http://[user:password@]host:port")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise ValueError("must be http://[user:password@]host:port, with no path or query")
    return value


def proxy_secrets(proxy: str | None) -> list[str]:
    """The credentials of a proxy URL in every form they travel or show in: the
    password, `user:password` (raw and percent-decoded) and the Basic token."""
    if not proxy:
        return []
    url = URL(proxy)
    if url.password is None:
        return [url.user] if url.user else []
    pair = f"{url.user or ''}:{url.password}"
    token = base64.b64encode(pair.encode()).decode()
    raw = f"{url.raw_user or ''}:{url.raw_password or ''}"
    return [url.password, url.raw_password or "", pair, raw, token]


def redacted_proxy_url(proxy: str | None) -> str | None:
    """A proxy URL as shown in /config and debug output: credentials as `<secret>`."""
    if proxy is None:
        return None
    url = URL(proxy)
    if url.user is None and url.password is None:
        return proxy
    port = f":{url.explicit_port}" if url.explicit_port else ""
    return f"{url.scheme}://{PLACEHOLDER}@{url.raw_host}{port}"


def environment_proxy(target_url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY name for `target_url`, unless NO_PROXY
    exempts its host (curl's and requests' rules, via urllib). Environment only: unlike
    aiohttp's `trust_env`, no ~/.netrc credentials are added to the probe's request."""
    url = URL(target_url)
    # Environment-only on every platform (proxy_bypass() may ask macOS' system settings);
    # present at runtime, missing from typeshed.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if url.host is None or bypass(url.host):
        return None
    proxy = urllib.request.getproxies_environment().get(url.scheme)
    return proxy or None


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
HEADER_UNION_TAGS = ("header-inline", "header-source")


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


def header_values(headers: Mapping[str, HeaderSpec]) -> tuple[dict[str, str], list[str]]:
    """Every header's value (read at load) and the secret ones among them."""
    return _header_values(headers)


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


def _at_most_max_headers(value: dict[str, HeaderSpec]) -> dict[str, HeaderSpec]:
    if len(value) > MAX_HEADERS:
        raise ValueError(f"more than {MAX_HEADERS} headers")
    return value


HeaderMap = Annotated[dict[HeaderName, HeaderSpec], AfterValidator(_at_most_max_headers)]
"""Headers a user configures (targets, the OTLP exporter): at most MAX_HEADERS of them."""


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

    _digest: str = PrivateAttr("")

    @model_validator(mode="after")
    def _loads(self, info: ValidationInfo) -> Self:
        # Files that exist but do not load (not PEM, a key that does not match) are a
        # config problem too, reported with the others rather than in a later pass.
        if (self.ca_file is None and self.cert_file is None) or not resolving_secrets(info):
            return self
        # The files' contents, read at every load: a rotated Kubernetes Secret keeps
        # its paths, so only the contents tell a reload that the target changed.
        digest = hashlib.sha256()
        for path in (self.ca_file, self.cert_file, self.key_file):
            try:
                digest.update(b"-" if path is None else read_bounded(path, TLS_FILE_LIMIT))
            except (OSError, ValueError) as exc:
                raise field_rule("", f"cannot read TLS file {path}: {exc}") from None
            digest.update(b"\0")
        self._digest = digest.hexdigest()
        from ttft_exporter.probes.session import build_ssl_context  # a cycle at import time

        try:
            build_ssl_context(self)
        except (ssl.SSLError, OSError) as exc:
            raise field_rule("", f"cannot load TLS files: {exc}") from None
        return self

    @property
    def content_digest(self) -> str:
        """SHA-256 over the CA, certificate and key files as read at load ("" when
        none is set or files were not read): changes when a file is rotated."""
        return self._digest


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


def prompt_or_messages(
    value: list[ChatMessage] | None, info: ValidationInfo
) -> list[ChatMessage] | None:
    """The `messages` validator of a chat protocol that takes `prompt` or `messages`
    (declared after `prompt`): exactly one of them, and a message list is not empty.
    Use as `_prompt_or_messages = field_validator("messages")(prompt_or_messages)`."""
    # A prompt that failed its own validation is not in info.data: not judged here.
    if "prompt" in info.data and (info.data["prompt"] is None) == (value is None):
        raise field_rule("prompt", "set exactly one of prompt or messages", sibling=True)
    if value is not None and not value:
        raise ValueError("must not be empty")
    return value


class TargetBase(StrictModel):
    """What every target has, whatever its protocol. A protocol's model extends it
    with `protocol: Literal["<name>"]` and its own fields, and names its auth header
    in `auth_header` and `auth_scheme` (the API key is sent as
    `<auth_header>: <auth_scheme><key>`)."""

    auth_header: ClassVar[str] = "Authorization"
    auth_scheme: ClassVar[str] = "Bearer "

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
    headers: HeaderMap = Field(
        default_factory=dict,
        repr=False,
        description=(
            "Extra request headers: `Name: value`, or `Name: {value|value_env|value_file, "
            "secret}`. Every value is secret unless marked `secret: false`."
        ),
    )
    api_key_env: str | None = Field(
        None,
        description=(
            "Environment variable holding the API key (sent in the protocol's auth "
            "header: a Bearer token for the OpenAI protocols)."
        ),
    )
    api_key_file: ConfigPath | None = Field(
        None, validate_default=True, description="File holding the API key."
    )
    labels: dict[LabelName, str] = Field(
        default_factory=dict,
        description="Static labels added to every series of this target.",
    )
    otel_provider: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_.]{0,63}$",
        description=(
            "OpenTelemetry `gen_ai.provider.name` of this target (e.g. `vllm` for a "
            "self-hosted vLLM behind openai-chat); default: the protocol's (README, "
            "OpenTelemetry)."
        ),
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
    proxy_url: Annotated[str, AfterValidator(_check_proxy_url)] | None = Field(
        None,
        repr=False,
        description=(
            "HTTP proxy for this target's probes: http://[user:password@]host:port; "
            "https targets are tunnelled with CONNECT. Credentials are secret."
        ),
    )
    proxy_from_environment: bool = Field(
        False,
        validate_default=True,
        description=(
            "Use the proxy HTTP_PROXY/HTTPS_PROXY name for the target's URL, unless "
            "NO_PROXY exempts its host. Not with proxy_url."
        ),
    )
    follow_redirects: bool = Field(
        False,
        description=(
            "Follow 3xx redirects (off: a redirect is failure http_status, the probe "
            "measures the endpoint it names). Timings cover the whole chain."
        ),
    )
    max_redirects: int = Field(
        5,
        ge=1,
        le=MAX_REDIRECTS_LIMIT,
        description="Most redirects one probe follows, with follow_redirects.",
    )
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
    scenarios: list[ScenarioConfig] = Field(
        default_factory=list,
        max_length=MAX_SCENARIOS,
        description=(
            "Named scenarios, each probed as its own series (`scenario` label) with "
            "its own prompt, max_tokens, interval, timeout or cache_bust; without "
            'any, the target is probed as `scenario="default"`.'
        ),
    )
    cold: ColdConfig | None = Field(
        None,
        description=(
            "Cold probe: every `every`, hold the target's other probes off until it "
            'was idle for `idle`, then probe it once as `scenario="cold"`.'
        ),
    )
    cost: CostConfig | None = Field(
        None,
        description=(
            "Prices per 1M input and output tokens: ttft_probe_cost_total counts what "
            "the probes cost."
        ),
    )
    budget: BudgetConfig | None = Field(
        None,
        description=("Daily token (or cost) budget; once spent, probing pauses until 00:00 UTC."),
    )

    # Declared last, so a protocol's `Literal` override stays after the shared fields;
    # the discriminator of the config's union of protocol models.
    protocol: str = Field(description="The wire protocol; picks the protocol's model.")

    _api_key: SecretStr | None = PrivateAttr(None)
    _header_values: dict[str, str] = PrivateAttr(default_factory=dict)
    _redactor: Redactor = PrivateAttr(default_factory=Redactor)
    # The scenario a probe of this target measures: a copy made by `_plan` for each
    # configured scenario (and the cold probe) carries its name; the target itself is
    # the default scenario.
    _scenario: str = PrivateAttr(DEFAULT_SCENARIO)
    _plans: tuple[TargetBase, ...] = PrivateAttr(())
    _cold_plan: TargetBase | None = PrivateAttr(None)
    _probe_fingerprint: str = PrivateAttr("")
    # What debug output shows instead of a generated prompt (up to 800 KB).
    _prompt_note: str | None = PrivateAttr(None)

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

    @field_validator("api_key_file")
    @classmethod
    def _api_key_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Validated even when absent: the one place for every rule of the key pair.
        env = info.data.get("api_key_env")
        auth = cls.auth_header
        if (env or value) and any(h.lower() == auth.lower() for h in info.data.get("headers", {})):
            raise field_rule(
                "headers",
                f"{auth} is set by api_key_env/api_key_file; do not set both",
                sibling=True,
            )
        key = read_secret_pair("api_key_env", env, "api_key_file", value, info, sibling=True)
        if key is not None and forbidden_in_header(key.get_secret_value()):
            raise field_rule(
                "api_key_env" if env else "api_key_file",
                "the key contains CR, LF, NUL or another control character",
                sibling=True,
            )
        return value

    @field_validator("scenarios")
    @classmethod
    def _scenarios(cls, value: list[ScenarioConfig], info: ValidationInfo) -> list[ScenarioConfig]:
        # The rules that need the target: unique names, messages only where the
        # protocol has them, each scenario's deadline below its cadence. Every problem
        # is reported, each at its own scenario field.
        problems: list[InitErrorDetails] = []

        def problem(index: int, field: str, message: str) -> None:
            error = PydanticCustomError("field_rule", message, {"field": "", "sibling": False})
            problems.append(InitErrorDetails(type=error, loc=(index, field), input=None))

        interval = info.data.get("interval")
        timeout = info.data.get("timeout")
        seen: set[str] = set()
        for index, scenario in enumerate(value):
            if scenario.name in seen:
                problem(index, "name", f"duplicate scenario name {scenario.name!r}")
            seen.add(scenario.name)
            if scenario.messages is not None and "messages" not in cls.model_fields:
                problem(index, "messages", "this protocol takes a prompt, not messages")
            own_interval = scenario.interval if scenario.interval is not None else interval
            own_timeout = scenario.timeout if scenario.timeout is not None else timeout
            if own_interval is None or own_timeout is None or own_timeout < own_interval:
                continue
            where = "timeout" if scenario.timeout is not None else "interval"
            problem(
                index,
                where,
                f"the scenario's timeout ({format_duration(own_timeout)}) must be below "
                f"its interval ({format_duration(own_interval)})",
            )
        if problems:
            raise ValidationError.from_exception_data("scenarios", problems)
        return value

    @field_validator("proxy_from_environment")
    @classmethod
    def _proxy_source(cls, value: bool, info: ValidationInfo) -> bool:
        # Validated even when absent: the pair rule is checked with the URL's problems.
        if value and info.data.get("proxy_url") is not None:
            raise field_rule(
                "proxy_url", "set proxy_url or proxy_from_environment, not both", sibling=True
            )
        return value

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: BudgetConfig | None, info: ValidationInfo) -> BudgetConfig | None:
        # A cost with its own problems is not in info.data: not judged here.
        if "cost" in info.data:
            check_budget_needs_cost(value, info.data["cost"])
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
        proxy = self.proxy_url
        if self.proxy_from_environment:
            proxy = environment_proxy(self.url)
        # Built here, in the loader's thread: the loop only uses it.
        self._redactor = Redactor([*api_key, *header_secrets, *proxy_secrets(proxy)])
        self._plan()
        return self

    def _plan(self) -> None:
        """The copies of this target that are probed, one per scenario (prompt and
        overrides applied) and one for the cold probe; made once, at load."""
        base = self._digest(exclude={"scenarios", "cold"})
        self._probe_fingerprint = _sub_digest(base, DEFAULT_SCENARIO, None)
        fields = type(self).model_fields
        plans = []
        for scenario in self.scenarios:
            update: dict[str, Any] = {**scenario.overrides(), "scenarios": [], "cold": None}
            prompt = scenario.effective_prompt
            if prompt is not None and "prompt" in fields:
                update["prompt"] = prompt
                if "messages" in fields:
                    update["messages"] = None
            elif scenario.messages is not None and "messages" in fields:
                update["messages"] = scenario.messages
                update["prompt"] = None
            copy = self._copy_for(update, scenario.name, _sub_digest(base, scenario.name, scenario))
            if scenario.prompt_tokens is not None and prompt is not None:
                copy._prompt_note = (
                    f"<generated: {scenario.prompt_tokens} words, {len(prompt)} characters>"
                )
            plans.append(copy)
        self._plans = tuple(plans)
        if self.cold is not None:
            update = {
                "timeout": self.cold.timeout,
                "interval": self.cold.every,
                "scenarios": [],
                "cold": None,
            }
            self._cold_plan = self._copy_for(
                update, COLD_SCENARIO, _sub_digest(base, COLD_SCENARIO, self.cold)
            )

    def _copy_for(self, update: dict[str, Any], scenario: str, fingerprint: str) -> Self:
        # Not validated again: every value was validated where the user wrote it.
        copy = self.model_copy(update=update)
        copy._scenario = scenario
        copy._plans = ()
        copy._cold_plan = None
        copy._probe_fingerprint = fingerprint
        return copy

    @property
    def scenario(self) -> str:
        """The `scenario` label of this target's probes (see probe_targets)."""
        return self._scenario

    def probe_targets(self) -> tuple[TargetBase, ...]:
        """What the scheduler probes on a cadence: one copy per configured scenario, or
        the target itself as the `default` scenario."""
        return self._plans or (self,)

    def cold_target(self) -> TargetBase | None:
        """The copy probed by the cold probe (timeout and interval from `cold:`)."""
        return self._cold_plan

    def probe_target(self, scenario: str) -> TargetBase | None:
        """The regular scenario of that name (as /probe selects it), if any."""
        return next((t for t in self.probe_targets() if t.scenario == scenario), None)

    def probe_fingerprint(self) -> str:
        """Changes whenever anything that affects the probes of this scenario changes
        (a reload restarts only the scenarios whose fingerprint moved)."""
        return self._probe_fingerprint

    def session_fingerprint(self) -> str:
        """Changes whenever the target's HTTP session must be rebuilt: its TLS settings
        or their files' contents (a rotated certificate), connection reuse."""
        data = {
            "tls": self.tls.model_dump(mode="json"),
            "tls_files": self.tls.content_digest,
            "reuse": self.reuse_connections,
        }
        return hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to `url` goes through, if any (with its credentials:
        never log it). Read from the environment per URL: a redirect may leave for a
        host that NO_PROXY names."""
        if self.proxy_from_environment:
            return environment_proxy(url)
        return self.proxy_url

    @property
    def api_key(self) -> SecretStr | None:
        """The resolved API key, if any. Never log or print it."""
        return self._api_key

    @property
    def redactor(self) -> Redactor:
        """Replaces this target's secrets (API key, secret header values) in free text."""
        return self._redactor

    def auth_headers(self) -> dict[str, str]:
        """The header that carries the API key in this protocol, if a key is set.
        Never log it."""
        if self._api_key is None:
            return {}
        return {self.auth_header: f"{self.auth_scheme}{self._api_key.get_secret_value()}"}

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
        if self._prompt_note is not None:
            data["prompt"] = self._prompt_note
        data["proxy_url"] = redacted_proxy_url(self.proxy_url)
        if self.expect is not None:
            data["expect"] = self.expect.pattern
        return data

    def fingerprint(self) -> str:
        """Changes whenever anything that affects probing changes (secrets included)."""
        return self._digest(exclude=set())

    def _digest(self, *, exclude: set[str]) -> str:
        data = self.model_dump(mode="json", exclude=exclude)
        data["expect"] = self.expect.pattern if self.expect else None
        digest = hashlib.sha256(repr(sorted(data.items())).encode())
        if self._api_key is not None:
            digest.update(self._api_key.get_secret_value().encode())
        # Values from value_env/value_file: a rotated one restarts the target's loop.
        for name, value in sorted(self._header_values.items()):
            digest.update(f"{name}\0{value}\0".encode())
        # The TLS files' contents: a rotated certificate, key or CA (same paths) too.
        digest.update(self.tls.content_digest.encode())
        return digest.hexdigest()


def _sub_digest(base: str, scenario: str, config: StrictModel | None) -> str:
    """The fingerprint of one scenario: the target's (without its scenarios) and the
    scenario's own config."""
    dump = config.model_dump(mode="json") if config is not None else None
    return hashlib.sha256(f"{base}\0{scenario}\0{dump!r}".encode()).hexdigest()


def target_labels(target: TargetBase) -> dict[str, str]:
    """The labels of every series of a target: ours first, then static ones sorted."""
    labels = {
        "target": target.name,
        "model": target.model,
        "protocol": target.protocol,
        # `default` for a target without scenarios: the same label set everywhere.
        "scenario": target.scenario,
    }
    labels.update(sorted(target.labels.items()))
    return labels
