"""Fixtures for the rule generator tests: the example config, a config with Flux SLOs,
and the real promtool and amtool binaries (a missing one fails: .ci/run installs them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import require_tool
from ttft_exporter.config import Config, load_config, parse_config

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "alerts"
EXAMPLE = ROOT / "examples" / "ttft.yml"
DATA = Path(__file__).resolve().parent / "testdata"
# What the committed files say they were generated from.
EXAMPLE_SOURCE = "examples/ttft.yml"


def load_example(tmp_path: Path) -> Config:
    """examples/ttft.yml as shipped: its key file is beside it, so it loads anywhere."""
    config, _ = load_config(EXAMPLE)
    return config


@pytest.fixture
def example_config(tmp_path: Path) -> Config:
    return load_example(tmp_path)


@pytest.fixture
def flux_config() -> Config:
    path = DATA / "flux-slos.yml"
    return parse_config(yaml.safe_load(path.read_text()), str(path))


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_tool("amtool", "prometheus-alertmanager")
