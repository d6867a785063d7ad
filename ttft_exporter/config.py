"""Configuration models (pydantic v2), loading with every problem reported at once, and
the holder that swaps a validated config atomically on reload.

Target models are owned by their protocol modules (`probes/`); the union of them,
`TargetConfig`, is derived from the protocol registry and re-exported here, as are the
shared target pieces of `targets.py`."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ttft_exporter.budget import BudgetConfig, CostConfig
from ttft_exporter.durations import Duration
from ttft_exporter.errors import ConfigError, ConfigProblem
from ttft_exporter.flux.config import FluxInstanceConfig
from ttft_exporter.logs import fields as log_fields
from ttft_exporter.probes import PROTOCOL_NAMES, TargetConfig, get_protocol
from ttft_exporter.probes.openai import OpenAIChatTarget, OpenAICompletionsTarget
from ttft_exporter.shard import ShardConfig
from ttft_exporter.sinks.otel.config import OTelConfig
from ttft_exporter.slo import SLOsConfig
from ttft_exporter.targets import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HEADER_UNION_TAGS,
    MAX_REDIRECTS_LIMIT,
    ChatMessage,
    HeaderSpec,
    HeaderValue,
    HistogramsConfig,
    TargetBase,
    TLSConfig,
    redacted_headers,
)
from ttft_exporter.validation import ConfigPath, StrictModel, read_bounded
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
    "TargetBase",
    "TargetConfig",
    "TargetDefaults",
    "load_config",
    "parse_config",
    "redacted_headers",
    "validation_problems",
]

log = logging.getLogger("ttft_exporter.config")

# Fields a `defaults:` block may set for every target; values in a target win. A
# protocol's own field (include_usage) is applied only to targets of the protocols
# whose model has it.
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
    "proxy_from_environment",
    "follow_redirects",
    "max_redirects",
    "cost",
    "budget",
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
    proxy_from_environment: bool | None = None
    follow_redirects: bool | None = None
    max_redirects: int | None = Field(None, ge=1, le=MAX_REDIRECTS_LIMIT)
    cost: CostConfig | None = None
    budget: BudgetConfig | None = None


PROTOCOL_TAGS = PROTOCOL_NAMES


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
    shard: ShardConfig = Field(
        default_factory=ShardConfig,
        description=(
            "Probe only the targets (and watch only the Flux instances) whose name hashes "
            "to this replica's shard; the --shard.* flags override it."
        ),
    )
    otel: OTelConfig | None = Field(
        None,
        description=(
            "OTLP export of metrics and traces (OpenTelemetry); off when absent, and the "
            "OpenTelemetry SDK is then not even imported."
        ),
    )
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
            fields = _target_fields(target.get("protocol"))
            for key, value in known.items():
                if fields is not None and key not in fields:
                    continue
                if key in ("api_key_env", "api_key_file") and (
                    "api_key_env" in target or "api_key_file" in target
                ):
                    continue
                if key == "proxy_from_environment" and target.get("proxy_url") is not None:
                    # The target names its own proxy: the pair rule is not broken.
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


def _target_fields(protocol: Any) -> frozenset[str] | None:
    """The fields of a protocol's target model; None for an unknown protocol (its
    target fails on the protocol anyway)."""
    if not isinstance(protocol, str):
        return None
    try:
        return frozenset(get_protocol(protocol).model.model_fields)
    except KeyError:
        return None


Loc = tuple[int | str, ...]


def _user_loc(loc: Iterable[int | str]) -> Loc:
    """pydantic's error location without the parts users never wrote: union tags
    (the protocol), function validators and `[key]` markers."""
    out: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (
            part in PROTOCOL_TAGS
            or part in HEADER_UNION_TAGS
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
    if kind == "too_long":  # a list or mapping over its cap
        return (
            loc,
            f"must have at most {ctx.get('max_length')} items, not {ctx.get('actual_length')}",
        )
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
    _warn_insecure(config)
    return config


def _warn_insecure(config: Config) -> None:
    """One warning line per target that does not verify its server's certificate, at
    every load: a test setting must not reach production unnoticed."""
    for target in config.targets:
        if target.tls.insecure_skip_verify:
            log.warning(
                "TLS certificate verification disabled (tls.insecure_skip_verify)",
                extra=log_fields(target=target.name),
            )


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
