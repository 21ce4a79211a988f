"""Two fixes to faust-streaming 0.15.3 that table correctness after a restart depends on.

1. A restarted worker lost records (found with the crash test; docs/ARCHITECTURE.md,
   "Restarts"). When partitions are assigned, Faust resumes fetching, then seeks
   every partition back to its committed offset, then clears the stream queues (the
   recovery race of BROKER-NOTES). The records fetched before the seek are dropped
   from the queues and are meant to be fetched again after it. But aiokafka's
   `seek_to_committed` leaves a partition with no committed offset where the fetch
   left it, so those records were never processed. That is every partition the
   previous worker had not yet committed: in our runs the agent processor lost the
   first 20-odd records of `reconciled` on about one restart in three. The fix
   seeks such a partition to where `consumer_auto_offset_reset` says a consumer
   without a commit starts (ours: the beginning), so a dropped record comes back;
   a record processed twice is absorbed by the idempotent folds. Changelog
   partitions are left alone: table recovery tracks its own offsets.

2. Before committing offsets, Faust flushes its producer so that the changelog
   writes made for the committed records reach Kafka first. `ProducerBuffer.flush`
   gives up when 0.1 s pass without a message leaving the buffer, and the commit goes
   ahead anyway; a crash then loses table updates the commit already covers. On our
   broker a send can take longer than that (one-record batches; the proxy holds each
   produce ack until the durable log has the record). The fix: the buffer tracks each
   message until the broker acknowledges it, and flushing a running buffer waits for
   all of them. A stopping buffer keeps Faust's own flush, which is what runs while
   Faust shuts its services down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types import FutureMessage

_original_put = ProducerBuffer.put
_original_flush = ProducerBuffer.flush


async def _seek_to_committed_or_reset(
    consumer: AIOKafkaConsumer, changelog_topics: set[str], reset: str
) -> Mapping[TopicPartition, int | None]:
    committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
    uncommitted = [
        tp for tp, offset in committed.items() if not offset and tp.topic not in changelog_topics
    ]
    if uncommitted:
        if reset == "earliest":
            await consumer.seek_to_beginning(*uncommitted)
        else:
            await consumer.seek_to_end(*uncommitted)
    return committed


async def _seek_every_source_partition(self: AIOKafkaConsumerThread) -> Mapping[Any, Any]:
    return await self.call_thread(
        _seek_to_committed_or_reset,
        self._ensure_consumer(),
        set(self.app.tables.changelog_topics),
        self.app.conf.consumer_auto_offset_reset,
    )


def _unacknowledged(buffer: ProducerBuffer) -> set[asyncio.Future[Any]]:
    found: set[asyncio.Future[Any]] = buffer.__dict__.setdefault("_metasup_unacked", set())
    return found


def _put_and_track(self: ProducerBuffer, fut: FutureMessage) -> None:
    unacknowledged = _unacknowledged(self)
    unacknowledged.add(fut)
    fut.add_done_callback(unacknowledged.discard)
    _original_put(self, fut)


async def _flush_until_acknowledged(self: ProducerBuffer) -> None:
    if self.state != "running":
        await _original_flush(self)
        return
    waiting = set(_unacknowledged(self))
    if waiting:
        await asyncio.wait(waiting)


def apply_faust_fixes() -> None:
    """Install both fixes (idempotent; process-wide, as Faust's classes are)."""
    AIOKafkaConsumerThread.seek_to_committed = _seek_every_source_partition  # type: ignore[method-assign]
    ProducerBuffer.put = _put_and_track  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_until_acknowledged  # type: ignore[method-assign]
