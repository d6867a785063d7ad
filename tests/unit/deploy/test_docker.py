"""The container image, tested without a Docker engine (none runs here): the Dockerfile
passes the hadolint rules of `deploy/docker/lint_dockerfile.py`, and its install step
(`deploy/docker/install.sh`, the very script the build stage runs) builds a virtualenv
from exactly the files the Dockerfile copies, in which the exporter then runs as the
image's numeric non-root user, probes a simulator and writes nothing to its install tree
(the image's root filesystem is read-only)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest

from tests.conftest import SimFactory
from tests.helpers import free_port, poll
from ttft_exporter.cli import DEFAULT_PORT
from ttft_exporter.sim.llm import ModelBehaviour

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
IMAGE_UID = 65532


def _load_linter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lint_dockerfile", DOCKER / "lint_dockerfile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


linter = _load_linter()


def _rules(text: str) -> set[str]:
    return {finding.rule for finding in linter.lint(text)}


def test_dockerfile_passes_the_lint_rules() -> None:
    findings = [str(f) for f in linter.lint(DOCKERFILE.read_text(encoding="utf-8"))]
    assert findings == []


def test_lint_script_exits_nonzero_on_a_finding(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install x\nCMD ttft-exporter\n", encoding="utf-8")
    script = DOCKER / "lint_dockerfile.py"
    done = subprocess.run(
        [sys.executable, str(script), str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "DL3006" in done.stdout
    ok = subprocess.run(
        [sys.executable, str(script), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (ok.returncode, ok.stdout) == (0, "")


GOOD = (
    "ARG BASE=python:3.11-slim\n"
    "FROM ${BASE} AS build\nWORKDIR /src\nCOPY . .\n"
    'RUN ["pip", "install", "--no-cache-dir", "."]\n'
    "FROM ${BASE}\nCOPY --from=build /opt /opt\nUSER 65532:65532\n"
    'ENTRYPOINT ["ttft-exporter"]\n'
)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (("ARG BASE=python:3.11-slim", "ARG BASE=python"), "DL3006"),
        (("ARG BASE=python:3.11-slim", "ARG BASE=python:latest"), "DL3007"),
        (("USER 65532:65532", "USER root"), "DL3002"),
        (("USER 65532:65532\n", ""), "DL3002"),
        (("USER 65532:65532", "USER nonroot"), "TTFT002"),
        (('ENTRYPOINT ["ttft-exporter"]', "ENTRYPOINT ttft-exporter"), "DL3025"),
        (('ENTRYPOINT ["ttft-exporter"]\n', ""), "TTFT003"),
        (('"--no-cache-dir", ', ""), "DL3042"),
        (("COPY . .", "ADD . ."), "DL3020"),
        (("WORKDIR /src", "WORKDIR src"), "DL3000"),
        (("WORKDIR /src\n", ""), "DL3045"),
        (("FROM ${BASE}\n", ""), "TTFT001"),
        (
            ('RUN ["pip", "install", "--no-cache-dir", "."]', "RUN curl -s x | sh"),
            "DL4006",
        ),
        (('RUN ["pip", "install", "--no-cache-dir", "."]', "RUN cd /x && make"), "DL3003"),
        (('RUN ["pip", "install", "--no-cache-dir", "."]', "RUN sudo make"), "DL3004"),
        (
            (
                'RUN ["pip", "install", "--no-cache-dir", "."]',
                "RUN apt-get update && \\\n  apt-get install -y curl",
            ),
            "DL3015",
        ),
        (
            (
                'RUN ["pip", "install", "--no-cache-dir", "."]',
                "RUN apt-get install -y --no-install-recommends curl",
            ),
            "DL3009",
        ),
    ],
)
def test_each_rule_fires_on_its_mistake(change: tuple[str, str], rule: str) -> None:
    assert _rules(GOOD) == set()
    old, new = change
    assert old in GOOD
    assert rule in _rules(GOOD.replace(old, new, 1))


def test_image_runs_the_exporter_on_its_documented_port() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert f"EXPOSE {DEFAULT_PORT}" in text
    assert 'ENTRYPOINT ["ttft-exporter"]' in text
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in text


def _build_context_copies() -> list[str]:
    """The sources the build stage COPYs from the build context (not `--from=` stages)."""
    build_stage = DOCKERFILE.read_text(encoding="utf-8").split("\nFROM ", 2)[1]
    sources: list[str] = []
    for line in build_stage.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the image's uid can read: pytest's tmp_path is private to root."""
    path = Path(tempfile.mkdtemp(prefix="ttft-image-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(tree)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in tree.rglob("*")
        if not p.is_symlink()
    }


def _readable_by_all(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            path.chmod(mode | stat.S_IRGRP | stat.S_IROTH | (0o055 if path.is_dir() else 0))


def _as_image_user() -> list[str]:
    """Run as the image's uid when we can (CI runs as root), else as ourselves."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "util-linux's setpriv is part of every Debian install"
    return [
        setpriv,
        f"--reuid={IMAGE_UID}",
        f"--regid={IMAGE_UID}",
        "--clear-groups",
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_install_step_builds_an_exporter_that_runs_unprivileged(
    shared_dir: Path, make_llm_sim: SimFactory
) -> None:
    context = shared_dir / "context"
    context.mkdir()
    for source in _build_context_copies():
        if source.startswith("deploy/"):
            continue  # the install script itself, run from the repository below
        src = ROOT / source.rstrip("/")
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    prefix = shared_dir / "opt" / "ttft-exporter"
    # Bounded by the pip install from the package index (tens of seconds on CI).
    install = await asyncio.create_subprocess_exec(
        "/bin/sh",
        str(DOCKER / "install.sh"),
        str(prefix),
        str(context),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await install.communicate()
    assert install.returncode == 0, output.decode(errors="replace")[-4000:]
    assert not (prefix / "bin" / "pip").exists(), "build tools must not reach the image"
    _readable_by_all(shared_dir)

    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=2))
    config = shared_dir / "config.yml"
    config.write_text(
        f"targets:\n  - name: sim\n    url: {sim.url}/v1\n    model: m\n"
        "    protocol: openai-chat\n    interval: 2s\n    timeout: 1s\n    prompt: hi\n",
        encoding="utf-8",
    )
    config.chmod(0o644)
    before = _snapshot(prefix)
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/"}
    check = subprocess.run(
        [*_as_image_user(), str(prefix / "bin" / "ttft-exporter"), "--config.check",
         f"--config.file={config}"],
        capture_output=True, text=True, env=env, cwd="/", check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    # The bench Job runs the same image: its load tester has uvloop.
    out = shared_dir / "bench-out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)  # past the umask: the image user writes here
    # Not subprocess.run: the simulator it probes runs on this test's loop.
    bench = await asyncio.create_subprocess_exec(
        *_as_image_user(), str(prefix / "bin" / "ttft-exporter"), "bench", "--url",
        f"{sim.url}/v1", "--model", "m", "--requests", "2", "--no-plots",
        "--event-loop", "uvloop", "--output-dir", str(out),
        env=env, cwd="/", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        # Generous: interpreter start-up and two requests on a loaded machine.
        _, bench_err = await asyncio.wait_for(bench.communicate(), timeout=120)
    finally:
        if bench.returncode is None:  # timed out: no stray process past the test
            bench.kill()
            await bench.wait()
    assert bench.returncode == 0, bench_err.decode(errors="replace")[-4000:]
    assert "event loop uvloop" in bench_err.decode()

    port = free_port()
    exporter = await asyncio.create_subprocess_exec(
        *_as_image_user(),
        str(prefix / "bin" / "ttft-exporter"),
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        env=env,
        cwd="/",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as client:

            async def probed() -> bool:
                try:
                    async with client.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        text = await resp.text()
                except aiohttp.ClientError:
                    return False
                return (
                    re.search(r'^ttft_probe_success\{[^}]*target="sim"[^}]*\} 1', text, re.M)
                    is not None
                )

            # Generous: interpreter start-up plus one probe on a loaded 2-core machine.
            await poll(probed, "a successful probe from the installed exporter", cap=60)
    finally:
        exporter.terminate()
        _, stderr = await exporter.communicate()
    assert exporter.returncode == 0, stderr.decode(errors="replace")[-4000:]
    assert _snapshot(prefix) == before, "the exporter wrote into its install tree"
