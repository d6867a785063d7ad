"""Tests for ttft_exporter.cli: exit codes and messages of `run()`, and one real process
that serves, reloads on SIGHUP and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import SimFactory
from tests.helpers import free_port
from ttft_exporter import __version__
from ttft_exporter.cli import parse_listen, run
from ttft_exporter.probes import PROTOCOL_NAMES
from ttft_exporter.shard import hashmod
from ttft_exporter.sim.llm import ModelBehaviour

# Every protocol name, in registry order, as an unknown protocol's message lists them.
KNOWN = ", ".join(PROTOCOL_NAMES)

REPO = Path(__file__).resolve().parents[2]
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def target(name: str, url: str = "http://127.0.0.1:9/v1", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "openai-chat",
        "url": url,
        "model": "m",
        "prompt": "hi",
        "interval": "10s",
        "timeout": "5s",
        **fields,
    }


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


# --config.check


def test_config_check_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "good.yml", {"targets": [target("a"), target("b")]})

    code = run(["--config.check", "--config.file", str(path)])

    out, err = capsys.readouterr()
    assert code == 0
    assert out == f"config file {path} is ok: 2 targets\n"
    assert err == ""


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        (
            {
                "concurrency": 0,
                "targets": [
                    target("a", interval="1s", timeout="2s"),
                    {**target("b"), "protocol": "grpc"},
                    target("a", url="ftp://x", labels={"job": "x"}, bogus=1),
                ],
            },
            [
                "concurrency: must be greater than or equal to 1",
                "targets[0].timeout: must be below interval (1s)",
                f"targets[1].protocol: unknown protocol 'grpc'; known: {KNOWN}",
                # File order (yaml.safe_dump sorts the keys).
                "targets[2].bogus: unknown field",
                "targets[2].labels.job: reserved label name (set by the exporter or by Prometheus)",
                "targets[2].name: duplicate target name 'a'",
                "targets[2].url: must be an absolute http:// or https:// URL",
            ],
        ),
        (
            "targets:\n  - name: a\n   url: x\n",
            ["invalid YAML: line 3 column 4: did not find expected '-' indicator"],
        ),
        ("- just\n- a list\n", ["the top level must be a mapping"]),
        (
            {"targets": [target("a", api_key_env="TTFT_TEST_UNSET_VARIABLE")]},
            [
                "targets[0].api_key_env: environment variable TTFT_TEST_UNSET_VARIABLE "
                "is not set or empty"
            ],
        ),
    ],
    ids=["every-problem", "bad-yaml", "not-a-mapping", "unset-env"],
)
def test_config_check_rejects_a_bad_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    content: Any,
    problems: list[str],
) -> None:
    monkeypatch.delenv("TTFT_TEST_UNSET_VARIABLE", raising=False)
    path = write(tmp_path / "bad.yml", content)

    code = run(["--config.check", "--config.file", str(path)])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    lines = "".join(f"  {p}\n" for p in problems)
    assert err == f"ttft-exporter: invalid configuration {path}:\n{lines}"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("invalid-duplicate-key.yml", "targets[0].url: duplicate key (line 7)"),
        (
            "invalid-yaml-bomb.yml",
            "targets[0].extra_body.g: expands to more than 1000000 YAML nodes through aliases "
            "(line 15)",
        ),
        ("invalid-api-key-file-device.yml", "targets[0].api_key_file: not a regular file"),
        ("oversize", "cannot read file: larger than 4 MiB (30000000 bytes)"),
    ],
    ids=["duplicate-key", "yaml-bomb", "dev-zero-key", "oversize"],
)
def test_config_check_rejects_hostile_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, problem: str
) -> None:
    if name == "oversize":
        path = tmp_path / "big.yml"
        with path.open("wb") as file:
            file.truncate(30_000_000)  # sparse: no disk used
    else:
        path = REPO / "tests" / "testdata" / "config" / name

    code = run(["--config.check", "--config.file", str(path)])

    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == f"ttft-exporter: invalid configuration {path}:\n  {problem}\n"


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere.yml"

    code = run(["--config.check", "--config.file", str(path)])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err == (
        f"ttft-exporter: invalid configuration {path}:\n"
        "  cannot read file: No such file or directory\n"
    )


def test_config_check_loads_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write(tmp_path / "ca.pem", "not a certificate\n")
    tls: dict[str, Any] = {"url": "https://127.0.0.1:9/v1", "tls": {"ca_file": str(bundle)}}
    path = write(tmp_path / "tls.yml", {"targets": [target("a"), target("b", **tls)]})

    code = run(["--config.check", "--config.file", str(path)])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith(
        f"ttft-exporter: invalid configuration {path}:\n"
        "  targets[1].tls: cannot load TLS files: [X509: NO_CERTIFICATE_OR_CRL_FOUND] "
    )
    assert err.count("\n") == 2


# config-schema


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _types(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "type" in node and isinstance(node["type"], str | list):
            yield from [node["type"]] if isinstance(node["type"], str) else node["type"]
        for key, value in node.items():
            if key != "properties":
                yield from _types(value)
            else:
                for prop in value.values():
                    yield from _types(prop)
    elif isinstance(node, list):
        for item in node:
            yield from _types(item)


def test_config_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config-schema"]) == 0

    out, err = capsys.readouterr()
    schema = json.loads(out)
    assert err == ""
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    targets = schema["properties"]["targets"]
    assert targets["type"] == "array"
    assert targets["items"]["discriminator"]["propertyName"] == "protocol"
    assert set(targets["items"]["discriminator"]["mapping"]) == set(PROTOCOL_NAMES)
    # Structurally sound: every reference resolves, every type is a JSON Schema type.
    refs = set(_refs(schema))
    assert "#/$defs/OpenAIChatTarget" in refs
    for ref in refs:
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schema["$defs"]
    assert set(_types(schema)) <= JSON_TYPES
    chat = schema["$defs"]["OpenAIChatTarget"]
    assert {"name", "url", "model", "protocol"} <= set(chat["required"])
    assert set(chat["required"]) <= set(chat["properties"])


# Flags


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--web.listen-address=nope", "invalid listen address 'nope': want host:port or :port"),
        (
            "--web.listen-address=127.0.0.1",
            "invalid listen address '127.0.0.1': want host:port or :port",
        ),
        (
            "--web.listen-address=127.0.0.1:",
            "invalid listen address '127.0.0.1:': want host:port or :port",
        ),
        ("--web.listen-address=:http", "invalid listen address ':http': want host:port or :port"),
        ("--web.listen-address=:-1", "invalid listen address ':-1': want host:port or :port"),
        (
            "--web.listen-address=127.0.0.1:99999",
            "invalid listen address '127.0.0.1:99999': port must be 0-65535",
        ),
        (
            "--probe.timeout-offset=soon",
            "invalid duration 'soon': use a number of seconds or a string such as 250ms, 5s, 1m",
        ),
    ],
    ids=["word", "no-port", "empty-port", "named-port", "negative", "too-big", "offset"],
)
def test_bad_flag_values_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    path = write(tmp_path / "good.yml", {"targets": [target("a")]})

    code = run([flag, "--config.file", str(path)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err == f"ttft-exporter: {message}\n"


@pytest.mark.parametrize(
    "argv", [["--log.level=loud"], ["--no-such-flag"], ["serve"]], ids=["choice", "flag", "command"]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: ttft-exporter ")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":10099", ("0.0.0.0", 10099)),  # noqa: S104 - the documented default
        ("127.0.0.1:9", ("127.0.0.1", 9)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_parse_listen(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen(address) == expected


# A real process: serve, SIGHUP, SIGTERM


async def _poll(
    session: aiohttp.ClientSession, url: str, wanted: str, proc: asyncio.subprocess.Process
) -> str:
    """GET `url` until its body contains `wanted` (10 s cap); fail early if the process died."""
    deadline = time.monotonic() + 10.0
    while True:
        if proc.returncode is not None:
            pytest.fail(f"the exporter exited with {proc.returncode}")
        try:
            async with session.get(url) as resp:
                body = await resp.text()
                if resp.status == 200 and wanted in body:
                    return body
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {wanted!r} at {url}")
        await asyncio.sleep(0.05)


async def test_process_serves_reloads_on_sighup_and_stops_on_sigterm(
    make_llm_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=2))
    config = tmp_path / "ttft.yml"
    write(config, {"targets": [target("a", url=f"{sim.url}/v1")]})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stdout = (tmp_path / "stdout").open("wb")
    stderr = (tmp_path / "stderr").open("wb")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ttft_exporter",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=stdout,
        stderr=stderr,
        cwd=tmp_path,
        env=env,
    )
    try:
        async with aiohttp.ClientSession() as session:
            assert await _poll(session, f"{base}/-/ready", "Ready", proc) == "Ready\n"
            # Series exist from the start (a probe would wait for the start jitter).
            await _poll(session, f"{base}/metrics", 'ttft_probe_requests_total{target="a"', proc)

            write(config, {"targets": [target("a", url=f"{sim.url}/v1"), target("b")]})
            proc.send_signal(signal.SIGHUP)
            metrics = await _poll(
                session, f"{base}/metrics", 'ttft_probe_requests_total{target="b"', proc
            )
            assert "ttft_exporter_config_last_reload_successful 1.0\n" in metrics
            assert 'ttft_probe_requests_total{target="a"' in metrics

            # A broken file on SIGHUP: the process keeps running with the old config.
            write(config, "targets: [\n")
            proc.send_signal(signal.SIGHUP)
            metrics = await _poll(
                session, f"{base}/metrics", "ttft_exporter_config_last_reload_successful 0.0", proc
            )
            assert 'ttft_probe_requests_total{target="b"' in metrics

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=5.0)
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        stdout.close()
        stderr.close()

    err = (tmp_path / "stderr").read_text(encoding="utf-8")
    assert code == 0, err
    assert f"ttft-exporter {__version__}: metrics at {base}/metrics\n" in err
    assert 'msg="configuration reloaded" targets=2' in err
    assert 'msg="reload failed; keeping the running configuration"' in err
    assert "Traceback" not in err
    assert (tmp_path / "stdout").read_text(encoding="utf-8") == ""


# The exporter's own server: flags, --web.config.file, a real process under a low
# open-files limit (issue #8 items 9 and 16)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--web.max-connections=0", "--web.max-connections must be at least 1"),
        (
            "--web.read-header-timeout=0s",
            "--web.read-header-timeout and --web.idle-timeout must be positive",
        ),
        (
            "--web.idle-timeout=soon",
            "invalid duration 'soon': use a number of seconds or a string such as 250ms, 5s, 1m",
        ),
        ("--probe.adhoc-concurrency=0", "--probe.adhoc-concurrency must be at least 1"),
    ],
    ids=["max-connections", "header-timeout", "idle-timeout", "adhoc"],
)
def test_bad_server_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    path = write(tmp_path / "good.yml", {"targets": [target("a")]})
    assert run([flag, "--config.file", str(path)]) == 2
    assert capsys.readouterr().err == f"ttft-exporter: {message}\n"


def test_config_check_validates_the_web_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "good.yml", {"targets": [target("a")]})
    web = write(tmp_path / "web.yml", {"basic_auth_users": {"alice": "plain"}})

    code = run(["--config.check", "--config.file", str(config), "--web.config.file", str(web)])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err == (
        f"ttft-exporter: invalid configuration {web}:\n"
        "  basic_auth_users: the password of user 'alice' is not a bcrypt hash ($2a$, $2b$ or "
        "$2y$, cost 04-31, 53 characters after it)\n"
    )
    write(web, {"basic_auth_users": {"alice": "$2b$04$" + "a" * 53}})
    assert run(["--config.check", "--config.file", str(config), "--web.config.file", str(web)]) == 0
    assert (
        capsys.readouterr().out
        == f"config file {config} is ok: 1 targets\nweb config file {web} is ok\n"
    )


def _low_fd_limit(limit: int) -> Any:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    ("max_connections", "fd_limit", "fault"),
    # cap-below-limit: 1024 descriptors hold the cap, all 300 sockets of the flood and
    # the process at once, so no accept can fail however asyncio batches its accepts (it
    # accepts up to a 128-socket backlog per wake-up before the guard refuses any, and a
    # starved loop can hold several batches: with 100 under 256 it hit EMFILE 3 runs in
    # 20). cap-above-limit: the reported incident, 256 descriptors and a cap above them.
    [(64, 1024, "none"), (400, 256, "emfile")],
    ids=["cap-below-limit", "cap-above-limit"],
)
async def test_a_real_process_survives_idle_connections_under_a_low_fd_limit(
    make_llm_sim: SimFactory, tmp_path: Path, max_connections: int, fd_limit: int, fault: str
) -> None:
    # The reported incident at a smaller scale: a low open-files limit, 300 idle
    # sockets. Before: asyncio logged every failed accept with a traceback (4 MB in 8 s)
    # and the healthy target's probes failed with "Too many open files".
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=2))
    config = write(
        tmp_path / "ttft.yml",
        {"targets": [target("a", url=f"{sim.url}/v1", interval="0.3s", timeout="0.25s")]},
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stderr = (tmp_path / "stderr").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ttft_exporter",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.max-connections={max_connections}",
        # Every socket comes from 127.0.0.1: the global cap is what is tested here
        # (the per-client share in test_listener.py).
        f"--web.max-connections-per-client={max_connections}",
        "--web.read-header-timeout=2s",
        stdout=stderr,
        stderr=stderr,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=_low_fd_limit(fd_limit),
    )
    socks: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as session:
            await _poll(session, f"{base}/-/ready", "Ready", proc)
            for _ in range(300):
                sock = socket.socket()
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", port))
                socks.append(sock)
            # /metrics answers once the idle sockets are cut (header deadline: 2 s).
            dropped = 'ttft_exporter_http_connections_dropped_total{reason="limit"}'
            if fault == "none":
                # About 236 refused at accept (our own scrapes may take a slot or lose one).
                metrics = await _poll_until(
                    session, f"{base}/metrics", lambda t: _sample(t, dropped) >= 226, proc
                )
                assert "ttft_exporter_http_accept_errors_total 0.0" in metrics
                before = _sample(
                    metrics,
                    'ttft_probe_requests_total{target="a",model="m",protocol="openai-chat",scenario="default",outcome="success"}',
                )
                text = await _poll_until(
                    session,
                    f"{base}/metrics",
                    lambda t: (
                        _sample(
                            t,
                            'ttft_probe_requests_total{target="a",model="m",protocol="openai-chat",scenario="default",outcome="success"}',
                        )
                        >= before + 3
                    ),
                    proc,
                )
                assert 'reason="connect"} 0.0' in text
            else:
                # The cap is above what the descriptors allow: accepts fail for real.
                text = await _poll_until(
                    session,
                    f"{base}/metrics",
                    lambda t: _sample(t, "ttft_exporter_http_accept_errors_total") > 0,
                    proc,
                )
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=10.0)
    finally:
        for sock in socks:
            sock.close()
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        stderr.close()
    err = (tmp_path / "stderr").read_text(encoding="utf-8")
    assert code == 0, err
    assert err.count("socket.accept() out of system resource") == 0
    if fault == "none":
        # A handful of lines, whatever the number of connections.
        assert "Traceback" not in err
        assert len(err) < 4000, err
    else:
        # Out of descriptors everything fails (probes, a request handler's traceback),
        # but the thousands of failed accepts make one line, not megabytes.
        assert len(err) < 20000, err
        assert err.count("cannot accept connections: out of file descriptors or memory") == 1
        assert "--web.max-connections leaves too few of the open-files limit for probes" in err


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ")[-1])
    return 0.0


async def _poll_until(
    session: aiohttp.ClientSession, url: str, check: Any, proc: asyncio.subprocess.Process
) -> str:
    """GET `url` until `check(body)` holds (20 s cap, generous for a loaded machine)."""
    deadline = time.monotonic() + 20.0
    while True:
        if proc.returncode is not None:
            pytest.fail(f"the exporter exited with {proc.returncode}")
        try:
            async with session.get(url) as resp:
                body = await resp.text()
                if resp.status == 200 and check(body):
                    return body
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting at {url}")
        await asyncio.sleep(0.1)


# A port already in use (issue #9 section 5)


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_port_in_use_is_one_line_and_exit_1_before_anything_starts(
    tmp_path: Path, command: str
) -> None:
    """A real process against a port a real socket holds: one line on stderr, exit 1,
    no "started target" or "serving" before it (the probe loops start after the bind)."""
    config = write(tmp_path / "ttft.yml", {"targets": [target("a")]})
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ttft_exporter",
                command,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            # A cap for a loaded machine, not a speed check: it exits at once.
            timeout=60,
            check=False,
        )
    prog = "ttft-exporter" if command == "run" else "ttft-exporter demo"
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"{prog}: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert proc.stdout == ""


# The shipped examples (issue #9 section 5)


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yml")), ids=lambda p: p.name)
def test_the_documented_config_check_passes_on_every_shipped_example(
    example: Path, tmp_path: Path
) -> None:
    """The command the example's header documents, run for real on the file as shipped,
    from another directory, with no key in the environment (a fresh machine)."""
    assert "--config.check" in example.read_text(encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "FLUX_TOKEN")}
    proc = subprocess.run(
        [sys.executable, "-m", "ttft_exporter", "--config.check", f"--config.file={example}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        # A cap for a loaded machine, not a speed check.
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"config file {example} is ok: ")
    assert proc.stderr == ""


# --shard.index / --shard.count


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shard.index=1"], "--shard.index and --shard.count go together: set both or neither"),
        (["--shard.count=2"], "--shard.index and --shard.count go together: set both or neither"),
        (
            ["--shard.index=2", "--shard.count=2"],
            "--shard.index/--shard.count: shard index must be between 0 and 1, not 2",
        ),
        (
            ["--shard.index=0", "--shard.count=0"],
            "--shard.index/--shard.count: shard count must be between 1 and 10000, not 0",
        ),
    ],
    ids=["index-alone", "count-alone", "index-too-big", "no-shards"],
)
def test_bad_shard_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    path = write(tmp_path / "good.yml", {"targets": [target("a")]})

    code = run([*argv, "--config.check", "--config.file", str(path)])

    assert code == 2
    assert capsys.readouterr().err == f"ttft-exporter: {message}\n"


def test_config_check_says_how_many_targets_the_shard_owns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"t{i}" for i in range(10)]
    path = write(tmp_path / "good.yml", {"targets": [target(n) for n in names]})
    mine = [n for n in names if hashmod(n, 3) == 2]

    code = run(["--shard.index=2", "--shard.count=3", "--config.check", "--config.file", str(path)])

    assert code == 0
    assert capsys.readouterr().out == (
        f"config file {path} is ok: 10 targets, {len(mine)} on shard 2/3\n"
    )
