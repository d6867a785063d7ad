"""A simulator served over TLS with trustme certificates, optionally requiring a client
certificate, recording the client certificate's name of every request."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trustme
from aiohttp import web

from ttft_exporter.sim.llm import LLMSimConfig, ModelBehaviour, create_llm_app

FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)


@dataclass
class TLSSim:
    port: int
    ca: trustme.CA
    ca_file: Path
    client_cert: Path
    client_key: Path
    # The client certificate's subject CN of every request, None without one.
    peers: list[str | None]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1"


async def serve_tls_sim(
    tmp_path: Path, *, require_client_cert: bool, names: tuple[str, ...]
) -> tuple[web.AppRunner, TLSSim]:
    """Serve on 127.0.0.1 with a server certificate for `names`; the CA and a client
    certificate (name `probe-one@example.test`) are written to `tmp_path`."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server_ctx)
    if require_client_cert:
        ca.configure_trust(server_ctx)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("probe-one@example.test")
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client-key.pem"
    client.cert_chain_pems[0].write_to_path(str(client_cert))
    client.private_key_pem.write_to_path(str(client_key))
    peers: list[str | None] = []

    @web.middleware
    async def record_peer(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        peers.append(_subject(cert))
        return await handler(request)

    app = create_llm_app(LLMSimConfig(models={"m": FAST}))
    app.middlewares.append(record_peer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    return runner, TLSSim(runner.addresses[0][1], ca, ca_file, client_cert, client_key, peers)


def _subject(cert: object) -> str | None:
    """The subject alternative name of a peer certificate (trustme puts the identity
    there), None without a certificate."""
    if not isinstance(cert, dict):
        return None
    names = [value for _kind, value in cert.get("subjectAltName", ())]
    return names[0] if names else "?"
