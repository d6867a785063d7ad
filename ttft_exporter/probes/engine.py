"""The streaming HTTP probe engine shared by every protocol: it sends the request a
protocol built, stamps bytes the moment they arrive, feeds the protocol's framer and
decoder and turns whatever goes wrong into a bounded failure reason. It knows no
protocol and no metric names. Only protocol modules under `probes/` import it."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import secrets as _secrets
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from yarl import URL

from ttft_exporter.clock import Clock
from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import (
    DEFAULT_INTER_TOKEN_BUCKETS,
    HTTPRequest,
    PreparedProbe,
    Prober,
    ProbeResult,
    ProtocolSpec,
    StreamDecoder,
    StreamTimeline,
    finish_reason_label,
)
from ttft_exporter.probes.framing import BodySniffer, Framer, SSEFramer
from ttft_exporter.probes.session import PhaseRecorder, recording_phases
from ttft_exporter.redact import Redactor
from ttft_exporter.targets import DEFAULT_MAX_RESPONSE_BYTES, TargetBase

__all__ = ["StreamProbe", "make_nonce", "stream_prober"]

_NS = 1e-9
_DETAIL_LIMIT = 300  # characters of a failure detail
_EXCERPT_LIMIT = 200  # characters of response text inside a detail
_LOG_LINE_LIMIT = 1000
# Bytes parsed between two yields to the event loop when a read is large.
_SLICE = 32 << 10
# The redirects a probe follows (with follow_redirects); the others are failures.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Headers that carry credentials whatever their value: dropped when a redirect leaves
# for another host (with every header holding one of the target's secrets).
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-goog-api-key"}
)


def make_nonce() -> str:
    """A short random prefix that makes every probe prompt unique (cache busting)."""
    return f"[probe {_secrets.token_hex(6)}]"


class StreamProbe:
    """One streaming request and its measurements. `run()` returns the successful
    result or raises; `failure(exc)` turns whatever was raised (including the
    TimeoutError of the caller's deadline) into a failed result with the facts
    gathered so far."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        clock: Clock,
        request: HTTPRequest,
        decoder: StreamDecoder,
        framer: Framer | None = None,
        expect: Any = None,
        terminated: bool = True,
        server_name: str | None = None,
        redactor: Redactor | None = None,
        gap_bounds: Sequence[float] = DEFAULT_INTER_TOKEN_BUCKETS,
        max_tokens: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: Callable[[str], str | None] | None = None,
        max_redirects: int = 0,
    ) -> None:
        self._session = session
        self._clock = clock
        self._request = request
        self._decoder = decoder
        self._framer = framer if framer is not None else SSEFramer()
        self._expect = expect
        self._terminated = terminated
        # Set per response: its Content-Type is application/json (see _consume).
        self._json_body = False
        self._server_name = server_name
        self._redactor = redactor or Redactor()
        self._gap_bounds = gap_bounds
        self._max_tokens = max_tokens
        self._max_response_bytes = max_response_bytes
        self._proxy = proxy
        self._max_redirects = max_redirects
        self._proxied = False
        self._bytes_received = 0
        self._recorder = PhaseRecorder(clock)
        self._timeline: StreamTimeline | None = None
        self._status: int | None = None
        self._headers_ns: int | None = None
        # The stream reached its end (terminator or EOF): its finish reason is known.
        self._ended = False
        self._started_at = 0.0
        self._start_ns = 0
        self.log: list[str] = []

    def _debug(self, message: str) -> None:
        self.log.append(self._redactor.cut(message, _LOG_LINE_LIMIT))

    async def run(self) -> ProbeResult:
        """Send the request, read the stream to its end, return the measurements."""
        clock = self._clock
        request = self._request
        self._started_at = clock.wall()
        self._start_ns = clock.monotonic_ns()
        timeline = self._timeline = StreamTimeline(
            self._start_ns, gap_bounds=self._gap_bounds, max_tokens=self._max_tokens
        )
        # Compressed SSE would be buffered by the decompressor and delay every chunk.
        headers = {"Accept-Encoding": "identity", **request.headers}
        self._debug(f"POST {request.url}")
        try:
            with recording_phases(self._recorder):
                await self._exchange(request, headers, timeline)
        except ProbeFailure as exc:
            # Whatever leaves the probe is redacted and bounded, the exception included.
            raise ProbeFailure(exc.reason, self._detail(exc)) from None
        end_ns = clock.monotonic_ns()
        result = timeline.result(
            phases=self._recorder.phases(self._start_ns, self._headers_ns),
            http_status=self._status,
            headers_ns=self._headers_ns,
            started_at=self._started_at,
            end_ns=end_ns,
            bytes_received=self._bytes_received,
        )
        result = dataclasses.replace(
            result, answer_excerpt=self._redactor.cut(timeline.answer, _EXCERPT_LIMIT)
        )
        if result.usage_rejected is not None:
            self._debug(f"usage rejected, tokens counted as chunks: {result.usage_rejected}")
        if timeline.server_timings != result.server_timings:
            self._debug("server timings longer than the request as timed here were dropped")
        if self._expect is not None and not self._expect.search(timeline.answer):
            excerpt = self._redactor.cut(timeline.answer, 80)
            raise ProbeFailure(
                FailureReason.CONTENT_MISMATCH,
                f"answer does not match {self._expect.pattern!r}: {excerpt!r}",
            )
        self._debug(_summary(result))
        return result

    async def _exchange(
        self, request: HTTPRequest, headers: dict[str, str], timeline: StreamTimeline
    ) -> None:
        """The request and its response, read to the end of the stream; with
        follow_redirects, every redirect on the way (timings cover the whole chain:
        the clock started before the first request)."""
        clock = self._clock
        url = request.url
        for hop in range(self._max_redirects + 1):
            if hop:
                self._recorder.new_hop()
            proxy = self._proxy(url) if self._proxy is not None else None
            self._proxied = proxy is not None
            if proxy is not None:
                self._debug(f"via proxy {_location_host(proxy, proxy)}")
            async with self._session.post(
                url,
                data=request.body,
                headers=headers,
                trace_request_ctx=self._recorder,
                server_hostname=self._server_name,
                proxy=proxy,
                # Never let aiohttp follow: it would resend every header (API keys
                # included) to whatever host a redirect names. _next_hop decides.
                allow_redirects=False,
            ) as response:
                self._headers_ns = clock.monotonic_ns()
                self._status = response.status
                self._debug(f"response headers: HTTP {response.status} {response.content_type}")
                if response.status // 100 == 3:
                    url, headers = self._next_hop(response, url, headers, hop)
                    continue
                await self._read_response(response, timeline)
                return
        # Not reached: _next_hop raises on the hop after the last one allowed.
        raise ProbeFailure(FailureReason.HTTP_STATUS, "too many redirects")

    def _next_hop(
        self, response: aiohttp.ClientResponse, url: str, headers: dict[str, str], hop: int
    ) -> tuple[str, dict[str, str]]:
        """The URL and headers of the request a redirect asks for, or the failure."""
        status = response.status
        location = response.headers.get("Location")
        # The host only: a Location's path and query may carry tokens.
        where = _location_host(location, url)
        if self._max_redirects == 0:
            raise ProbeFailure(
                FailureReason.HTTP_STATUS,
                f"HTTP {status}: redirect to {where} not followed (follow_redirects is off)",
            )
        if status not in _REDIRECTS or not location:
            raise ProbeFailure(FailureReason.HTTP_STATUS, f"HTTP {status}: not a redirect")
        if hop >= self._max_redirects:
            raise ProbeFailure(
                FailureReason.HTTP_STATUS,
                f"HTTP {status}: more than {self._max_redirects} redirects (max_redirects)",
            )
        try:
            source = URL(url)
            target = source.join(URL(location))
        except (ValueError, TypeError):
            target = None
        if target is None or target.scheme not in ("http", "https") or not target.host:
            raise ProbeFailure(
                FailureReason.HTTP_STATUS, f"HTTP {status}: redirect to a non-HTTP URL"
            )
        # Credentials stay with the host they were configured for: kept for the same
        # host (an http -> https upgrade included), never sent to another host or
        # over a downgrade to plain http.
        same_host = (target.host or "").lower() == (source.host or "").lower()
        downgrade = source.scheme == "https" and target.scheme == "http"
        if not same_host or downgrade:
            secrets = self._redactor.secrets
            headers = {
                name: value
                for name, value in headers.items()
                if name.lower() not in _CREDENTIAL_HEADERS
                and not any(secret in value for secret in secrets)
            }
            self._debug(f"HTTP {status}: redirect to {where}, credentials not sent there")
        else:
            self._debug(f"HTTP {status}: redirect to {where}")
        return str(target), headers

    async def _read_response(
        self, response: aiohttp.ClientResponse, timeline: StreamTimeline
    ) -> None:
        """The final response of the chain: its status, then its stream to the end."""
        if response.status == 407 and self._proxied:
            # Only a proxy asks for proxy credentials (plain http forwarding).
            raise ProbeFailure(
                FailureReason.PROXY, "HTTP 407: the proxy requires (other) credentials"
            )
        if response.status // 100 != 2:
            # A bounded read; whitespace is collapsed only after redaction,
            # which also takes any 8+ character prefix of a key cut by the read.
            body = (await response.content.read(4096)).decode("utf-8", "replace")
            raise ProbeFailure(FailureReason.HTTP_STATUS, f"HTTP {response.status}", excerpt=body)
        eof = await self._read_stream(response, timeline)
        self._ended = True
        finish = timeline.finish_reason
        self._debug(
            f"stream {'ended at EOF' if eof else 'terminated'} after "
            f"{timeline.token_chunks} token chunks, finish reason "
            f"{'none' if finish is None else repr(finish)}"
        )
        truncated = timeline.truncation(terminated=self._terminated, eof=eof)
        if truncated is not None:
            raise ProbeFailure(FailureReason.TRUNCATED, truncated)

    async def _read_stream(
        self, response: aiohttp.ClientResponse, timeline: StreamTimeline
    ) -> bool:
        """Read the stream to its end: True if that was EOF, False at the terminator."""
        framer = self._framer
        sniffer = BodySniffer()
        content_type = response.content_type
        # A server that ignored the streaming form of the request answers with one
        # JSON body; its first event carrying the end of the answer is that body.
        self._json_body = content_type == "application/json"
        now = self._clock.monotonic_ns
        limit = self._max_response_bytes
        # readany() itself, not iter_any(): one layer less per read (issue #14).
        readany = response.content.readany
        while chunk := await readany():
            # Stamp first, parse after: parsing time must not leak into latencies.
            t_ns = now()
            self._bytes_received += len(chunk)
            if self._bytes_received > limit:
                raise ProbeFailure(
                    FailureReason.PROTOCOL,
                    f"response body above max_response_bytes ({limit}) after "
                    f"{timeline.token_chunks} token chunks",
                )
            if not sniffer.decided:
                _check_start(sniffer.feed(chunk), framer, content_type)
            if len(chunk) <= _SLICE:
                if self._consume(framer, chunk, t_ns, timeline):
                    return False
                continue
            # A fast server fills 256 KiB reads (thousands of events): parse them in
            # slices and let the other probes run between slices, so one busy stream
            # delays its neighbours by one slice at most. Events keep the stamp of
            # the read that brought them.
            for start in range(0, len(chunk), _SLICE):
                if self._consume(framer, chunk[start : start + _SLICE], t_ns, timeline):
                    return False
                await asyncio.sleep(0)
        framer.close()
        if timeline.first_chunk_ns is None and content_type != framer.media_type:
            # Not a stream that was cut short but no stream at all (a server that
            # ignored `"stream": true` and answered with one JSON body, say).
            raise _not_streamed(
                f"the response carried no stream event (Content-Type {content_type})"
            )
        return True

    def _detail(self, exc: ProbeFailure) -> str:
        """The failure detail with the response excerpt, if any: each redacted before
        it is cut, and whitespace collapsed only after redaction."""
        detail = exc.detail
        if exc.excerpt is not None:
            detail = f"{detail}: {self._redactor.excerpt(exc.excerpt, _EXCERPT_LIMIT)}"
        return self._redactor.cut(detail, _DETAIL_LIMIT)

    def _consume(self, framer: Framer, data: bytes, t_ns: int, timeline: StreamTimeline) -> bool:
        """Frame and decode bytes that arrived at `t_ns`; True once the stream ended."""
        decode = self._decoder.decode
        on_item = timeline.on_item
        for frame in framer.feed(data):
            item = decode(frame)
            if item is None:
                # A keep-alive event (Anthropic's `ping`): like an SSE comment, not a
                # chunk, so it never sets the time to first chunk.
                continue
            first = timeline.first_chunk_ns is None
            if first:
                timeline.on_event(t_ns)
            on_item(t_ns, item)
            if item.done:
                if first and self._json_body:
                    # The whole answer in the first event of an application/json body
                    # (Ollama with streaming off: one object, `done: true`): its TTFT
                    # would be the whole request time, not a time to first token.
                    raise _not_streamed(
                        "the whole answer came in one JSON object (Content-Type "
                        "application/json), so there is no time to first token"
                    )
                # Servers may keep the connection open after the terminator.
                return True
        return False

    def failure(self, exc: BaseException, timeout: float) -> ProbeResult:
        """The failed result for an exception raised by `run()` or by its deadline."""
        reason, detail = self._classify(exc, timeout)
        detail = self._redactor.cut(detail, _DETAIL_LIMIT)
        self._debug(f"probe failed: {reason.value}: {detail}")
        timeline = self._timeline
        return ProbeResult(
            success=False,
            reason=reason,
            detail=detail,
            started_at=self._started_at,
            phases=self._recorder.phases(self._start_ns, self._headers_ns),
            http_status=self._status,
            time_to_first_byte=(
                (self._headers_ns - self._start_ns) * _NS if self._headers_ns is not None else None
            ),
            token_chunks=timeline.token_chunks if timeline else 0,
            max_tokens=self._max_tokens,
            bytes_received=self._bytes_received,
            finish_reason=(
                finish_reason_label(timeline.finish_reason)
                if self._ended and timeline is not None
                else None
            ),
            elapsed=(self._clock.monotonic_ns() - self._start_ns) * _NS if self._start_ns else 0.0,
        )

    def _reset_after_handshake(self, exc: BaseException) -> bool:
        """A reset on a connection this probe opened and finished its TLS handshake on."""
        rec = self._recorder
        done = rec.tls_start is not None and rec.conn_end is not None and not rec.reused
        return done and _is_reset(exc)

    def _classify(self, exc: BaseException, timeout: float) -> tuple[FailureReason, str]:
        chunks = self._timeline.token_chunks if self._timeline else 0
        if isinstance(exc, ProbeFailure):
            return exc.reason, self._detail(exc)
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            stage = (
                "response headers"
                if self._headers_ns is None
                else f"the stream end ({chunks} token chunks so far)"
            )
            return (
                FailureReason.TIMEOUT,
                f"deadline of {timeout:g}s passed waiting for {stage}",
            )
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            return FailureReason.PROXY, f"cannot connect to the proxy: {exc.os_error}"
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            return FailureReason.PROXY, f"proxy refused the tunnel: HTTP {exc.status}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return FailureReason.DNS, f"cannot resolve host: {exc.os_error}"
        if isinstance(
            exc,
            aiohttp.ClientConnectorCertificateError
            | aiohttp.ClientConnectorSSLError
            | aiohttp.ClientSSLError
            | ssl.SSLError,
        ):
            return FailureReason.TLS, f"TLS handshake failed: {_short(exc)}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return FailureReason.CONNECT, f"cannot connect: {exc.os_error}"
        if isinstance(exc, aiohttp.ClientResponseError):
            # The server answered, but not with HTTP this client can read.
            return FailureReason.PROTOCOL, f"invalid HTTP response: {_short(exc)}"
        if isinstance(exc, UnicodeDecodeError):
            return FailureReason.PROTOCOL, "stream is not valid UTF-8"
        if isinstance(exc, aiohttp.ClientError | OSError):
            if self._headers_ns is None and self._reset_after_handshake(exc):
                # TLS 1.3 servers check the client certificate after the client's side
                # of the handshake is done: a refusal arrives as a reset, not an alert.
                return (
                    FailureReason.TLS,
                    "connection reset right after the TLS handshake, before the response "
                    "(a server that requires a client certificate refuses this way)",
                )
            if self._headers_ns is None:
                return (
                    FailureReason.CONNECT,
                    f"connection failed before the response: {_short(exc)}",
                )
            return (
                FailureReason.PROTOCOL,
                f"stream broken after {chunks} token chunks: {_short(exc)}",
            )
        return FailureReason.INTERNAL, f"{type(exc).__name__}: {_short(exc)}"


