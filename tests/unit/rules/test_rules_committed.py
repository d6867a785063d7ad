"""The committed alerts/*.yaml are exactly the generator's output for examples/ttft.yml,
and `ttft-exporter rules` prints and writes the same thing.

After changing the generator or the example's `slos:`, regenerate with
    TTFT_UPDATE_RULES=1 .venv/bin/python -m pytest tests/unit/rules/test_rules_committed.py
(the example's API key file does not exist outside a deployment, so the CLI cannot load
it as is; this test substitutes a temporary one).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.unit.rules.conftest import ALERTS, EXAMPLE, EXAMPLE_SOURCE
from ttft_exporter.cli import run
from ttft_exporter.config import Config
from ttft_exporter.rules import RULE_FILE_NAMES, render_combined, render_rule_files


def test_committed_rules_are_the_generated_ones(example_config: Config) -> None:
    generated = render_rule_files(example_config, source=EXAMPLE_SOURCE)
    if os.environ.get("TTFT_UPDATE_RULES") == "1":
        for name, text in generated.items():
            (ALERTS / name).write_text(text, encoding="utf-8")
    assert sorted(p.name for p in ALERTS.glob("*.yaml")) == sorted(RULE_FILE_NAMES)
    for name, text in generated.items():
        assert (ALERTS / name).read_text(encoding="utf-8") == text, (
            f"alerts/{name} is out of date: regenerate it (see this module's docstring)"
        )


def _example_file(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    key.write_text("sk-example\n")
    path = tmp_path / "ttft.yml"
    path.write_text(
        EXAMPLE.read_text().replace("/etc/ttft-exporter/openai-api-key", str(key)),
        encoding="utf-8",
    )
    return path


def test_cli_prints_every_group(
    tmp_path: Path, example_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _example_file(tmp_path)
    assert run(["rules", f"--config.file={path}"]) == 0
    out = capsys.readouterr().out
    assert out == render_combined(example_config, source=str(path))
    groups = [g["name"] for g in yaml.safe_load(out)["groups"]]
    expected = []
    for name in RULE_FILE_NAMES:
        expected += [g["name"] for g in yaml.safe_load((ALERTS / name).read_text())["groups"]]
    assert groups == expected


def test_cli_writes_one_file_per_family(tmp_path: Path) -> None:
    path = _example_file(tmp_path)
    out = tmp_path / "out"
    assert run(["rules", f"--config.file={path}", f"--rules.output-dir={out}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(RULE_FILE_NAMES)
    for name in RULE_FILE_NAMES:
        # Only the header names a different source file.
        assert (out / name).read_text().replace(str(path), EXAMPLE_SOURCE) == (
            ALERTS / name
        ).read_text()


def test_cli_reports_a_selector_that_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ttft.yml"
    path.write_text(
        "targets:\n"
        "  - {name: a, protocol: openai-chat, url: 'http://127.0.0.1:1/v1', model: m, prompt: p}\n"
        "slos:\n"
        "  targets:\n"
        "    - selector: {name: typo}\n"
        "      availability: {objective: 0.99}\n"
    )
    assert run(["rules", f"--config.file={path}"]) == 1
    assert capsys.readouterr().err == (
        "ttft-exporter: slos.targets[0].selector (name='typo') matches no configured target\n"
    )


def test_cli_reports_an_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ttft.yml"
    path.write_text("slos:\n  targets:\n    - selector: {}\n      availability: {objective: 1.5}\n")
    assert run(["rules", f"--config.file={path}"]) == 1
    err = capsys.readouterr().err
    assert "slos.targets[0].availability.objective" in err
    assert "between 0 and 1" in err
