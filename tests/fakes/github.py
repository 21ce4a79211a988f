"""A fake GitHub REST API on 127.0.0.1 (a free port): answers every POST with a status and
a JSON body of the test's choosing, and keeps what it was sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.loopback import FakeHandler, LoopbackServer


class FakeGitHub(LoopbackServer):
    """Answers every POST with `status` and `answer`; keeps what it was sent."""

    def __init__(self) -> None:
        self.status = 201
        self.answer: dict[str, Any] = {}
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        super().__init__(_Handler)


class _Handler(FakeHandler[FakeGitHub]):
    def do_POST(self) -> None:
        self.fake.requests.append((self.path, dict(self.headers.items()), self.read_body()))
        self.send_json(self.fake.status, self.fake.answer)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake
