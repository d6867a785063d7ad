"""Basic auth for the exporter's own endpoints (`basic_auth_users` of the web config).

bcrypt costs 50-300 ms of CPU per check by design, so checks run in a thread, at most
two at a time, never on the event loop; a successful (user, hash, password) is cached
so a scrape every 15 s costs one hash lookup, not one bcrypt."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping

import bcrypt
from aiohttp import web

from ttft_exporter.selfmetrics import ExporterMetrics

__all__ = ["BasicAuth", "auth_middleware", "headers_on_prepare"]

_CACHE_SIZE = 256
# bcrypt rounds in parallel: a flood of wrong passwords must not take every thread of
# the default executor (which also compresses /metrics).
_PARALLEL_CHECKS = 2


class BasicAuth:
    """Checks `Authorization: Basic ...` against bcrypt hashes."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        # An unknown user is checked against a hash of the same cost, so the answer
        # takes as long as for a known user with a wrong password.
        cost = min((h[4:6] for h in self._users.values()), default=b"10").decode()
        self._dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(int(cost)))
        # Digests of (user, hash, password) that matched: never the password itself.
        self._ok: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._gate = asyncio.Semaphore(_PARALLEL_CHECKS)
        self.bcrypt_calls = 0

    async def check(self, header: str | None) -> bool:
        """True if `header` carries a configured user and its password."""
        credentials = _parse(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", password))).digest()
        if hashed is not None and key in self._ok:
            self._ok.move_to_end(key)
            return True
        async with self._gate:
            self.bcrypt_calls += 1
            matched = await asyncio.to_thread(_checkpw, password, hashed or self._dummy)
        if not matched or hashed is None:
            return False
        self._ok[key] = None
        if len(self._ok) > _CACHE_SIZE:
            self._ok.popitem(last=False)
        return True


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        # bcrypt refuses passwords over 72 bytes: no configured password is one.
        return False


def _parse(header: str | None) -> tuple[str, bytes] | None:
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode(), password
    except UnicodeDecodeError:
        return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(auth: BasicAuth, metrics: ExporterMetrics) -> Callable[..., object]:
    """Every path needs the credentials, as with exporter-toolkit: liveness checks too."""

    @web.middleware
    async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if await auth.check(request.headers.get("Authorization")):
            return await handler(request)
        metrics.http_unauthorized.inc()
        return web.Response(
            status=401,
            text="Unauthorized\n",
            headers={"WWW-Authenticate": 'Basic realm="ttft-exporter", charset="UTF-8"'},
        )

    return require_auth


def headers_on_prepare(
    headers: Mapping[str, str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An `on_response_prepare` hook adding the web config's response headers."""

    async def add(_request: web.Request, response: web.StreamResponse) -> None:
        for name, value in headers.items():
            response.headers[name] = value

    return add
