"""The built wheel carries everything an installed exporter needs: the package data the
demo reads, py.typed, the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("ttft_exporter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "ttft_exporter/py.typed",
        "ttft_exporter/sim/demo.yml",
        "ttft_exporter/probes/framing.py",
        "ttft_exporter/flux/monitor.py",
        "ttft_exporter/sim/firehose.py",
    ):
        assert required in names, required
    assert not any(n.startswith(("tests/", "benchmarks/", "alerts/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "ttft-exporter = ttft_exporter.cli:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
