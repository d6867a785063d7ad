"""Azure OpenAI (`azure-openai`): the deployment URL, the `api-key` header, the config
rules, and the engine against the simulator's Azure mode over real HTTP (the core trap
matrix, with Azure's content-filter chunks).

Timing bounds: lower bounds are the simulator's own sleeps (it never sends early);
upper bounds are generous (+1 s), so they hold on a loaded 2-core machine
(`stress-ng --cpu 2`); no test depends on a few milliseconds."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import SimFactory, make_target, probe_once
from ttft_exporter.errors import ConfigError, FailureReason
from ttft_exporter.probes.azure_openai import AzureOpenAITarget, build_request
from ttft_exporter.sim.llm import ModelBehaviour

SLACK = 1.0
EARLY = 0.001  # clock rounding
ENDPOINT = "https://my-resource.openai.azure.com"
KEY = "azure-SENTINEL-key-0123456789"


def azure(**fields: Any) -> AzureOpenAITarget:
    fields.setdefault("url", ENDPOINT)
    fields.setdefault("model", "gpt-4o-mini")
    target = make_target(protocol="azure-openai", **fields)
    assert isinstance(target, AzureOpenAITarget)
    return target


def between(value: float | None, low: float, high: float) -> bool:
    return value is not None and low <= value <= high


# The request and the config


def test_request_url_header_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_TEST_KEY", KEY)
    request = build_request(azure(api_key_env="AZURE_TEST_KEY", max_tokens=16), "[probe n]")
    assert request.url == (
        f"{ENDPOINT}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    )
    assert request.headers["api-key"] == KEY and "Authorization" not in request.headers
    body = json.loads(request.body)
    assert body["messages"] == [{"role": "user", "content": "[probe n] hello"}]
    assert body["stream"] is True and body["max_tokens"] == 16
    assert body["stream_options"] == {"include_usage": True}


def test_deployment_and_api_version_override() -> None:
    target = azure(model="gpt-4o", deployment="prod-4o", api_version="2025-04-01-preview")
    request = build_request(target, None)
    assert request.url == (
        f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?api-version=2025-04-01-preview"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": f"{ENDPOINT}/openai/deployments/x"}, "resource endpoint"),
        ({"url": f"{ENDPOINT}?api-version=1"}, "resource endpoint"),
        ({"api_version": "latest"}, "must look like"),
        ({"deployment": "a/b"}, "deployment name"),
        ({"model": "gpt 4o"}, "model: is the deployment name"),
        ({"headers": {"api-key": "x-abcdef"}, "api_key_env": "AZURE_TEST_KEY"}, "api-key is set"),
    ],
)
def test_config_refuses(
    fields: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TEST_KEY", KEY)
    with pytest.raises(ConfigError, match=message):
        azure(**fields)


def test_a_model_that_is_no_deployment_name_is_fine_with_deployment_set() -> None:
    assert azure(model="gpt 4o", deployment="gpt4o").deployment == "gpt4o"


# The engine against the simulator's Azure mode


async def sim_target(
    make_llm_sim: SimFactory, behaviour: ModelBehaviour, **fields: Any
) -> AzureOpenAITarget:
    sim = await make_llm_sim(m=behaviour)
    return azure(url=sim.url, model="m", **fields)


async def test_ttft_ignores_filter_and_role_chunks_and_keepalives(
    make_llm_sim: SimFactory,
) -> None:
    # A 1.08 s decode window (9 gaps of 120 ms): the simulator writes on absolute
    # deadlines, so a first token delivered as late as the whole window comes with
    # all the others in one read, a burst with no gaps by definition; 180 ms was
    # within a loaded box's stalls, 1.08 s is beyond its 1 s stall budget.
    behaviour = ModelBehaviour(
        ttft=0.3, itl=0.12, tokens=10, keepalive_interval=0.05, prompt_tokens=17
    )
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.success, result.detail
    # prompt_filter_results and the role chunk come with the headers; TTFT does not.
    assert result.time_to_first_chunk is not None and result.time_to_first_token is not None
    assert result.time_to_first_chunk < result.time_to_first_token
    assert between(result.time_to_first_token, 0.3, 0.3 + SLACK)
    assert result.output_tokens == 10 and result.usage_source == "usage"
    assert result.input_tokens == 17 and result.finish_reason == "stop"
    gaps = result.inter_chunk_gaps
    # The filter annotation after the finish chunk is no token and no gap.
    assert gaps is not None and gaps.count == 9


async def test_reasoning_before_the_answer(make_llm_sim: SimFactory) -> None:
    behaviour = ModelBehaviour(ttft=0.1, itl=0.02, tokens=5, reasoning_tokens=10)
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.success, result.detail
    assert between(result.time_to_first_token, 0.1, 0.1 + SLACK)
    assert between(result.time_to_first_output_token, 0.1 + 10 * 0.02, 0.3 + SLACK)
    assert result.output_tokens == 15 and result.reasoning_chunks == 10


async def test_multi_token_chunks_use_usage(make_llm_sim: SimFactory) -> None:
    behaviour = ModelBehaviour(ttft=0.05, itl=0.02, tokens=12, tokens_per_chunk=4)
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.success and result.token_chunks == 3 and result.output_tokens == 12


async def test_content_filter_finish(make_llm_sim: SimFactory) -> None:
    behaviour = ModelBehaviour(ttft=0.02, itl=0.01, tokens=3, finish_reason="content_filter")
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.success and result.finish_reason == "content_filter"


async def test_error_inside_200_stream(make_llm_sim: SimFactory) -> None:
    behaviour = ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, error_after=3)
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.reason is FailureReason.STREAM_ERROR and result.http_status == 200


async def test_stall_is_timeout(make_llm_sim: SimFactory) -> None:
    behaviour = ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, stall_after=2)
    started = time.monotonic()
    result = await probe_once(await sim_target(make_llm_sim, behaviour, timeout="0.5s"))
    waited = time.monotonic() - started
    assert result.reason is FailureReason.TIMEOUT
    # The probe ran until its 0.5 s deadline: measured around the call. The probe's own
    # `elapsed` starts after the deadline was armed, so on a loaded box it reads a few ms
    # under 0.5 s (0.4976 s seen in the trap matrix); only its upper bound holds.
    assert waited >= 0.5 - EARLY
    assert between(result.elapsed, 0.0, 0.5 + SLACK)


async def test_connection_drop_is_protocol(make_llm_sim: SimFactory) -> None:
    behaviour = ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, drop_after=3)
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.reason is FailureReason.PROTOCOL, result.detail


@pytest.mark.parametrize(
    "behaviour",
    [
        ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, truncate_after=4),
        ModelBehaviour(ttft=0.02, itl=0.01, tokens=4, omit_done=True),
        ModelBehaviour(ttft=0.02, itl=0.01, tokens=4, finish_reason=None),
    ],
    ids=["cut-mid-generation", "no-done", "done-without-finish-reason"],
)
async def test_truncated(make_llm_sim: SimFactory, behaviour: ModelBehaviour) -> None:
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.reason is FailureReason.TRUNCATED, result.detail


async def test_malformed_chunk_is_protocol(make_llm_sim: SimFactory) -> None:
    behaviour = ModelBehaviour(ttft=0.02, itl=0.01, tokens=10, malformed_after=2)
    result = await probe_once(await sim_target(make_llm_sim, behaviour))
    assert result.reason is FailureReason.PROTOCOL and "malformed JSON" in result.detail


async def test_api_key_header_checked_by_the_sim(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(api_key=KEY, m=ModelBehaviour(ttft=0.0, tokens=2))
    ok = await probe_once(azure(url=sim.url, model="m", headers={"api-key": KEY}))
    assert ok.success, ok.detail
    assert sim.state.requests[-1].headers["api-key"] == KEY
    assert sim.state.requests[-1].to_json()["headers"]["api-key"] == "REDACTED"
    bearer = azure(url=sim.url, model="m", headers={"Authorization": f"Bearer {KEY}"})
    result = await probe_once(bearer)
    assert result.reason is FailureReason.HTTP_STATUS and result.http_status == 401


async def test_sim_wants_api_version_and_a_known_deployment(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, tokens=2))
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        url = f"{sim.url}/openai/deployments/m/chat/completions"
        async with session.post(url, json=body) as response:
            assert response.status == 404
        async with session.post(
            f"{sim.url}/openai/deployments/nope/chat/completions?api-version=2024-10-21",
            json=body,
        ) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "DeploymentNotFound"
