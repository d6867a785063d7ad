"""Configuration: one bad file per rule with its exact message, the good file, the
examples and the demo config."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from ttft_exporter.config import OpenAIChatTarget, load_config, parse_config
from ttft_exporter.durations import format_duration, parse_duration
from ttft_exporter.errors import ConfigError
from ttft_exporter.probes import PROTOCOL_NAMES

# Every protocol name, in registry order, as an unknown protocol's message lists them.
KNOWN = ", ".join(PROTOCOL_NAMES)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "testdata" / "config"

INVALID = {
    "unknown-key": ["targets[0].bogus: unknown field"],
    "timeout-above-interval": ["targets[0].timeout: must be below interval (15s)"],
    "timeout-from-defaults": ["targets[0].timeout: must be below interval (5s)"],
    "duration": [
        "targets[0].interval: invalid duration 'soon': use a number of seconds or a string "
        "such as 250ms, 5s, 1m"
    ],
    "protocol": [f"targets[0].protocol: unknown protocol 'grpc'; known: {KNOWN}"],
    "missing-protocol": [f"targets[0].protocol: protocol is required; known: {KNOWN}"],
    "duplicate-name": ["targets[1].name: duplicate target name 'a'"],
    "name": [
        "targets[0].name: must start with a letter or digit and use only letters, digits, "
        "'_', '.', ':' or '-' (at most 128 characters)"
    ],
    "url-scheme": ["targets[0].url: must be an absolute http:// or https:// URL"],
    "url-credentials": [
        "targets[0].url: must not contain credentials; use api_key_env or api_key_file"
    ],
    "prompt-and-messages": ["targets[0].prompt: set exactly one of prompt or messages"],
    "no-prompt": ["targets[0].prompt: set exactly one of prompt or messages"],
    "label-reserved": [
        "targets[0].labels.target: reserved label name (set by the exporter or by Prometheus)"
    ],
    "label-name": [
        "targets[0].labels.bad-name: invalid label name: letters, digits and '_' only, "
        "not starting with a digit or '__'"
    ],
    "expect-regex": [
        "targets[0].expect: invalid regular expression: missing ): (unclosed (RE2 syntax: no backreferences or lookaround)"
    ],
    "api-key-env-unset": [
        "targets[0].api_key_env: environment variable TTFT_TEST_SURELY_UNSET_KEY is not set or empty"
    ],
    "api-key-both": ["targets[0].api_key_env: set api_key_env or api_key_file, not both"],
    "api-key-file-missing": ["targets[0].api_key_file: cannot read: No such file or directory"],
    "buckets": ["buckets.latency: boundaries must be strictly increasing"],
    "histograms": [
        "targets[0].histograms.time_to_first_byte: must be a valid boolean, unable to "
        "interpret input",
        "targets[1].histograms.time_to_first_token: unknown field",
    ],
    "defaults-unknown": ["defaults.bogus: unknown field"],
    "yaml": ["invalid YAML: line 4 column 1: did not find expected ',' or ']'"],
    "top-level": ["the top level must be a mapping"],
    "concurrency": ["concurrency: must be greater than or equal to 1"],
    "max-tokens": ["targets[0].max_tokens: must be greater than or equal to 1"],
    "tls-pair": ["targets[0].tls.cert_file: cert_file and key_file must be set together"],
    "role": ["targets[0].messages[0].role: must be 'system', 'user', 'assistant' or 'developer'"],
    "flux-canary-timeout": ["flux[0].canary.timeout: must be below interval (5s)"],
    "flux-duplicate": ["flux[1].name: duplicate flux instance name 'main'"],
    "flux-namespace": [
        "flux[0].canary.namespace: must be 3-32 characters of a-z, 0-9, '-' or '_' (Flux's namespace rule)"
    ],
    "flux-periods": [
        "flux[0].stale_after: must be at least 100ms",
        "flux[1].reconnect.initial: must be at least 100ms",
        "flux[2].ping_interval: must be at least 100ms",
        # File order: `query` comes before `canary` in the file.
        "flux[3].query.interval: must be at least 100ms",
        "flux[3].canary.interval: must be at least 100ms",
    ],
    "flux-reconnect": [
        "flux[0].reconnect.max: must be at least initial (2s)",
        "flux[0].groups: prefixes must be unique",
    ],
    "flux-token-env": [
        "flux[0].canary.token_env: environment variable TTFT_TEST_SURELY_UNSET_TOKEN is not set or empty"
    ],
    "flux-url": [
        "flux[0].url: must be an absolute http:// or https:// URL",
        "flux[0].bogus: unknown field",
    ],
    "duplicate-key": ["targets[0].url: duplicate key (line 7)"],
    "yaml-bomb": [
        "targets[0].extra_body.g: expands to more than 1000000 YAML nodes through aliases (line 15)"
    ],
    "recursive-alias": ["targets[0].extra_body: recursive alias (line 7)"],
    "api-key-file-device": ["targets[0].api_key_file: not a regular file"],
    "extra-body-depth": ["targets[0].extra_body: nested deeper than 16 levels"],
    "extra-body-not-json": [
        "targets[0].extra_body: must be JSON data: Object of type date is not JSON serializable"
    ],
    "header-source": [
        "targets[0].headers.X-Auth-Token.value: set exactly one of value, value_env or value_file"
    ],
    "header-env-unset": [
        "targets[0].headers.X-Auth-Token.value_env: environment variable "
        "TTFT_TEST_SURELY_UNSET_HEADER is not set or empty"
    ],
    "header-name": ["targets[0].headers.X Auth: invalid header name"],
    "all-at-once": [
        "targets[0].api_key_env: environment variable TTFT_TEST_SURELY_UNSET_KEY is not set or empty",
        "targets[0].labels.bad-name: invalid label name: letters, digits and '_' only, "
        "not starting with a digit or '__'",
        "targets[0].labels.target: reserved label name (set by the exporter or by Prometheus)",
        "targets[0].expect: invalid regular expression: missing ): (unclosed "
        "(RE2 syntax: no backreferences or lookaround)",
        "targets[0].headers.X Bad: invalid header name",
        "targets[0].headers.X-Env.value_env: environment variable "
        "TTFT_TEST_SURELY_UNSET_HEADER is not set or empty",
        "targets[0].timeout: must be below interval (5s)",
        'targets[1].name: must be a string; quote it: "500"',
        "targets[1].messages: must not be empty",
        "flux[0].canary.token_env: environment variable TTFT_TEST_SURELY_UNSET_TOKEN "
        "is not set or empty",
        "flux[0].canary.timeout: must be below interval (1s)",
        "flux[0].stale_after: must be at least 100ms",
    ],
    "name-not-string": [
        'targets[0].name: must be a string; quote it: "500"',
        "targets[0].prompt: must be a string; quote it "
        "(YAML reads yes, no, on, off, true, false as booleans)",
    ],
    # Scenarios and the cold probe (#10): each problem at its scenario's field.
    "scenarios": [
        "targets[0].scenarios[0].name: must start with a lower-case letter or digit and use "
        "only a-z, 0-9, '_', '.' or '-' (at most 32 characters)",
        "targets[0].scenarios[1].name: 'cold' is reserved (set by the exporter)",
        "targets[0].scenarios[2].prompt_tokens: set at most one of prompt, messages or "
        "prompt_tokens, not prompt, prompt_tokens",
        "targets[0].scenarios[3].prompt_tokens: must be less than or equal to 200000",
        "targets[0].scenarios[4].bogus: unknown field",
    ],
    "scenarios-target": [
        "targets[0].scenarios[0].interval: the scenario's timeout (10s) must be below its "
        "interval (5s)",
        "targets[0].scenarios[1].name: duplicate scenario name 'short'",
        "targets[0].scenarios[1].messages: this protocol takes a prompt, not messages",
        "targets[0].scenarios[2].timeout: the scenario's timeout (30s) must be below its "
        "interval (15s)",
    ],
    "cold": [
        "targets[0].cold.every: must be at least idle (2h)",
        "targets[1].cold.idle: must be between 1s and 7d",
        "targets[1].cold.timeout: must be below every (1h)",
        "targets[2].labels.scenario: reserved label name (set by the exporter or by Prometheus)",
    ],
    "cost-budget": [
        "targets[0].cost.input_per_million: must be greater than or equal to 0",
        "targets[0].cost.output_per_million: must be a finite number",
        "targets[0].cost.currency: must be a three-letter ISO 4217 code in capitals, e.g. USD",
        "targets[1].budget.daily_cost: needs cost (input_per_million, output_per_million)",
        "targets[2].budget: set daily_tokens or daily_cost (or remove budget)",
        "targets[3].cost.output_per_million: Field required",
        "targets[3].budget.daily_tokens: must be greater than or equal to 1",
        "targets[3].budget.daily_spend: unknown field",
    ],
    "many-problems": [
        "concurrency: must be greater than or equal to 1",
        "targets[0].timeout: must be below interval (15s)",
        "targets[1].extra: unknown field",
        "targets[2].name: duplicate target name 'a'",
    ],
}


def test_every_invalid_file_has_a_case() -> None:
    files = {p.stem.removeprefix("invalid-") for p in DATA.glob("invalid-*.yml")}
    assert files == set(INVALID)


@pytest.mark.parametrize(("rule", "messages"), INVALID.items(), ids=list(INVALID))
def test_invalid(rule: str, messages: list[str]) -> None:
    path = DATA / f"invalid-{rule}.yml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == messages
    assert str(info.value).startswith(f"invalid configuration {path}:\n")


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "nope.yml")
    assert [str(p) for p in info.value.problems] == ["cannot read file: No such file or directory"]


def test_oversize_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    with path.open("wb") as file:  # sparse: 30 MB on paper, nothing on disk
        file.truncate(30_000_000)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        "cannot read file: larger than 4 MiB (30000000 bytes)"
    ]


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_config_and_key_files_must_be_regular(tmp_path: Path, kind: str) -> None:
    if kind == "dev-zero":
        special = Path("/dev/zero")
    elif kind == "fifo":
        special = tmp_path / "fifo"
        os.mkfifo(special)  # no writer: opening it without O_NONBLOCK would hang
    else:
        special = tmp_path
    with pytest.raises(ConfigError) as info:
        load_config(special)
    assert [str(p) for p in info.value.problems] == ["cannot read file: not a regular file"]
    target = {**_TARGET, "api_key_file": str(special)}
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target]})
    assert [str(p) for p in info.value.problems] == ["targets[0].api_key_file: not a regular file"]


def test_key_file_size_is_bounded(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k" * (64 * 1024 + 1))
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [{**_TARGET, "api_key_file": str(key)}]})
    assert [str(p) for p in info.value.problems] == [
        "targets[0].api_key_file: larger than 64 KiB (65537 bytes)"
    ]


def test_extra_body_size_is_bounded() -> None:
    target = {**_TARGET, "extra_body": {"pad": "x" * 70_000}}
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target]})
    assert [str(p) for p in info.value.problems] == [
        "targets[0].extra_body: larger than 64 KiB as JSON (70011 bytes)"
    ]


def test_aliases_within_budget_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ttft.yml"
    path.write_text(
        "base: &base {protocol: openai-chat, model: m, prompt: hi}\n"
        "targets:\n"
        "  - {<<: *base, name: a, url: 'http://h/v1', extra_body: &body {stop: [x, y]}}\n"
        "  - {<<: *base, name: b, url: 'http://h/v1', extra_body: *body}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:  # `base` is not a config field...
        load_config(path)
    assert [str(p) for p in info.value.problems] == ["base: unknown field"]
    path.write_text(path.read_text().replace("base: &base", "defaults: {}\nx-base: &base"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == ["x-base: unknown field"]


_TARGET = {
    "name": "a",
    "protocol": "openai-chat",
    "url": "http://127.0.0.1:9/v1",
    "model": "m",
    "prompt": "x",
}


def test_header_sources_and_secrecy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTFT_TEST_HEADER", "env-value-123456")
    key = tmp_path / "token"
    key.write_text(" file-value-123456 \n")
    target = parse_config(
        {
            "targets": [
                {
                    **_TARGET,
                    "headers": {
                        "X-Plain": "plain-value-123456",
                        "X-Env": {"value_env": "TTFT_TEST_HEADER"},
                        "Ocp-Apim-Subscription-Key": {"value_file": str(key)},
                        "X-Team": {"value": "ml", "secret": False},
                    },
                }
            ]
        }
    ).targets[0]
    assert target.request_headers() == {
        "X-Plain": "plain-value-123456",
        "X-Env": "env-value-123456",
        "Ocp-Apim-Subscription-Key": "file-value-123456",
        "X-Team": "ml",
    }
    assert sorted(target.secrets()) == [
        "env-value-123456",
        "file-value-123456",
        "plain-value-123456",
    ]
    assert target.redacted()["headers"] == {
        "X-Plain": "<secret>",
        "X-Env": {"value_env": "TTFT_TEST_HEADER", "secret": True},
        "Ocp-Apim-Subscription-Key": {"value_file": str(key), "secret": True},
        "X-Team": {"value": "ml", "secret": False},
    }


def test_good_file_and_defaults_merge() -> None:
    config, checksum = load_config(DATA / "good.yml")
    assert len(checksum) == 64
    chat, completions, messages = config.targets
    assert isinstance(chat, OpenAIChatTarget)
    assert chat.interval == 30.0 and chat.timeout == 5.0
    assert chat.headers == {"X-Team": "ml"}
    assert chat.labels == {"env": "test", "region": "eu"}
    assert completions.interval == 60.0 and completions.timeout == 0.25
    assert completions.url == "https://example.com/v1"  # trailing slash dropped
    assert completions.expect is not None and completions.expect.search("UPON a time")
    assert messages.interval == 10.0 and messages.timeout == 2.5
    assert config.concurrency == 4
    assert config.bucket_overrides() == {"latency": [0.1, 0.5, 1.0, 2.0]}
    # Prices are exact decimals (15.10 is not 15.0999...); no cost, no budget: None.
    assert chat.cost is not None and chat.budget is not None
    assert chat.cost.output_per_million == Decimal("15.10")
    assert chat.cost.currency == "EUR"
    assert (chat.budget.daily_tokens, chat.budget.daily_cost) == (200000, Decimal("2.5"))
    assert completions.cost is None and completions.budget is None


def test_budget_and_cost_come_from_defaults_and_a_target_replaces_them_whole() -> None:
    base = {"protocol": "openai-chat", "url": "http://h/v1", "model": "m", "prompt": "x"}
    config = parse_config(
        {
            "defaults": {
                "budget": {"daily_tokens": 1000},
                "cost": {"input_per_million": 1, "output_per_million": 2},
            },
            "targets": [
                {"name": "a", **base},
                {"name": "b", **base, "budget": {"daily_cost": "0.5"}},
            ],
        }
    )
    a, b = config.targets
    assert a.budget is not None and a.budget.daily_tokens == 1000
    assert a.cost is not None and a.cost.currency == "USD"
    # Not merged key by key: b's budget is its own, without the default daily_tokens.
    assert b.budget is not None and b.budget.daily_tokens is None
    assert b.budget.daily_cost == Decimal("0.5")


def test_defaults_do_not_override_target_values() -> None:
    config = parse_config(
        {
            "defaults": {"interval": "1m", "timeout": "30s", "max_tokens": 10},
            "targets": [
                {
                    "name": "a",
                    "protocol": "openai-chat",
                    "url": "http://h/v1",
                    "model": "m",
                    "prompt": "x",
                    "timeout": "1s",
                }
            ],
        }
    )
    target = config.targets[0]
    assert (target.interval, target.timeout, target.max_tokens) == (60.0, 1.0, 10)


@pytest.mark.parametrize(
    "text", ["", "# only a comment\n", "\n\n"], ids=["empty", "comment", "blank"]
)
def test_an_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == ["the file is empty"]
    # An explicit empty mapping says "nothing to probe" on purpose.
    path.write_text("{}\n")
    config, _ = load_config(path)
    assert config.targets == []


EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_as_shipped(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh machine: no key in the environment, the working directory elsewhere.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("FLUX_TOKEN", raising=False)
    monkeypatch.chdir("/")
    config, _ = load_config(path)
    assert config.targets or config.flux


def test_the_providers_example_has_a_target_per_registered_protocol() -> None:
    config, _ = load_config(ROOT / "examples" / "providers.yml")
    missing = set(PROTOCOL_NAMES) - {t.protocol for t in config.targets}
    assert not missing, f"examples/providers.yml has no target for {sorted(missing)}"


def test_relative_files_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in Prometheus and --web.config.file: not to the working directory."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text("sk-relative-123456\n")
    (tmp_path / "token").write_text("header-token-123456\n")
    path = tmp_path / "ttft.yml"
    target = {**_TARGET, "headers": {"X-Token": {"value_file": "token"}}}
    path.write_text(
        yaml.safe_dump({"defaults": {"api_key_file": "secrets/key"}, "targets": [target]})
    )
    monkeypatch.chdir("/")
    config, _ = load_config(path)
    loaded = config.targets[0]
    assert loaded.api_key_file == tmp_path / "secrets" / "key"
    assert loaded.api_key is not None
    assert loaded.api_key.get_secret_value() == "sk-relative-123456"
    assert loaded.request_headers() == {"X-Token": "header-token-123456"}
    # An absolute path stays as it is.
    absolute = parse_config(
        {"targets": [{**_TARGET, "api_key_file": str(tmp_path / "secrets" / "key")}]},
        base_dir=Path("/x"),
    )
    assert absolute.targets[0].api_key is not None


def test_demo_config_loads() -> None:
    from ttft_exporter.demo import demo_config_text

    config = parse_config(
        yaml.safe_load(demo_config_text("http://127.0.0.1:1", "http://127.0.0.1:2"))
    )
    assert {t.name for t in config.targets} >= {"sim-healthy", "sim-degraded"}
    assert [f.name for f in config.flux] == ["demo"]


def test_api_key_from_file_is_stripped_and_secret(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("  sk-abc \n")
    target = parse_config(
        {
            "targets": [
                {
                    "name": "a",
                    "protocol": "openai-chat",
                    "url": "http://h/v1",
                    "model": "m",
                    "prompt": "x",
                    "api_key_file": str(key),
                }
            ]
        }
    ).targets[0]
    assert target.api_key is not None and target.api_key.get_secret_value() == "sk-abc"
    assert "sk-abc" not in repr(target) and "sk-abc" not in str(target.redacted())


def test_json_schema_has_every_section() -> None:
    from ttft_exporter.config import Config

    schema = Config.model_json_schema(mode="validation")
    text = json.dumps(schema)
    for key in (
        "targets",
        "defaults",
        "concurrency",
        "buckets",
        "openai-chat",
        "openai-completions",
    ):
        assert key in text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("2.5", 2.5),
        (3, 3.0),
        ("0.5s", 0.5),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "-1s", "1s5", True, None, float("inf")])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (15.0, "15s"), (90.0, "1m30s"), (3600.0, "1h"), (2.5, "2.5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_flux_stale_after_default_is_above_flux_metrics_interval() -> None:
    """Flux sends metrics_update every 2 s (flux-api.md §2.2): a default stale_after
    at or below that would call a healthy stream stale between two messages."""
    from ttft_exporter.flux.config import FluxInstanceConfig

    default = FluxInstanceConfig.model_fields["stale_after"].default
    assert default > 2 * 2.0


def test_flux_subscriptions_and_groups_are_bounded() -> None:
    """Every subscription is a frame sent at each connect and every group a label
    value: both lists and their strings have a cap, and all four are named at once."""
    from ttft_exporter.flux.config import MAX_ENTITY_ID_CHARS, MAX_GROUPS, MAX_SUBSCRIPTIONS

    url = "http://127.0.0.1:3000"
    at_cap = {
        "name": "a",
        "url": url,
        "subscribe": [f"e{i}" for i in range(MAX_SUBSCRIPTIONS - 1)] + ["x" * MAX_ENTITY_ID_CHARS],
        "groups": [f"g{i}-" for i in range(MAX_GROUPS)],
    }
    assert len(parse_config({"flux": [at_cap]}).flux[0].subscriptions()) == MAX_SUBSCRIPTIONS
    over = [
        {**at_cap, "subscribe": [*at_cap["subscribe"], "one-more"], "groups": ["g", "g"]},
        {"name": "b", "url": url, "subscribe": ["x" * (MAX_ENTITY_ID_CHARS + 1)], "groups": [""]},
    ]
    with pytest.raises(ConfigError) as info:
        parse_config({"flux": over})
    assert [str(p) for p in info.value.problems] == [
        "flux[0].subscribe: must have at most 1000 items, not 1001",
        "flux[0].groups: prefixes must be unique",
        "flux[1].subscribe: entity ids must have 1 to 256 characters",
        "flux[1].groups: prefixes must have 1 to 256 characters",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config({"flux": [{**at_cap, "groups": [f"g{i}-" for i in range(MAX_GROUPS + 1)]}]})
    assert [str(p) for p in info.value.problems] == [
        f"flux[0].groups: must have at most {MAX_GROUPS} items, not {MAX_GROUPS + 1}"
    ]


def test_max_response_bytes_default_defaults_and_bounds() -> None:
    from tests.conftest import make_config
    from ttft_exporter.config import DEFAULT_MAX_RESPONSE_BYTES

    assert DEFAULT_MAX_RESPONSE_BYTES == 4 << 20
    config = make_config(
        {"name": "a", "url": "http://h/v1"},
        {"name": "b", "url": "http://h/v1", "max_response_bytes": 65536},
        defaults={"max_response_bytes": 1 << 20},
    )
    assert [t.max_response_bytes for t in config.targets] == [1 << 20, 65536]
    assert make_config({"name": "a", "url": "http://h/v1"}).targets[0].max_response_bytes == (
        DEFAULT_MAX_RESPONSE_BYTES
    )
    with pytest.raises(ConfigError) as info:
        make_config({"name": "a", "url": "http://h/v1", "max_response_bytes": 100})
    assert [str(p) for p in info.value.problems] == [
        "targets[0].max_response_bytes: must be greater than or equal to 1024"
    ]


def test_suspect_settings_default_merge_and_bounds() -> None:
    def target(name: str, **fields: object) -> dict[str, object]:
        return {"name": name, "protocol": "openai-chat", "url": "http://x/v1", "model": "m",
                "prompt": "p", **fields}  # fmt: skip

    plain = parse_config({"targets": [target("a")]})
    assert plain.suspect_loop_lag == 0.01
    assert plain.targets[0].on_suspect == "record"

    config = parse_config(
        {
            "suspect_loop_lag": "25ms",
            "defaults": {"on_suspect": "drop"},
            "targets": [target("a"), target("b", on_suspect="record")],
        }
    )
    assert config.suspect_loop_lag == 0.025
    assert [t.on_suspect for t in config.targets] == ["drop", "record"]

    with pytest.raises(ConfigError) as info:
        parse_config({"suspect_loop_lag": "500us", "targets": [target("a", on_suspect="keep")]})
    # In the order the keys come (file order).
    assert [str(p) for p in info.value.problems] == [
        "suspect_loop_lag: invalid duration '500us': use a number of seconds or a string such "
        "as 250ms, 5s, 1m",
        "targets[0].on_suspect: must be 'record' or 'drop'",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config({"suspect_loop_lag": "0.5ms"})
    assert [str(p) for p in info.value.problems] == [
        "suspect_loop_lag: must be between 1ms and 10s"
    ]


def test_histograms_in_defaults_merge_key_by_key() -> None:
    # Issue #9: `histograms:` under defaults merge key by key, as labels do.
    target = {"protocol": "openai-chat", "url": "http://127.0.0.1:9/v1", "model": "m"}
    config = parse_config(
        {
            "defaults": {"histograms": {"time_to_first_byte": True, "inter_chunk_latency": True}},
            "targets": [
                {
                    **target,
                    "name": "a",
                    "prompt": "hi",
                    "histograms": {"time_to_first_byte": False},
                },
                {**target, "name": "b", "prompt": "hi"},
            ],
        }
    )
    a, b = config.targets
    assert (a.histograms.time_to_first_byte, a.histograms.inter_chunk_latency) == (False, True)
    assert (b.histograms.time_to_first_byte, b.histograms.inter_chunk_latency) == (True, True)
    assert a.histograms.time_to_first_output_token == "auto"


@pytest.mark.parametrize(
    ("protocol", "url"),
    [
        ("openai-chat", "http://h/v1"),
        ("anthropic", "http://h"),
        ("azure-openai", "http://h"),
        ("gemini", "http://h/v1beta"),
    ],
)
@pytest.mark.parametrize("bad", ["\x0b", "\x1f", "\x7f", "\r"])
def test_api_key_or_header_with_a_control_character_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, protocol: str, url: str, bad: str
) -> None:
    # Before: only CR, LF and NUL were refused in header values, and nothing inside an
    # api key (its ends are stripped); aiohttp refuses every control character but HTAB
    # at send time, so every probe failed `internal` with a traceback. Now: a config
    # error naming the field, never the value.
    monkeypatch.setenv("TTFT_TEST_BAD_KEY", f"sk-SENTINEL{bad}5f2a9c")
    base = {"name": "a", "protocol": protocol, "url": url, "model": "m", "prompt": "x"}
    with pytest.raises(ConfigError, match="api_key_env: the key contains CR, LF, NUL") as info:
        parse_config({"targets": [{**base, "api_key_env": "TTFT_TEST_BAD_KEY"}]})
    assert "SENTINEL" not in str(info.value)
    with pytest.raises(ConfigError, match="another control character") as info:
        parse_config({"targets": [{**base, "headers": {"X-Team": f"ml-SENTINEL{bad}x"}}]})
    assert "SENTINEL" not in str(info.value)
    # A tab is a legal header character: accepted.
    parse_config({"targets": [{**base, "headers": {"X-Team": "ml\tx"}}]})
