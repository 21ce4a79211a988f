"""Integration tests run against a real embedded Tansu broker on a free loopback port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from streams.broker.embedded import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedBroker]:
    log_dir = tmp_path_factory.mktemp("tansu")
    embedded = EmbeddedBroker(port=free_port(), log_path=log_dir / "tansu.log")
    await embedded.start()
    yield embedded
    await embedded.close()


@pytest.fixture
def prefix() -> str:
    """A unique topic prefix per test, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:8]}."
