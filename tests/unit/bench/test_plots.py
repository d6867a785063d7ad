"""Plots: PNG and SVG files that open as images of the documented size."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.unit.bench.factory import results_of, spread_records

pytest.importorskip("matplotlib", reason="plots need the `bench` extra (matplotlib)")

from ttft_exporter.bench.plots import FIGSIZE, PLOT_DPI, write_plots


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plots_are_images_of_the_right_size(tmp_path: Path) -> None:
    records = (
        spread_records(0, 10) + spread_records(1, 10, ttft0=0.2) + spread_records(2, 10, ttft0=0.5)
    )
    written = write_plots(results_of(records, [1, 8, 64]), tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["latency.png", "latency.svg", "throughput.png", "throughput.svg"]
    want = (round(FIGSIZE[0] * PLOT_DPI), round(FIGSIZE[1] * PLOT_DPI))
    for png in tmp_path.glob("*.png"):
        assert _png_size(png) == want
    for svg in tmp_path.glob("*.svg"):
        root = ET.fromstring(svg.read_bytes())  # noqa: S314 - our own file
        assert root.tag.endswith("svg")
        # matplotlib sizes SVGs in points: 72 per inch.
        assert root.attrib["width"] == f"{FIGSIZE[0] * 72:g}pt"
        assert root.attrib["height"] == f"{FIGSIZE[1] * 72:g}pt"
