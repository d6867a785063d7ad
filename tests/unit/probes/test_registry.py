"""The protocol registry (`probes/__init__.py`): one table from which the config's union
of target models and the prober lookup are both derived."""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config
from ttft_exporter.config import Config, TargetConfig
from ttft_exporter.probes import (
    PROBERS,
    PROTOCOL_NAMES,
    PROTOCOLS,
    ProtocolSpec,
    get_prober,
    get_protocol,
)
from ttft_exporter.probes.base import HTTPRequest
from ttft_exporter.probes.framing import Framer
from ttft_exporter.targets import TargetBase

ROOT = Path(__file__).resolve().parents[3]


def _union_members() -> set[type[Any]]:
    annotated, field = typing.get_args(TargetConfig)
    assert field.discriminator == "protocol"
    return set(typing.get_args(annotated))


def test_the_config_union_is_the_registry() -> None:
    assert _union_members() == {spec.model for spec in PROTOCOLS}
    assert set(PROTOCOL_NAMES) == {spec.name for spec in PROTOCOLS}
    # The union Config validates targets with is that same one.
    assert Config.model_fields["targets"].annotation == list[TargetConfig]


@pytest.mark.parametrize("spec", PROTOCOLS, ids=[s.name for s in PROTOCOLS])
def test_every_protocol_has_a_model_prober_framer_and_decoder(spec: ProtocolSpec[Any]) -> None:
    assert issubclass(spec.model, TargetBase)
    assert typing.get_args(spec.model.model_fields["protocol"].annotation) == (spec.name,)
    assert get_prober(spec.name) is PROBERS[spec.name]
    assert get_protocol(spec.name) is spec
    framer: Framer = spec.new_framer()
    assert framer.feed(b"") == [] and isinstance(framer.media_type, str)
    assert callable(spec.new_decoder().decode)
    # Two streams never share a framer or a decoder: they keep state across events.
    assert spec.new_framer() is not framer
    assert spec.new_decoder() is not spec.new_decoder()


@pytest.mark.parametrize("spec", PROTOCOLS, ids=[s.name for s in PROTOCOLS])
def test_every_protocol_builds_its_request_with_its_auth_header(
    spec: ProtocolSpec[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_TEST_KEY", "sk-REGISTRY-0123456789")
    target = make_config(
        {
            "name": "t",
            "protocol": spec.name,
            "url": "http://h/v1",
            "api_key_env": "REGISTRY_TEST_KEY",
        }
    ).targets[0]
    assert type(target) is spec.model
    request = spec.build_request(target, "[probe n]")
    assert isinstance(request, HTTPRequest)
    header = spec.model.auth_header
    assert request.headers[header] == f"{spec.model.auth_scheme}sk-REGISTRY-0123456789"
    assert b"[probe n]" in request.body


def test_an_auth_header_set_twice_is_a_config_problem_named_after_the_protocol_header() -> None:
    from ttft_exporter.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_config(
            {
                "name": "t",
                "url": "http://h/v1",
                "api_key_file": __file__,
                "headers": {"authorization": "Bearer x"},
            }
        )
    assert "Authorization is set by api_key_env/api_key_file" in str(info.value)


def test_unknown_protocol_names_the_known_ones() -> None:
    # Sorted, whatever protocols other modules add around these.
    with pytest.raises(KeyError, match=r"known: (\S+, )*openai-chat, openai-completions"):
        get_protocol("smtp")
    with pytest.raises(KeyError, match=r"known: (\S+, )*openai-chat"):
        get_prober("smtp")


def test_a_spec_whose_model_answers_to_another_name_is_refused() -> None:
    from ttft_exporter.probes import _checked
    from ttft_exporter.probes.openai import CHAT

    def build(_target: Any, _nonce: str | None) -> HTTPRequest:
        raise AssertionError

    wrong = ProtocolSpec(
        name="openai-chat-v2",
        model=CHAT.model,
        build_request=build,
        new_decoder=CHAT.new_decoder,
        new_framer=CHAT.new_framer,
    )
    with pytest.raises(TypeError, match=r'protocol must be Literal\["openai-chat-v2"\]'):
        _checked(wrong)


def test_defaults_apply_a_protocol_field_only_where_the_protocol_has_it() -> None:
    config = make_config(
        {"name": "a", "url": "http://h/v1"},
        {"name": "b", "url": "http://h/v1", "protocol": "openai-completions"},
        defaults={"include_usage": False, "continuous_usage_stats": True},
    )
    for target in config.targets:
        assert target.include_usage is False  # type: ignore[attr-defined]
        assert target.continuous_usage_stats is True  # type: ignore[attr-defined]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_outside_probes_imports_the_engine() -> None:
    sources = [
        *(ROOT / "ttft_exporter").rglob("*.py"),
        *(ROOT / "benchmarks").rglob("*.py"),
    ]
    probes = ROOT / "ttft_exporter" / "probes"
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if probes not in path.parents
        and any(name.startswith("ttft_exporter.probes.engine") for name in _imports(path))
    ]
    assert offenders == []
