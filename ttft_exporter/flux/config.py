"""Configuration of the `flux:` section: which Flux instances to watch and how."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Self

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ttft_exporter.durations import Duration, format_duration
from ttft_exporter.redact import Redactor
from ttft_exporter.validation import (
    ConfigPath,
    StrictModel,
    check_http_url,
    check_name,
    read_secret_pair,
)

__all__ = [
    "MAX_ENTITY_ID_CHARS",
    "MAX_GROUPS",
    "MAX_SUBSCRIPTIONS",
    "MIN_PERIOD",
    "FluxCanaryConfig",
    "FluxInstanceConfig",
    "FluxQueryConfig",
    "FluxReconnectConfig",
]

# Flux's own namespace rule (src/entity/mod.rs): 3-32 characters of [a-z0-9-_].
_NAMESPACE = re.compile(r"^[a-z0-9_-]{3,32}$")
# Flux's stream rule (src/event/validation.rs).
_STREAM = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")
# Below this, reconnects and staleness checks turn into a busy loop against a Flux
# that is down, for no faster detection than the network can give anyway.
MIN_PERIOD = 0.1


class FluxReconnectConfig(StrictModel):
    """Capped exponential backoff with full jitter between WebSocket connects."""

    initial: Duration = Field(0.5, description="First backoff step.")
    max: Duration = Field(30.0, validate_default=True, description="Cap of the backoff.")

    # Rules spanning fields are field validators reading earlier fields (info.data):
    # they run beside every other field's checks, so all problems come out at once.
    @field_validator("initial")
    @classmethod
    def _initial(cls, value: float) -> float:
        return _at_least_min_period(value)

    @field_validator("max")
    @classmethod
    def _max(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial")
        if initial is not None and value < initial:
            raise ValueError(f"must be at least initial ({format_duration(initial)})")
        return value


def _at_least_min_period(value: float) -> float:
    if value < MIN_PERIOD:
        raise ValueError(f"must be at least {format_duration(MIN_PERIOD)}")
    return value


def _below_interval(value: float, info: ValidationInfo) -> float:
    if value <= 0:
        raise ValueError("must be above 0")
    interval = info.data.get("interval")
    if interval is not None and value >= interval:
        raise ValueError(f"must be below interval ({format_duration(interval)})")
    return value


class FluxCanaryConfig(StrictModel):
    """Publish one event per interval and time its way back over the WebSocket."""

    interval: Duration = Field(10.0, description="Time between canary events.")
    timeout: Duration = Field(
        5.0,
        validate_default=True,
        description="How long to wait for the ack plus the state_update.",
    )
    namespace: str = Field(
        "ttft",
        description="Entity namespace; the canary entity is <namespace>/ttft-canary-<instance>.",
    )
    stream: str = Field("ttft.canary", description="Flux stream of the canary events.")
    source: str = Field(
        "ttft-exporter", min_length=1, description="Flux `source` of the canary events."
    )
    token_env: str | None = Field(
        None, description="Environment variable holding the namespace bearer token."
    )
    token_file: ConfigPath | None = Field(
        None, validate_default=True, description="File holding the namespace bearer token."
    )

    _token: SecretStr | None = PrivateAttr(None)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAMESPACE.fullmatch(value):
            raise ValueError(
                "must be 3-32 characters of a-z, 0-9, '-' or '_' (Flux's namespace rule)"
            )
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        if not _STREAM.fullmatch(value):
            raise ValueError(
                "must be lowercase letters and digits with single dots (Flux's stream rule)"
            )
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        return _at_least_min_period(value)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float, info: ValidationInfo) -> float:
        return _below_interval(value, info)

    @field_validator("token_file")
    @classmethod
    def _token_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Validated even when absent: reads (and caches) the token, reports its problem.
        read_secret_pair(
            "token_env", info.data.get("token_env"), "token_file", value, info, sibling=True
        )
        return value

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> Self:
        self._token = read_secret_pair(
            "token_env", self.token_env, "token_file", self.token_file, info
        )
        return self

    @property
    def token(self) -> SecretStr | None:
        """The resolved bearer token, if any. Never log it."""
        return self._token


class FluxQueryConfig(StrictModel):
    """A timed read: `GET /api/state/entities?prefix=...`."""

    interval: Duration = Field(30.0, description="Time between reads.")
    prefix: str = Field("", description="Entity id prefix to list (empty: all entities).")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        return _at_least_min_period(value)


# Every subscription is a frame sent at each connect, every group a label value.
MAX_SUBSCRIPTIONS = 1000
MAX_GROUPS = 100
MAX_ENTITY_ID_CHARS = 256


class FluxInstanceConfig(StrictModel):
    """One Flux instance to watch; `name` is the `flux` label."""

    name: str = Field(description="Unique name; the `flux` label.")
    url: str = Field(description="Base URL, e.g. http://flux:3000 (the WebSocket is {url}/api/ws).")
    stale_after: Duration = Field(
        6.0,
        description="No message for this long means stale (Flux sends metrics every 2 s); "
        "a connection silent this long since it opened is dropped.",
    )
    subscribe: list[str] = Field(
        default_factory=list,
        max_length=MAX_SUBSCRIPTIONS,
        description=f"Entity ids to subscribe to (at most {MAX_SUBSCRIPTIONS}, each at most "
        f"{MAX_ENTITY_ID_CHARS} characters); empty: every entity.",
    )
    groups: list[str] = Field(
        default_factory=list,
        max_length=MAX_GROUPS,
        description=f"Entity id prefixes for bounded per-group counts (at most {MAX_GROUPS}: "
        "each is a label value).",
    )
    ping_interval: Duration = Field(
        5.0, description="Client WebSocket ping period; a missing pong drops the connection."
    )
    connect_timeout: Duration = Field(5.0, description="Deadline of one connect attempt.")
    reconnect: FluxReconnectConfig = Field(default_factory=FluxReconnectConfig)
    canary: FluxCanaryConfig | None = Field(None, description="Optional active check.")
    query: FluxQueryConfig | None = Field(None, description="Optional timed read check.")

    _redactor: Redactor = PrivateAttr(default_factory=Redactor)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, "canary.token_env or canary.token_file")

    @field_validator("subscribe")
    @classmethod
    def _subscribe(cls, value: list[str]) -> list[str]:
        if any(not e or len(e) > MAX_ENTITY_ID_CHARS for e in value):
            raise ValueError(f"entity ids must have 1 to {MAX_ENTITY_ID_CHARS} characters")
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        if any(not g or len(g) > MAX_ENTITY_ID_CHARS for g in value):
            raise ValueError(f"prefixes must have 1 to {MAX_ENTITY_ID_CHARS} characters")
        if len(set(value)) != len(value):
            raise ValueError("prefixes must be unique")
        return value

    @field_validator("stale_after", "ping_interval")
    @classmethod
    def _periods(cls, value: float) -> float:
        return _at_least_min_period(value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        # Built here, in the loader's thread: the loop only uses it.
        self._redactor = Redactor(self.secrets())
        return self

    @property
    def redactor(self) -> Redactor:
        """Replaces this instance's secrets (the canary token) in free text."""
        return self._redactor

    @property
    def canary_entity(self) -> str | None:
        """The canary's entity id, `<namespace>/ttft-canary-<instance>`."""
        if self.canary is None:
            return None
        return f"{self.canary.namespace}/ttft-canary-{self.name}"

    @property
    def ws_url(self) -> str:
        """The WebSocket URL."""
        base = "ws" + self.url.removeprefix("http")
        return f"{base}/api/ws"

    def subscriptions(self) -> list[str]:
        """What to subscribe to: nothing (every update) unless narrowed, and then
        always the canary entity too, or the canary would never see its update."""
        if not self.subscribe:
            return []
        entity = self.canary_entity
        return (
            [*self.subscribe, entity]
            if entity and entity not in self.subscribe
            else list(self.subscribe)
        )

    def secrets(self) -> list[str]:
        """Secret values for redaction of free text."""
        token = self.canary.token if self.canary else None
        return [token.get_secret_value()] if token else []

    def fingerprint(self) -> str:
        """Changes when anything that affects monitoring changes (secrets included)."""
        import hashlib

        digest = hashlib.sha256(self.model_dump_json().encode())
        for secret in self.secrets():
            digest.update(secret.encode())
        return digest.hexdigest()
