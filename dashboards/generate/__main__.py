"""`python -m dashboards.generate [--check]`: write (or compare) dashboards/*.json and
dashboards/runbook-panels.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards.generate import DASHBOARDS
from dashboards.generate.common import encode
from dashboards.generate.runbooks import runbook_panels

OUT = Path(__file__).resolve().parents[1]
RUNBOOK_PANELS = "runbook-panels.json"


def render() -> dict[str, str]:
    """Every generated file's name (in dashboards/) and exact text."""
    files: dict[str, str] = {}
    panel_ids: dict[str, dict[str, int]] = {}
    for name, build in DASHBOARDS.items():
        board = build()
        files[name] = encode(board.build())
        panel_ids[board.uid] = board.panel_ids
    files[RUNBOOK_PANELS] = encode(runbook_panels(panel_ids))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate")
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write(f"stale, run `make dashboards`: {', '.join(stale)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
