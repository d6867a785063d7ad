"""Tests for ttft_exporter.webconfig: every validation rule with its exact message, and
TLS and client certificates for real (trustme certificates, the real listener)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml

from tests.conftest import make_config, make_state, served
from ttft_exporter.errors import ConfigError
from ttft_exporter.webconfig import build_server_ssl_context, load_web_config

HASH = "$2b$04$" + "a" * 53


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A server certificate, and a client certificate from a separate CA."""
    base = tmp_path_factory.mktemp("pki")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    client = client_ca.issue_cert("prometheus@example.test")
    files = {
        "server_ca": base / "server-ca.pem",
        "cert": base / "server.pem",
        "key": base / "server-key.pem",
        "client_ca": base / "client-ca.pem",
    }
    server_ca.cert_pem.write_to_path(str(files["server_ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client_ca.cert_pem.write_to_path(str(files["client_ca"]))
    return {"files": files, "client": client, "base": base}


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def tls(pki: dict[str, Any], **fields: Any) -> dict[str, Any]:
    files = pki["files"]
    return {"cert_file": str(files["cert"]), "key_file": str(files["key"]), **fields}


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        ({"tls_server_config": {"cert_file": "c"}}, ["tls_server_config.key_file: Field required"]),
        (
            {"tls_server_config": {"cert_file": "c", "key_file": "k", "cipher_suites": ["x"]}},
            [
                "tls_server_config.cipher_suites: not supported: OpenSSL's defaults for the TLS versions allowed apply"
            ],
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "c",
                    "key_file": "k",
                    "client_auth_type": "RequireAnyClientCert",
                }
            },
            [
                "tls_server_config.client_auth_type: RequireAnyClientCert is not supported: Python's ssl "
                "module verifies every client certificate it asks for; use RequireAndVerifyClientCert"
            ],
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "c",
                    "key_file": "k",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            [
                "tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert"
            ],
        ),
        (
            {"tls_server_config": {"cert_file": "c", "key_file": "k", "client_ca_file": "ca"}},
            [
                "tls_server_config.client_auth_type: client_ca_file is set but client_auth_type is "
                "NoClientCert: client certificates would not be checked"
            ],
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "c",
                    "key_file": "k",
                    "min_version": "TLS13",
                    "max_version": "TLS12",
                }
            },
            ["tls_server_config.min_version: must not be above max_version (TLS12)"],
        ),
        (
            {"tls_server_config": {"cert_file": "c", "key_file": "k", "min_version": "SSL3"}},
            [
                "tls_server_config.min_version: unknown TLS version 'SSL3'; known: TLS10, TLS11, TLS12, TLS13"
            ],
        ),
        (
            {"basic_auth_users": {"alice": "hunter2"}},
            [
                "basic_auth_users: the password of user 'alice' is not a bcrypt hash ($2a$, $2b$ or $2y$, "
                "cost 04-31, 53 characters after it)"
            ],
        ),
        (
            {"basic_auth_users": {"a:b": HASH}},
            ["basic_auth_users: user name 'a:b' must be non-empty and without ':'"],
        ),
        (
            {"http_server_config": {"http2": True}},
            ["http_server_config.http2: HTTP/2 is not supported: the exporter serves HTTP/1.1"],
        ),
        (
            {"http_server_config": {"headers": {"Server": "x"}}},
            [
                "http_server_config.headers: header 'Server' cannot be set; allowed: Strict-Transport-Security, "
                "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy"
            ],
        ),
        ({"tls_config": {}}, ["tls_config: unknown field"]),
        (
            "tls_server_config: [\n",
            ["invalid YAML: line 2 column 1: expected the node content, but found '<stream end>'"],
        ),
        ("- a\n", ["the top level must be a mapping"]),
    ],
    ids=[
        "missing-key",
        "cipher-suites",
        "require-any",
        "ca-missing",
        "ca-without-auth",
        "versions",
        "bad-version",
        "plain-password",
        "colon-user",
        "http2",
        "header",
        "unknown",
        "bad-yaml",
        "not-a-mapping",
    ],
)
def test_invalid_web_configs_name_the_field(
    tmp_path: Path, content: Any, problems: list[str]
) -> None:
    path = write(tmp_path / "web.yml", content)
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    assert [str(p) for p in raised.value.problems] == problems
    # A hash or password never appears in the message.
    assert "hunter2" not in str(raised.value)