def _is_reset(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionResetError) or isinstance(exc.__cause__, ConnectionResetError)


def _not_streamed(what: str) -> ProbeFailure:
    return ProbeFailure(FailureReason.PROTOCOL, f"server did not stream: {what}")


def _check_start(first: bytes | None, framer: Framer, content_type: str) -> None:
    """Fail at once when the first significant byte of the body (a BOM and whitespace
    skipped, whatever the Content-Type) starts one JSON document instead of a stream.

    `[`: no SSE or NDJSON stream starts so. Gemini's `:streamGenerateContent` without
    `alt=sse` streams one JSON array of responses: no framer can split it, and reading
    it to the end would wait for the whole answer (or the deadline) before failing
    anyway. The Gemini model (probes/gemini.py) also refuses at load a `url` with a
    query of its own, naming `alt=sse`; this is the runtime guard for every protocol (a
    proxy that rewrites the query, a server that ignores it, a wrong Content-Type).
    `{` where SSE was expected: no SSE line starts so (a field name or `:`); the
    endpoint answered with one JSON object (and may hold the connection open after
    it). NDJSON lines start with `{`: there, the first event tells (`_consume`).
    """
    if first == b"[":
        raise _not_streamed(
            f"the response is a JSON array (Content-Type {content_type}), not a stream:"
            " the endpoint ignored the streaming form of the request"
        )
    if first == b"{" and framer.media_type == SSEFramer.media_type:
        raise _not_streamed(
            f"the response is a JSON object (Content-Type {content_type}), not an SSE"
            " stream: the endpoint ignored the streaming form of the request"
        )


