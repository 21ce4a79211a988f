"""A fake SendGrid v3 API on 127.0.0.1 (a free port): `POST /v3/mail/send` answered from a
scripted queue of answers, then 202 with an `X-Message-Id`; every request kept (path,
headers, JSON body). Use as a context manager."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


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


class FakeSendGrid:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

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

    def __enter__(self) -> FakeSendGrid:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    def __init__(self, fake: FakeSendGrid) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)  # a free port
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        answer = self.server.fake.answer(self.path, dict(self.headers.items()), body)
        payload = answer.body.encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass
