"""A fake SendGrid v3 API on 127.0.0.1 (a free port): `POST /v3/mail/send` answered from a
scripted queue of answers, then 202 with an `X-Message-Id`; every request kept (path,
headers, JSON body). Use as a context manager."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.loopback import FakeHandler, LoopbackServer


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    answer: Answer  # what the fake answered


class FakeSendGrid(LoopbackServer):
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        super().__init__(_Handler)

    def script(self, *answers: Answer) -> None:
        """The next requests get these answers, in order; later ones the default 202."""
        with self._lock:
            self._script.extend(answers)

    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Answer:
        with self._lock:
            if path != "/v3/mail/send":
                answer = Answer(404, body='{"errors": [{"message": "not found"}]}')
            elif self._script:
                answer = self._script.popleft()
            else:
                answer = Answer(202, {"X-Message-Id": f"fake-{len(self.requests) + 1}"})
            self.requests.append(Received(path, headers, body, answer))
            return answer


class _Handler(FakeHandler[FakeSendGrid]):
    def do_POST(self) -> None:
        body = json.loads(self.read_body() or b"{}")
        answer = self.fake.answer(self.path, dict(self.headers.items()), body)
        self.send_raw(answer.status, answer.body.encode(), answer.headers)
