"""Shared fixtures: fake upstreams on 127.0.0.1 in the session's event loop."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.fakes.openai_upstream import FakeUpstream

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("upstream")
    await fake.start()
    yield fake
    await fake.stop()