def test_unloadable_certificate_is_a_load_error(tmp_path: Path, pki: dict[str, Any]) -> None:
    bad = write(tmp_path / "bad.pem", "not a certificate\n")
    path = write(tmp_path / "web.yml", {"tls_server_config": tls(pki, cert_file=str(bad))})
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    assert str(raised.value.problems[0]).startswith(
        "tls_server_config.cert_file: cannot load certificate and key: "
    )


def test_relative_files_are_relative_to_the_web_config(pki: dict[str, Any]) -> None:
    base = pki["base"]
    path = write(
        base / "web.yml",
        {"tls_server_config": {"cert_file": "server.pem", "key_file": "server-key.pem"}},
    )
    config = load_web_config(path)
    assert config.tls_server_config is not None
    assert config.tls_server_config.cert_file == str(base / "server.pem")


@pytest.fixture
async def https(
    pki: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[int]:
    """The exporter over HTTPS with the web config given by the test's `web` marker."""
    web: dict[str, Any] = request.node.get_closest_marker("web").args[0]
    # Beside the certificates, so that relative names resolve against the file's folder.
    path = write(
        pki["base"] / f"web-{request.node.name}.yml", {"tls_server_config": tls(pki, **web)}
    )
    config = load_web_config(path)
    assert config.tls_server_config is not None
    context = build_server_ssl_context(config.tls_server_config)
    state = make_state(make_config(), web_config=config)
    async with served(state, ssl_context=context) as port:
        yield port


def client_context(pki: dict[str, Any], *, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["files"]["server_ca"]))
    if with_cert:
        pki["client"].configure_cert(context)
    return context


async def get(url: str, **kwargs: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:
        return resp.status, await resp.text()


@pytest.mark.web({})
async def test_https_serves_and_plain_http_is_refused(https: int, pki: dict[str, Any]) -> None:
    status, text = await get(
        f"https://127.0.0.1:{https}/metrics", ssl=client_context(pki, with_cert=False)
    )
    assert status == 200
    assert "ttft_exporter_build_info" in text
    # Plain HTTP on the TLS port is no TLS handshake: the connection is closed.
    with pytest.raises(aiohttp.ClientError):
        await get(f"http://127.0.0.1:{https}/metrics")
    # A client that does not trust the certificate does not get through either.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(f"https://127.0.0.1:{https}/metrics")


@pytest.mark.web({"min_version": "TLS13"})
async def test_min_version_is_enforced(https: int, pki: dict[str, Any]) -> None:
    context = client_context(pki, with_cert=False)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(aiohttp.ClientConnectorError):
        await get(f"https://127.0.0.1:{https}/metrics", ssl=context)


@pytest.mark.web(
    {"client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "client-ca.pem"}
)
async def test_mutual_tls_rejects_a_client_without_certificate(
    https: int, pki: dict[str, Any]
) -> None:
    status, _ = await get(
        f"https://127.0.0.1:{https}/-/healthy", ssl=client_context(pki, with_cert=True)
    )
    assert status == 200
    with pytest.raises(aiohttp.ClientError):
        await get(f"https://127.0.0.1:{https}/-/healthy", ssl=client_context(pki, with_cert=False))
    # A certificate from another CA (the server's own) is rejected as well.
    other = client_context(pki, with_cert=False)
    other.load_cert_chain(str(pki["files"]["cert"]), str(pki["files"]["key"]))
    with pytest.raises(aiohttp.ClientError):
        await get(f"https://127.0.0.1:{https}/-/healthy", ssl=other)
