"""The streaming engine against the built-in simulator: every measurement rule with
injected delays (asserted within stated tolerances) and every failure reason, produced
for real."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from tests.conftest import RunningSim, SimFactory, make_target, probe_once
from tests.helpers import free_port
from ttft_exporter.errors import FailureReason
from ttft_exporter.sim.llm import LLMSimConfig, ModelBehaviour, create_llm_app

# Timers on a shared 2-core CI box: a measured latency may exceed the injected one by
# scheduling noise, never undershoot it. Lower bound 1 ms below to allow clock rounding.
LATE = 0.030
EARLY = 0.001


def within(measured: float | None, injected: float, late: float = LATE) -> bool:
    return measured is not None and injected - EARLY <= measured <= injected + late


async def test_ttft_ignores_role_chunk_and_keepalives(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(
        m=ModelBehaviour(ttft=0.3, itl=0.02, tokens=10, keepalive_interval=0.05)
    )
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.success, result.detail
    assert within(result.time_to_first_token, 0.3)
    # The role-only chunk comes with the headers: first chunk early, TTFT not.
    assert result.time_to_first_chunk is not None and result.time_to_first_chunk < 0.1
    assert result.time_to_first_byte is not None and result.time_to_first_byte < 0.1
    assert within(result.duration, 0.3 + 9 * 0.02)
    assert result.output_tokens == 10 and result.usage_source == "usage"
    assert len(result.inter_chunk_gaps) == 9
    assert all(within(g, 0.02, late=0.02) for g in result.inter_chunk_gaps)
    assert within(result.time_per_output_token, 0.02, late=0.005)


async def test_reasoning_before_answer(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.1, itl=0.02, tokens=5, reasoning_tokens=10))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.success, result.detail
    assert within(result.time_to_first_token, 0.1)
    assert within(result.time_to_first_output_token, 0.1 + 10 * 0.02)
    assert result.output_tokens == 15  # usage counts reasoning and answer tokens


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_both_reasoning_field_names(make_llm_sim: SimFactory, field: str) -> None:
    sim = await make_llm_sim(
        m=ModelBehaviour(ttft=0.05, itl=0.01, tokens=2, reasoning_tokens=3, reasoning_field=field)  # type: ignore[arg-type]
    )
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.success and within(result.time_to_first_token, 0.05)
    assert result.time_to_first_output_token is not None
    assert result.time_to_first_output_token > result.time_to_first_token + 0.02  # type: ignore[operator]


async def test_multi_token_chunks_use_usage(make_llm_sim: SimFactory) -> None:
    # The performance spec's reference stream: first text at 300 ms, 20 chunks of
    # 2 tokens 20 ms apart, 40 tokens in usage, a role chunk and a keep-alive.
    sim = await make_llm_sim(
        m=ModelBehaviour(ttft=0.3, itl=0.02, tokens=40, tokens_per_chunk=2, keepalive_interval=0.1)
    )
    result = await probe_once(make_target(url=f"{sim.url}/v1", max_tokens=64))
    assert result.success, result.detail
    assert result.output_tokens == 40 and result.usage_source == "usage"
    assert result.token_chunks == 20
    assert within(result.duration, 0.3 + 19 * 0.02)
    assert result.time_per_output_token == pytest.approx(
        (result.duration - result.time_to_first_token) / 39  # type: ignore[operator]
    )


async def test_without_usage_counts_chunks_and_labels_it(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.05, itl=0.01, tokens=8, usage="never"))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.success and result.output_tokens == 8 and result.usage_source == "chunks"
    assert result.input_tokens is None


async def test_include_usage_false_sends_no_stream_options(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.01, itl=0.0, tokens=3))
    result = await probe_once(make_target(url=f"{sim.url}/v1", include_usage=False))
    assert result.success and result.usage_source == "chunks"
    body = sim.state.requests[-1].body
    assert isinstance(body, dict) and "stream_options" not in body


async def test_continuous_usage_stats(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(
        m=ModelBehaviour(ttft=0.01, itl=0.005, tokens=6, tokens_per_chunk=3, continuous_usage=True)
    )
    result = await probe_once(make_target(url=f"{sim.url}/v1", continuous_usage_stats=True))
    assert result.success and result.output_tokens == 6 and result.token_chunks == 2


async def test_stops_at_done_when_server_keeps_connection_open(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(
        m=ModelBehaviour(ttft=0.02, itl=0.01, tokens=4, keep_open_after_done=True)
    )
    result = await probe_once(make_target(url=f"{sim.url}/v1", timeout="3s"))
    assert result.success, result.detail
    assert result.elapsed < 1.0


@pytest.mark.parametrize(
    "framing",
    [{"data_space": False}, {"crlf": True}, {"split_writes": True, "token_text": "héllo🙂"}],
    ids=["no-space-tgi-style", "crlf", "split-writes-multibyte"],
)
async def test_framing_variants(make_llm_sim: SimFactory, framing: dict[str, object]) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.05, itl=0.01, tokens=6, **framing))  # type: ignore[arg-type]
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.success, result.detail
    assert result.output_tokens == 6 and result.token_chunks == 6
    assert within(result.time_to_first_token, 0.05)


async def test_legacy_completions(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.1, itl=0.01, tokens=5))
    result = await probe_once(
        make_target(protocol="openai-completions", url=f"{sim.url}/v1", prompt="Once")
    )
    assert result.success, result.detail
    assert within(result.time_to_first_token, 0.1)
    assert result.output_tokens == 5


async def test_cache_bust_nonce_differs_per_probe(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=1))
    target = make_target(url=f"{sim.url}/v1", prompt="same")
    await probe_once(target)
    await probe_once(target)
    contents = [r.body["messages"][0]["content"] for r in sim.state.requests]  # type: ignore[index]
    assert contents[0] != contents[1]
    assert all(c.startswith("[probe ") and c.endswith(" same") for c in contents)
    plain = make_target(url=f"{sim.url}/v1", prompt="same", cache_bust=False)
    await probe_once(plain)
    assert sim.state.requests[-1].body["messages"][0]["content"] == "same"  # type: ignore[index]


async def test_expect_matches_answer(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=3, token_text="hello"))
    ok = await probe_once(make_target(url=f"{sim.url}/v1", expect="hello hello"))
    assert ok.success, ok.detail


# --- every failure reason, for real ------------------------------------------------


async def test_connect_refused() -> None:
    result = await probe_once(make_target(url=f"http://127.0.0.1:{free_port()}/v1"))
    assert result.reason is FailureReason.CONNECT and not result.success
    assert result.time_to_first_token is None


async def test_dns_failure() -> None:
    result = await probe_once(make_target(url="http://no-such-host.invalid/v1", timeout="5s"))
    assert result.reason is FailureReason.DNS, result.detail


async def test_http_status(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(status=503))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.reason is FailureReason.HTTP_STATUS and result.http_status == 503
    assert result.detail.startswith("HTTP 503")


async def test_unknown_model_is_http_status(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour())
    result = await probe_once(make_target(url=f"{sim.url}/v1", model="other"))
    assert result.reason is FailureReason.HTTP_STATUS and result.http_status == 404


async def test_error_inside_200_stream(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, error_after=3))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.reason is FailureReason.STREAM_ERROR and result.http_status == 200
    assert result.time_to_first_token is None  # no latency is reported for a failure


async def test_error_before_any_token(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, tokens=10, error_after=0))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.reason is FailureReason.STREAM_ERROR


async def test_stall_is_timeout(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, stall_after=2))
    result = await probe_once(make_target(url=f"{sim.url}/v1", timeout="0.5s"))
    assert result.reason is FailureReason.TIMEOUT
    assert within(result.elapsed, 0.5, late=0.1)
    assert "2 token chunks" in result.detail


async def test_headers_never_come_is_timeout(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(headers_delay=5.0))
    result = await probe_once(make_target(url=f"{sim.url}/v1", timeout="0.3s"))
    assert result.reason is FailureReason.TIMEOUT and "response headers" in result.detail


async def test_connection_drop_is_protocol(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, drop_after=3))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.reason is FailureReason.PROTOCOL, result.detail


async def test_malformed_chunk_is_protocol(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, malformed_after=2))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.reason is FailureReason.PROTOCOL
    assert "malformed JSON" in result.detail


async def test_no_tokens(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, tokens=0))
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.reason is FailureReason.NO_TOKENS
    assert result.time_to_first_token is None


async def test_content_mismatch(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=3, token_text="hello"))
    result = await probe_once(make_target(url=f"{sim.url}/v1", expect="^goodbye"))
    assert result.reason is FailureReason.CONTENT_MISMATCH


# --- TLS ---------------------------------------------------------------------------


@pytest.fixture
async def tls_sim(tmp_path: Path) -> AsyncIterator[tuple[RunningSim, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = create_llm_app(LLMSimConfig(models={"m": ModelBehaviour(ttft=0.05, itl=0.01, tokens=4)}))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    yield RunningSim(runner, port), ca_file
    await runner.cleanup()


async def test_untrusted_certificate_is_tls(tls_sim: tuple[RunningSim, Path]) -> None:
    sim, _ = tls_sim
    result = await probe_once(make_target(url=f"https://127.0.0.1:{sim.port}/v1"))
    assert result.reason is FailureReason.TLS, result.detail


async def test_tls_phases_measured_on_fresh_connection(tls_sim: tuple[RunningSim, Path]) -> None:
    sim, ca_file = tls_sim
    target = make_target(url=f"https://127.0.0.1:{sim.port}/v1", tls={"ca_file": str(ca_file)})
    result = await probe_once(target)
    assert result.success, result.detail
    phases = result.phases
    assert phases["tls"] > 0 and phases["connect"] > 0
    assert phases["dns"] == 0.0  # an IP literal is never resolved
    # Every phase lies before the response headers.
    assert result.time_to_first_byte is not None
    assert phases["connect"] + phases["tls"] + phases["headers"] <= result.time_to_first_byte + 1e-6
    assert within(result.time_to_first_token, 0.05, late=0.05)
