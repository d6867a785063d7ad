"""The README's Prometheus scrape configuration snippets against the real promtool
(issue #9): a user pastes them into prometheus.yml, so each must pass
`promtool check config`, with Prometheus' default global interval (1m) and with the
common 15 s one (a scrape timeout above the interval is an error there)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import require_tool

README = Path(__file__).resolve().parents[2] / "README.md"
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def scrape_snippets() -> list[dict[str, Any]]:
    """Every ```yaml block of the README that holds a `scrape_configs` list."""
    blocks = [yaml.safe_load(b) for b in _YAML_BLOCK.findall(README.read_text(encoding="utf-8"))]
    return [b for b in blocks if isinstance(b, dict) and "scrape_configs" in b]


SNIPPETS = scrape_snippets()


def test_the_readme_has_both_scrape_snippets() -> None:
    jobs = [job["job_name"] for s in SNIPPETS for job in s["scrape_configs"]]
    assert jobs == ["ttft-exporter", "ttft-probe"]


@pytest.mark.parametrize("global_interval", [None, "15s"], ids=["default-global", "global-15s"])
@pytest.mark.parametrize(
    "snippet", SNIPPETS, ids=[s["scrape_configs"][0]["job_name"] for s in SNIPPETS]
)
def test_promtool_checks_the_readme_scrape_config(
    snippet: dict[str, Any], global_interval: str | None, tmp_path: Path
) -> None:
    promtool = require_tool("promtool", "prometheus")
    config = dict(snippet)
    if global_interval is not None:
        config["global"] = {"scrape_interval": global_interval}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        # A cap for a loaded machine, not a speed check.
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
