"""Fixtures of the OTel sink tests: a test OTLP receiver on both transports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.otlp_receiver import OTLPReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[OTLPReceiver]:
    """An OTLP receiver (HTTP and gRPC) on 127.0.0.1, stopped after the test."""
    running = await OTLPReceiver().start()
    yield running
    await running.stop()
