"""`ttft-exporter rules`: prints the committed rule files for the example config, and
needs no secret (the example's API key file does not exist here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttft_exporter.cli import run

ROOT = Path(__file__).resolve().parents[3]


def test_rules_for_the_example_need_no_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not Path("/etc/ttft-exporter/openai-api-key").exists()
    monkeypatch.chdir(ROOT)  # the generated header names the config path as given
    example = "examples/ttft.yml"
    assert run(["rules", "--config.file", example]) == 0
    printed = capsys.readouterr().out
    assert "TTFTLatencyRegression" in printed and "slo:sli_error:ratio_rate5m" in printed
    out = tmp_path / "rules"
    assert run(["rules", "--config.file", example, "--rules.output-dir", str(out)]) == 0
    for name in ("ttft_rules.yaml", "ttft_slos.yaml", "ttft_alerts.yaml"):
        assert (out / name).read_text() == (ROOT / "alerts" / name).read_text()


def test_rules_with_a_bad_config_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("targets: [{name: a}]\n")
    assert run(["rules", "--config.file", str(bad)]) == 1
    assert "targets[0].protocol: protocol is required" in capsys.readouterr().err


def test_rules_flags_override_the_slos_section(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    args = ["rules", "--config.file", "examples/ttft.yml"]
    assert (
        run([*args, "--rules.job", "llm-probes", "--rules.runbook-url", "https://rb/{alertname}"])
        == 0
    )
    printed = capsys.readouterr().out
    assert 'job="llm-probes"' in printed and 'job="ttft-exporter"' not in printed
    assert "runbook_url: https://rb/ttftexporterdown" in printed


def test_rules_format_sloth_prints_specs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert run(["rules", "--config.file", "examples/ttft.yml", "--format", "sloth"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("version: prometheus/v1") == 3
    assert "error_query:" in printed and "[{{.window}}]" in printed
