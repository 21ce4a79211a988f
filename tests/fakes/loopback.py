"""The lifecycle every fake HTTP service shares: a server on a free 127.0.0.1 port, served
from a background thread while the fake is used as a context manager.

A fake subclasses `LoopbackServer` and its request handler subclasses `FakeHandler[TheFake]`,
so the handler reaches the fake's state as `self.fake`, typed, rather than through a closure
or an untyped attribute on the server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

FakeT = TypeVar("FakeT", bound="LoopbackServer")


class _FakeHTTPServer(ThreadingHTTPServer, Generic[FakeT]):
    # A handler left blocked by a client that went away must not keep the test run alive.
    daemon_threads = True

    def __init__(self, handler: type[FakeHandler[FakeT]], fake: FakeT) -> None:
        super().__init__(("127.0.0.1", 0), handler)  # port 0: the OS picks a free port
        self.fake = fake


class LoopbackServer:
    """Binds at construction (so `url` is known before serving) and serves while entered."""

    def __init__(self, handler: type[FakeHandler[Self]]) -> None:
        self._server = _FakeHTTPServer(handler, self)
        # A short poll interval, because `shutdown` waits up to one interval on exit.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
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


class FakeHandler(BaseHTTPRequestHandler, Generic[FakeT]):
    """A request handler that answers for the fake `self.fake`, quietly."""

    server: _FakeHTTPServer[FakeT]

    @property
    def fake(self) -> FakeT:
        return self.server.fake

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(body).encode(), headers)

    def send_raw(
        self, status: int, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send `payload` as it is: scripted error bodies (even empty or malformed ones) are
        still labelled JSON, as the APIs these fakes stand in for label theirs."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""
