"""Azure OpenAI streaming Chat Completions: the OpenAI wire format (llm-streaming.md
§A.1) behind Azure's deployment URL and `api-key` header.

`POST {url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
with `api-key: <key>`; `url` is the resource endpoint
(`https://{resource}.openai.azure.com`). The body and the stream are OpenAI's, so the
request body and the decoder are `openai-chat`'s: Azure's extra fields
(`prompt_filter_results` in a first chunk with `choices: []`, `content_filter_results`
on choices, filter-annotation chunks without a delta after the finish chunk) carry no
text, and `finish_reason: content_filter` is the bounded `content_filter`.

Why a protocol of its own rather than options on `openai-chat`: the registry ties one
auth header to one model (`auth_header` is a class attribute, which the header-conflict
check at load and the registry test rely on), and Azure's key goes in `api-key`, not
`Authorization: Bearer`; the URL form differs too. A separate name keeps both invariants,
keeps `openai-chat` free of Azure-only keys, and shows in the `protocol` label.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal
from urllib.parse import quote

from pydantic import Field, ValidationInfo, field_validator
from yarl import URL

from ttft_exporter.probes.base import HTTPRequest, ProtocolSpec
from ttft_exporter.probes.framing import SSEFramer
from ttft_exporter.probes.openai import ChatDecoder, OpenAIChatTarget, build_chat_request
from ttft_exporter.validation import field_rule

__all__ = ["AZURE_OPENAI", "DEFAULT_API_VERSION", "AzureOpenAITarget", "build_request"]

# The latest generally available data-plane version that streams usage
# (stream_options.include_usage).
DEFAULT_API_VERSION = "2024-10-21"
# A deployment name as Azure allows it (letters, digits, `_ . -`): a path segment,
# so nothing that could bend the URL.
_DEPLOYMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")


class AzureOpenAITarget(OpenAIChatTarget):
    """An Azure OpenAI chat deployment
    (`POST {url}/openai/deployments/{deployment}/chat/completions?api-version=...`)."""

    auth_header: ClassVar[str] = "api-key"
    auth_scheme: ClassVar[str] = ""  # the key alone

    protocol: Literal["azure-openai"]  # type: ignore[assignment]
    deployment: str | None = Field(
        None, description="The deployment name in the URL; defaults to `model`."
    )
    api_version: str = Field(
        DEFAULT_API_VERSION,
        validate_default=True,
        description="The api-version query parameter (YYYY-MM-DD[-preview]).",
    )

    @field_validator("url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        url = URL(value)  # an absolute http(s) URL: TargetBase's validator ran first
        if url.raw_query_string or url.raw_fragment or "/openai" in url.raw_path:
            raise ValueError(
                "give the resource endpoint (https://RESOURCE.openai.azure.com): the probe "
                "appends /openai/deployments/{deployment}/chat/completions?api-version=..."
            )
        return value

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, value: str | None) -> str | None:
        if value is not None and not _DEPLOYMENT.fullmatch(value):
            raise ValueError("must be a deployment name (letters, digits, _ . -)")
        return value

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str, info: ValidationInfo) -> str:
        if not _API_VERSION.fullmatch(value):
            raise ValueError("must look like 2024-10-21 or 2025-04-01-preview")
        # The deployment defaults to the model: it must then be a deployment name too.
        model = info.data.get("model")
        if info.data.get("deployment") is None and model and not _DEPLOYMENT.fullmatch(model):
            raise field_rule(
                "model",
                "is the deployment name unless `deployment` is set, and is not one "
                "(letters, digits, _ . -)",
                sibling=True,
            )
        return value


def build_request(target: AzureOpenAITarget, nonce: str | None) -> HTTPRequest:
    """openai-chat's request (body, `api-key` header) at the deployment URL."""
    chat = build_chat_request(target, nonce)
    deployment = quote(target.deployment or target.model, safe="")
    return HTTPRequest(
        url=(
            f"{target.url}/openai/deployments/{deployment}/chat/completions"
            f"?api-version={quote(target.api_version, safe='')}"
        ),
        headers=chat.headers,
        body=chat.body,
    )


AZURE_OPENAI = ProtocolSpec(
    name="azure-openai",
    model=AzureOpenAITarget,
    build_request=build_request,
    new_decoder=ChatDecoder,
    new_framer=SSEFramer,
    otel_provider="azure.ai.openai",
    otel_operation="chat",
)
"""Azure OpenAI Chat Completions: SSE ending in `[DONE]`, as OpenAI's."""
