"""A fake Binance + Coinbase candle server on 127.0.0.1, for driving the real HTTP client.

Both APIs are served from one port (their paths do not collide), from one
deterministic price series, so a test can compute the price it expects. Every
request is recorded, and faults (429, 5xx) can be scripted per venue.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.loopback import FakeHandler, LoopbackServer

BASE_PRICES = {"BTC": 30_000.0, "ETH": 2_000.0, "SOL": 100.0}
BINANCE_INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
COINBASE_MAX_CANDLES = 300


def close_price(symbol: str, open_time: datetime) -> float:
    """The close of the fake `symbol` candle opening at `open_time` (any interval)."""
    hours = int(open_time.timestamp()) // 3600
    wave = 0.05 * math.sin(hours / 24) + 0.001 * (hours % 7)
    return round(BASE_PRICES[symbol] * (1 + wave), 2)


@dataclass(frozen=True)
class Fault:
    """A scripted error response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"msg": "scripted fault"}'


@dataclass(frozen=True)
class Request:
    venue: str  # "binance" or "coinbase"
    path: str
    params: dict[str, str]


class FakeExchange(LoopbackServer):
    """Serve candles opening in [first_open, last_open]; use as a context manager."""

    def __init__(
        self,
        first_open: datetime = datetime(2024, 1, 1, tzinfo=UTC),
        last_open: datetime = datetime(2024, 6, 30, 23, tzinfo=UTC),
    ) -> None:
        self.first_open = first_open
        self.last_open = last_open
        self.requests: list[Request] = []
        self._scripted: dict[str, deque[Fault]] = {"binance": deque(), "coinbase": deque()}
        self._always: dict[str, Fault | None] = {"binance": None, "coinbase": None}
        self._lock = threading.Lock()
        super().__init__(_Handler)

    def reset(self) -> None:
        """Forget recorded requests and scripted faults, so one server can serve many tests."""
        with self._lock:
            self.requests.clear()
            for venue in self._scripted:
                self._scripted[venue].clear()
                self._always[venue] = None

    def script(self, venue: str, *faults: Fault) -> None:
        """Answer the next requests to `venue` with these faults, then normally."""
        with self._lock:
            self._scripted[venue].extend(faults)

    def fail_always(self, venue: str, fault: Fault) -> None:
        with self._lock:
            self._always[venue] = fault

    def count(self, venue: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if venue is None or r.venue == venue)

    def respond(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """Record the request and return (status, headers, JSON body or raw text)."""
        venue = "binance" if path.startswith("/api/v3/") else "coinbase"
        with self._lock:
            self.requests.append(Request(venue, path, params))
            fault = self._scripted[venue].popleft() if self._scripted[venue] else None
            fault = fault or self._always[venue]
        if fault is not None:
            return fault.status, fault.headers, fault.body
        if path == "/api/v3/klines":
            return self._klines(params)
        if path.startswith("/products/") and path.endswith("/candles"):
            return self._candles(path.split("/")[2], params)
        return 404, {}, {"msg": f"no route {path}"}

    def _series(self, symbol: str, start: datetime, end: datetime, step: int) -> list[datetime]:
        if symbol not in BASE_PRICES:
            return []
        first = max(start, self.first_open)
        first = datetime.fromtimestamp(math.ceil(first.timestamp() / step) * step, tz=UTC)
        times: list[datetime] = []
        while first <= min(end, self.last_open):
            times.append(first)
            first += timedelta(seconds=step)
        return times

    def _klines(self, params: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        pair, interval = params.get("symbol", ""), params.get("interval", "")
        if not pair.endswith("USDT") or pair[:-4] not in BASE_PRICES:
            return 400, {}, {"code": -1121, "msg": "Invalid symbol."}
        if interval not in BINANCE_INTERVALS:
            return 400, {}, {"code": -1120, "msg": "Invalid interval."}
        step = BINANCE_INTERVALS[interval]
        limit = min(int(params.get("limit", "500")), 1000)
        start = datetime.fromtimestamp(int(params["startTime"]) / 1000, tz=UTC)
        end = datetime.fromtimestamp(int(params["endTime"]) / 1000, tz=UTC)
        symbol = pair[:-4]
        rows = []
        for open_time in self._series(symbol, start, end, step)[:limit]:
            close = close_price(symbol, open_time)
            open_ms = int(open_time.timestamp() * 1000)
            rows.append(
                [
                    open_ms,
                    f"{close:.2f}",
                    f"{close * 1.01:.2f}",
                    f"{close * 0.99:.2f}",
                    f"{close:.2f}",
                    "1.0",
                    open_ms + step * 1000 - 1,
                    "1.0",
                    1,
                    "0.5",
                    "0.5",
                    "0",
                ]
            )
        return 200, {}, rows

    def _candles(self, product: str, params: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        symbol, _, quote = product.partition("-")
        if quote != "USD" or symbol not in BASE_PRICES:
            return 404, {}, {"message": "NotFound"}
        step = int(params.get("granularity", "0"))
        if step not in BINANCE_INTERVALS.values():
            return 400, {}, {"message": "Unsupported granularity"}
        start = datetime.fromisoformat(params["start"])
        end = datetime.fromisoformat(params["end"])
        if (end - start).total_seconds() / step >= COINBASE_MAX_CANDLES:
            return 400, {}, {"message": "granularity too small for the requested time range"}
        rows = [
            [
                int(t.timestamp()),
                close_price(symbol, t) * 0.99,
                close_price(symbol, t) * 1.01,
                close_price(symbol, t),
                close_price(symbol, t),
                1.0,
            ]
            for t in self._series(symbol, start, end, step)
        ]
        return 200, {}, rows[::-1]  # newest first, as Coinbase sends them


class _Handler(FakeHandler[FakeExchange]):
    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        params = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        status, headers, body = self.fake.respond(parsed.path, params)
        if isinstance(body, str):
            self.send_raw(status, body.encode(), headers)
        else:
            self.send_json(status, body, headers)
