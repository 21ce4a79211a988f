"""A commit must not run ahead of the changelog: Faust's producer flush, which runs
before every offset commit, returns only when the broker has acknowledged every
message handed to the buffer (streams/runtime/faust_fixes.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer
from faust.types import FutureMessage

from streams.runtime.faust_fixes import apply_faust_fixes


class SlowBroker:
    """A channel whose broker acknowledges each message `ack_after_s` after it is sent,
    slower than the 0.1 s Faust's own flush waits before giving up."""

    def __init__(self, ack_after_s: float) -> None:
        self.ack_after_s = ack_after_s

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        asyncio.get_running_loop().call_later(self.ack_after_s, fut.set_result, None)


def changelog_write(channel: Any) -> FutureMessage:
    return FutureMessage(SimpleNamespace(channel=channel))  # type: ignore[arg-type]


async def running_buffer() -> ProducerBuffer:
    buffer = ProducerBuffer(loop=asyncio.get_running_loop())
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buffer.start()
    return buffer


async def test_flush_returns_only_after_every_write_is_acknowledged() -> None:
    apply_faust_fixes()
    buffer = await running_buffer()
    try:
        writes = [changelog_write(SlowBroker(ack_after_s=0.3)) for _ in range(3)]
        for write in writes:
            buffer.put(write)
        await buffer.flush()
        assert all(write.done() for write in writes)
    finally:
        await buffer.stop()


async def test_flush_never_lets_a_commit_past_a_slow_ack(monkeypatch: Any) -> None:
    """The wait is reported every ACK_WAIT_S, but the flush (and so the commit) goes on
    waiting until the write is acknowledged."""
    import streams.runtime.faust_fixes as fixes

    apply_faust_fixes()
    monkeypatch.setattr(fixes, "ACK_WAIT_S", 0.05)
    buffer = await running_buffer()
    try:
        write = changelog_write(SlowBroker(ack_after_s=0.4))
        buffer.put(write)
        await buffer.flush()
        assert write.done()
    finally:
        await buffer.stop()
