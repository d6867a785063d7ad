"""Check a Dockerfile against the hadolint rules that matter for this image.

hadolint itself is a Haskell binary that no Debian, PyPI or npm package ships, so this
script implements the subset of its rules (same IDs, same meaning) that applies to a
Python image, plus the project's own rules (prefix `TTFT`) for what Kubernetes'
restricted security profile needs. Usage:

    python deploy/docker/lint_dockerfile.py deploy/docker/Dockerfile

Prints one line per finding (`Dockerfile:LINE RULE message`) and exits 1 if any.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finding", "Instruction", "lint", "main", "parse"]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    line: int
    keyword: str
    args: str


@dataclass(frozen=True)
class Finding:
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"Dockerfile:{self.line} {self.rule} {self.message}"


def parse(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions: comments dropped, `\\` continuations joined."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    return out


_ARG_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _expand(value: str, args: dict[str, str]) -> str:
    return _ARG_REF.sub(lambda m: args.get(m.group(1), m.group(0)), value)


def _is_json_form(args: str) -> bool:
    try:
        value = json.loads(args)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _run_words(args: str) -> list[str]:
    if _is_json_form(args):
        return list(json.loads(args))
    try:
        return shlex.split(args)
    except ValueError:
        return args.split()


def _check_from(ins: Instruction, args: dict[str, str], stages: set[str]) -> list[Finding]:
    words = ins.args.split()
    image = _expand(words[0], args) if words else ""
    if len(words) >= 3 and words[1].upper() == "AS":
        stages.add(words[2].lower())
    if image.lower() in stages or image == "scratch":
        return []
    name = image.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else None
    if "@" not in image and tag is None:
        return [Finding(ins.line, "DL3006", f"always tag the image version explicitly: {image}")]
    if tag == "latest":
        return [Finding(ins.line, "DL3007", "using latest is prone to errors; pin a version")]
    return []


def _check_run(ins: Instruction) -> list[Finding]:
    found: list[Finding] = []
    words = _run_words(ins.args)
    text = " ".join(words)
    if "sudo" in words:
        found.append(Finding(ins.line, "DL3004", "do not use sudo in RUN"))
    if re.search(r"(^|[;&|]\s*)cd\s", text):
        found.append(Finding(ins.line, "DL3003", "use WORKDIR to switch directories"))
    if "|" in text.replace("||", "") and not _is_json_form(ins.args) and "pipefail" not in text:
        found.append(Finding(ins.line, "DL4006", "set -o pipefail before RUN with a pipe"))
    if re.search(r"\bpip3?\b.*\binstall\b|-m pip install", text) and "--no-cache-dir" not in text:
        found.append(Finding(ins.line, "DL3042", "pip install without --no-cache-dir"))
    if "apt-get install" in text:
        if "--no-install-recommends" not in text:
            found.append(
                Finding(ins.line, "DL3015", "apt-get install without --no-install-recommends")
            )
        if "rm -rf /var/lib/apt/lists" not in text:
            found.append(Finding(ins.line, "DL3009", "delete the apt-get lists after installing"))
    return found


def lint(text: str) -> list[Finding]:
    """Every finding for the Dockerfile `text`, in line order."""
    instructions = parse(text)
    found: list[Finding] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    froms = 0
    workdir_set = False
    last_user: Instruction | None = None
    final_entrypoint: Instruction | None = None
    for ins in instructions:
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif ins.keyword == "FROM":
            froms += 1
            workdir_set = False
            last_user = None
            final_entrypoint = None
            found += _check_from(ins, args, stages)
        elif ins.keyword == "RUN":
            found += _check_run(ins)
        elif ins.keyword == "ADD":
            found.append(
                Finding(ins.line, "DL3020", "use COPY instead of ADD for files and folders")
            )
        elif ins.keyword == "WORKDIR":
            workdir_set = True
            if not _expand(ins.args, args).startswith("/"):
                found.append(Finding(ins.line, "DL3000", "use absolute WORKDIR"))
        elif ins.keyword == "COPY":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            if words and not words[-1].startswith("/") and not workdir_set:
                found.append(
                    Finding(ins.line, "DL3045", "COPY to a relative destination without WORKDIR")
                )
        elif ins.keyword in ("CMD", "ENTRYPOINT"):
            if not _is_json_form(ins.args):
                found.append(
                    Finding(ins.line, "DL3025", f"use JSON notation for {ins.keyword} arguments")
                )
            if ins.keyword == "ENTRYPOINT":
                final_entrypoint = ins
        elif ins.keyword == "USER":
            last_user = ins
    last_line = instructions[-1].line if instructions else 1
    if froms < 2:
        found.append(
            Finding(last_line, "TTFT001", "use a multi-stage build (build tools stay out)")
        )
    if last_user is None:
        found.append(Finding(last_line, "DL3002", "the final stage must switch to a non-root USER"))
    else:
        user = last_user.args.split(":", 1)[0]
        if user in ("root", "0"):
            found.append(Finding(last_user.line, "DL3002", "last USER should not be root"))
        elif not re.fullmatch(r"[0-9]+(:[0-9]+)?", last_user.args):
            found.append(
                Finding(
                    last_user.line,
                    "TTFT002",
                    "USER must be a numeric uid:gid so runAsNonRoot can verify it",
                )
            )
    if final_entrypoint is None:
        found.append(Finding(last_line, "TTFT003", "the final stage needs an ENTRYPOINT"))
    return sorted(found, key=lambda f: (f.line, f.rule))


def main(argv: list[str] | None = None) -> int:
    paths = (sys.argv[1:] if argv is None else argv) or ["deploy/docker/Dockerfile"]
    bad = 0
    for path in paths:
        for finding in lint(Path(path).read_text(encoding="utf-8")):
            bad += 1
            print(f"{path}:{finding.line} {finding.rule} {finding.message}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