def _location_host(location: str | None, request_url: str) -> str:
    """Where a redirect points, as host[:port] only (never its path or query)."""
    if not location:
        return "nowhere (no Location header)"
    try:
        url = URL(request_url).join(URL(location))
    except (ValueError, TypeError):
        return "an invalid Location"
    host = url.host or "an invalid Location"
    return f"{host}:{url.explicit_port}" if url.explicit_port else host


def _short(exc: BaseException) -> str:
    # Not cut here: the redactor's cut() redacts secrets first, then cuts.
    return str(exc) or type(exc).__name__


def stream_prober(spec: ProtocolSpec[Any]) -> Prober:
    """The prober of a streaming protocol: its spec says how to build a request and
    which framer and decoder read the stream. Everything else (phases, stamping,
    limits, failures) is this engine's."""
    model = spec.model

    def prober(
        target: TargetBase,
        session: aiohttp.ClientSession,
        clock: Clock,
        /,
        *,
        gap_bounds: Sequence[float] | None = None,
    ) -> PreparedProbe:
        if not isinstance(target, model):
            raise TypeError(f"{model.__name__} prober got a {type(target).__name__}")
        return StreamProbe(
            session=session,
            clock=clock,
            request=spec.build_request(target, make_nonce() if target.cache_bust else None),
            decoder=spec.new_decoder(),
            framer=spec.new_framer(),
            expect=target.expect,
            terminated=spec.terminated,
            server_name=target.tls.server_name,
            redactor=target.redactor,
            gap_bounds=DEFAULT_INTER_TOKEN_BUCKETS if gap_bounds is None else gap_bounds,
            max_tokens=_requested_tokens(target),
            max_response_bytes=target.max_response_bytes,
            proxy=target.proxy_for,
            max_redirects=target.max_redirects if target.follow_redirects else 0,
        )

    return prober


