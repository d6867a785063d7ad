"""Per-target TLS (issue #10 §5) against a real TLS simulator with trustme certificates:
the CA file, a client certificate the server requires (mutual TLS),
`insecure_skip_verify` (and its one warning line at load) and `server_name`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import make_config, make_target, probe_once
from tests.tls_sim import TLSSim, serve_tls_sim
from ttft_exporter.errors import FailureReason
from ttft_exporter.logs import LogfmtFormatter, fields_of


@pytest.fixture
async def tls_sim(tmp_path: Path) -> AsyncIterator[TLSSim]:
    runner, sim = await serve_tls_sim(tmp_path, require_client_cert=False, names=("127.0.0.1",))
    yield sim
    await runner.cleanup()


@pytest.fixture
async def mtls_sim(tmp_path: Path) -> AsyncIterator[TLSSim]:
    runner, sim = await serve_tls_sim(tmp_path, require_client_cert=True, names=("127.0.0.1",))
    yield sim
    await runner.cleanup()


async def test_ca_file_verifies_the_server(tls_sim: TLSSim) -> None:
    ok = await probe_once(make_target(url=tls_sim.url, tls={"ca_file": str(tls_sim.ca_file)}))
    untrusted = await probe_once(make_target(url=tls_sim.url))
    assert ok.success, ok.detail
    assert untrusted.reason is FailureReason.TLS, untrusted.detail
    assert tls_sim.peers == [None]  # only the verified probe got as far as a request


async def test_client_certificate_for_mutual_tls(mtls_sim: TLSSim) -> None:
    tls = {
        "ca_file": str(mtls_sim.ca_file),
        "cert_file": str(mtls_sim.client_cert),
        "key_file": str(mtls_sim.client_key),
    }
    with_cert = await probe_once(make_target(url=mtls_sim.url, tls=tls))
    without = await probe_once(make_target(url=mtls_sim.url, tls={"ca_file": tls["ca_file"]}))

    assert with_cert.success, with_cert.detail
    assert mtls_sim.peers == ["probe-one@example.test"]
    # TLS 1.3: the server's refusal arrives after the client's handshake finished.
    # TLS 1.3: the server's refusal arrives as a reset after the client's handshake.
    assert without.reason is FailureReason.TLS, without.detail
    assert "client certificate" in without.detail


async def test_insecure_skip_verify_probes_an_untrusted_server(
    tls_sim: TLSSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ttft_exporter.config")
    config = make_config(
        {"name": "lab", "url": tls_sim.url, "tls": {"insecure_skip_verify": True}},
        {"name": "prod", "url": tls_sim.url, "tls": {"ca_file": str(tls_sim.ca_file)}},
    )
    warnings = [r for r in caplog.records if r.name == "ttft_exporter.config"]
    assert [(r.levelno, r.getMessage(), fields_of(r)) for r in warnings] == [
        (
            logging.WARNING,
            "TLS certificate verification disabled (tls.insecure_skip_verify)",
            {"target": "lab"},
        )
    ]
    # One line, naming the target, as the default log format writes it.
    line = LogfmtFormatter().format(warnings[0])
    assert "\n" not in line and "target=lab" in line
    result = await probe_once(config.targets[0])
    assert result.success, result.detail


async def test_server_name_is_verified_instead_of_the_url_host(
    tmp_path: Path,
) -> None:
    runner, sim = await serve_tls_sim(tmp_path, require_client_cert=False, names=("llm.internal",))
    try:
        tls = {"ca_file": str(sim.ca_file)}
        mismatch = await probe_once(make_target(url=sim.url, tls=tls))
        named = await probe_once(
            make_target(url=sim.url, tls={**tls, "server_name": "llm.internal"})
        )
    finally:
        await runner.cleanup()
    assert mismatch.reason is FailureReason.TLS, mismatch.detail
    assert named.success, named.detail
