"""A fake OpenAI chat-completions API on 127.0.0.1 (a free port) for driving the real
openai client: it answers from a queue of scripted replies (a plain success once the queue
is empty) and keeps every request it was sent, stamped when it arrived."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.loopback import FakeHandler, LoopbackServer

FAKE_MODEL = "gpt-4.1-mini-2025-04-14"


def completion(
    content: str | None = "ok",
    *,
    model: str = FAKE_MODEL,
    prompt_tokens: int | None = 120,
    completion_tokens: int = 30,
) -> dict[str, Any]:
    """A chat.completion body; `prompt_tokens=None` leaves usage out."""
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_740_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    if prompt_tokens is not None:
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return body


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = field(default_factory=completion)


def error(status: int, message: str, **headers: str) -> Reply:
    """An error reply shaped like the API's."""
    return Reply(status, headers, {"error": {"message": message, "type": "fake", "code": None}})


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() on arrival, on the server's side
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any


class FakeOpenAI(LoopbackServer):
    """`with FakeOpenAI() as fake:` serves at `fake.base_url` until the block ends."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        super().__init__(_Handler)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def reply(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def answer(self, *contents: str) -> None:
        """Successful completions with these texts, in order."""
        self.reply(*(Reply(body=completion(content)) for content in contents))

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self._replies.popleft() if self._replies else Reply()


class _Handler(FakeHandler[FakeOpenAI]):
    def do_POST(self) -> None:
        arrived = time.monotonic()
        raw = self.read_body()
        received = Received(
            at=arrived,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=json.loads(raw) if raw else None,
        )
        if self.path == "/v1/chat/completions":
            reply = self.fake._next(received)
        else:
            reply = error(404, f"no route {self.path}")
        self.send_json(reply.status, reply.body, reply.headers)