def _requested_tokens(target: TargetBase) -> int:
    """The output token limit the request carries: `max_tokens`, or a larger one
    `extra_body` sets (it is merged over the body), so usage is judged against it."""
    limits = [target.max_tokens]
    for key in ("max_tokens", "max_completion_tokens", "max_new_tokens", "max_output_tokens"):
        value = target.extra_body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            limits.append(value)
    return max(limits)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f}ms"


def _summary(result: ProbeResult) -> str:
    """One debug line with every measurement of a successful probe."""
    phases = " ".join(f"{k}={_ms(v)}" for k, v in result.phases.items())
    return (
        f"ttfb={_ms(result.time_to_first_byte)} first_chunk={_ms(result.time_to_first_chunk)} "
        f"ttft={_ms(result.time_to_first_token)} ttfot={_ms(result.time_to_first_output_token)} "
        f"e2e={_ms(result.duration)} tpot={_ms(result.time_per_output_token)} "
        f"tokens={result.output_tokens} ({result.usage_source}) chunks={result.token_chunks} "
        f"finish_reason={result.finish_reason} "
        f"{'burst (decode figures not measured) ' if result.burst else ''}"
        f"bytes={result.bytes_received} phases: {phases}{_server_summary(result)}"
    )


def _server_summary(result: ProbeResult) -> str:
    """The server's own timings, when it reported any, for the debug line."""
    server = result.server_timings
    if server is None:
        return ""
    return (
        f" server: load={_ms(server.load)} prefill={_ms(server.prefill)}"
        f" decode={_ms(server.decode)} total={_ms(server.total)}"
        f" prefill_overhead={_ms(result.prefill_overhead)}"
    )
