"""Fixes to faust-streaming 0.15.3 that table correctness across a restart depends on.

Found with the crash test (a worker SIGKILLed mid-stream, restarted): in 8 of 17
restarts, the agent processor had lost the first 20-odd records of every
`reconciled` partition, and the reconcile processor lost records of its own
input. No exception, and Faust's table recovery was exact. The cause is the
recovery race of BROKER-NOTES, which loses records as well as repeating them:

1. **Seek before resuming.** When recovery completes, Faust resumes fetching the
   stream partitions, then seeks them to their committed offsets, then resumes the
   flow, which clears the stream queues. Records fetched while the seek is under way
   are dropped (the flow is still suspended) or cleared, and Faust notes them as
   read. Where a commit exists, the seek rewinds and they come again; where none
   exists (the previous worker had not yet committed that partition), aiokafka's
   seek does nothing and they are gone. `on_recovery_completed` here seeks first,
   while the partitions are still paused, then resumes the flow, then the partitions:
   nothing can be fetched before the seek.

2. **No commit, start from the reset point.** The seek sends a partition with no
   committed offset to where `consumer_auto_offset_reset` says (ours: the
   beginning), with a concrete offset and a synchronous seek, so a record fetched
   and dropped before it comes back. Changelog partitions are left alone: table
   recovery keeps its own offsets. A record processed twice is absorbed by the
   idempotent folds.

3. **Flush means acknowledged.** Before committing offsets, Faust flushes its
   producer so that the changelog writes made for the committed records reach Kafka
   first. `ProducerBuffer.flush` gives up when 0.1 s pass without a message leaving
   the buffer, and the commit goes ahead anyway; a crash then loses table updates the
   commit already covers. On our broker a send can take longer than that (the proxy
   holds each produce ack until the durable log has the records).
   Here the buffer tracks each message until the broker acknowledges it (or the send
   fails), and a flush of a running buffer waits for all of them, warning every
   `ACK_WAIT_S` while it waits. It used to give up after 30 s and let the commit go
   ahead of unacknowledged writes (seen under load: "committing with 3810 writes not
   acknowledged"); it no longer does. A stopping buffer keeps Faust's own flush,
   which is what runs while Faust shuts its services down.

4. **Short fetch waits.** Faust creates its consumer with `fetch_max_wait_ms=1500`;
   Tansu holds every fetch that long even when records arrive meanwhile, so each hop
   of the pipeline waited up to 1.5 s. The worker's consumer waits `FETCH_MAX_WAIT_MS`.

5. **States written at commit.** A commit first runs the callbacks registered with
   `before_commit` (the processors write the states changed since the last commit,
   see `streams.runtime.write_behind`), then flushes the producer (fix 3), then
   commits: the offsets never get ahead of the states that cover them.

6. **No record dropped unprocessed.** Faust's `getmany` drops records it has fetched
   when the flow stops, the generation changes or the partition is no longer active
   while it hands them out; aiokafka's position is already past them. Unless a seek
   follows (a rebalance's recovery seeks to the committed offsets), the partition's
   next fetch starts after them: if records follow, Faust takes the offsets in between
   for a gap (records compacted away, transaction markers) and commits past them as if
   processed; if none follow, the partition is never fetched again and its commit
   stays behind (the "partition that is never fetched again" of docs/ARCHITECTURE.md).
   Our topics have no such gaps. Seen in the chaos run (`bench.chaos --short`: a
   rebalance, workers SIGKILLed, the broker killed and restored): the worker started
   after the restore fetched every source partition to its end at once, dropped it,
   and committed past 100-300 records per partition; 753 to 1,563 accepted events
   never processed in 3 of 5 runs. Here, after each `getmany`, a partition whose
   fetched records were not all handed on (or that jumped past its next offset) is
   sought back to the first of them, with a warning, unless a seek moved it meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types import FutureMessage

logger = logging.getLogger(__name__)

# A commit waits for every changelog write before it, and warns every ACK_WAIT_S while
# it does. It never goes ahead without the acks: a write either gets its ack or fails
# (aiokafka's request timeout; the proxy drops a connection whose records it cannot
# make durable, and the producer retries), and a failed write is no longer waited on.
ACK_WAIT_S = 30.0

# Tansu answers a fetch only when its max wait has passed, even when records arrive
# meanwhile (measured: a record produced to an idle partition reached the consumer after
# ~450 ms with Faust's hard-coded 1500 ms, ~5 ms with 50 ms). Every hop of the pipeline
# (source -> intake -> processor -> processor) paid that.
FETCH_MAX_WAIT_MS = 50

_original_put = ProducerBuffer.put
_original_flush = ProducerBuffer.flush
_original_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
_original_commit_offsets = Consumer._commit_offsets
_original_getmany = Consumer.getmany
_original_wait_next_records = Consumer._wait_next_records

# Callbacks run before each commit of an app's consumer, by app.
_BEFORE_COMMIT: dict[int, list[Callable[[], object]]] = {}


def before_commit(app: Any, callback: Callable[[], object]) -> None:
    """Run `callback` before every offset commit of `app`'s consumer (fix 5)."""
    _BEFORE_COMMIT.setdefault(id(app), []).append(callback)


async def _write_states_then_commit(
    self: Consumer, offsets: Mapping[Any, int], start_new_transaction: bool = True
) -> bool:
    for callback in _BEFORE_COMMIT.get(id(self.app), ()):
        callback()
    committed: bool = await _original_commit_offsets(self, offsets, start_new_transaction)
    return committed


async def seek_to_committed_or_reset(
    consumer: AIOKafkaConsumer, changelog_topics: set[str], reset: str
) -> Mapping[TopicPartition, int | None]:
    """Seek each assigned partition to its committed offset; one with no commit (other
    than a changelog) to where `reset` starts. Returns the committed offsets."""
    committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
    uncommitted = [
        tp for tp, offset in committed.items() if not offset and tp.topic not in changelog_topics
    ]
    if uncommitted:
        # A concrete offset and a synchronous seek: aiokafka's seek_to_beginning only
        # requests a reset, which lands after Faust has moved on, and Faust then drops
        # the records fetched again as already read.
        lookup = consumer.beginning_offsets if reset == "earliest" else consumer.end_offsets
        for tp, offset in (await lookup(uncommitted)).items():
            consumer.seek(tp, offset)
    return committed


async def _seek_every_source_partition(self: AIOKafkaConsumerThread) -> Mapping[Any, Any]:
    return await self.call_thread(
        seek_to_committed_or_reset,
        self._ensure_consumer(),
        set(self.app.tables.changelog_topics),
        self.app.conf.consumer_auto_offset_reset,
    )


async def _seek_then_resume(self: Recovery, generation_id: int = 0) -> None:
    """Faust's `Recovery.on_recovery_completed`, with the seek moved before the resume."""
    app: Any = self.app
    consumer = app.consumer
    self.log.info("Restore complete!")
    await app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]
            )
        )
        for table in self.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets (still paused).")
        await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        if app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
    self.completed.set()
    app.flow_control.resume()
    consumer.resume_flow()
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    await app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


def _unacknowledged(buffer: ProducerBuffer) -> set[FutureMessage]:
    found: set[FutureMessage] = buffer.__dict__.setdefault("_metasup_unacked", set())
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
    waited = 0.0
    while self.state == "running":
        waiting = set(_unacknowledged(self))
        if not waiting:
            return
        _, unacknowledged = await asyncio.wait(waiting, timeout=ACK_WAIT_S)
        if not unacknowledged:
            return
        waited += ACK_WAIT_S
        topics = sorted({str(fut.message.channel) for fut in unacknowledged})
        logger.warning(
            "commit waiting: %d writes not acknowledged after %.0f s (topics %s)",
            len(unacknowledged),
            waited,
            topics,
        )


def _create_worker_consumer_short_fetch_wait(
    self: AIOKafkaConsumerThread, transport: Any
) -> AIOKafkaConsumer:
    consumer: AIOKafkaConsumer = _original_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
    return consumer


async def _wait_and_keep_fetched(self: Consumer, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's signature)
    """Faust's `_wait_next_records`, keeping what was fetched, and each partition's read
    offset then, for the check of fix 6."""
    records, active = await _original_wait_next_records(self, timeout)
    fetched = records or {}
    self.__dict__["_metasup_fetched"] = (fetched, {tp: self._read_offset[tp] for tp in fetched})
    return records, active


async def _getmany_without_skips(self: Consumer, timeout: float) -> AsyncIterator[Any]:  # noqa: ASYNC109 (Faust's signature)
    """Faust's `getmany`, then every partition it did not hand all its records on is
    sought back (fix 6): to the first record fetched but dropped, or, when a record
    jumps past the next offset, to the partition's read offset (which may fetch one
    record twice: harmless, where skipping one is not). A partition sought meanwhile
    (a rebalance seeks to the committed offsets) is left where that seek put it."""
    jumped: dict[Any, int] = {}
    handed: dict[Any, int] = {}
    async for tp, message in _original_getmany(self, timeout):
        if tp in jumped:
            continue
        last = self._read_offset[tp]
        if last is not None and message.offset > last + 1 and _acked(self, tp):
            jumped[tp] = last
            continue
        handed[tp] = message.offset
        yield tp, message
    fetched, read_then = self.__dict__.pop("_metasup_fetched", ({}, {}))
    rewind = {}
    for tp, records in fetched.items():
        if not records or not _acked(self, tp):
            continue
        if tp in jumped:
            expected, offset = jumped[tp], jumped[tp]
        elif tp in handed:
            expected, offset = handed[tp], handed[tp] + 1
        else:
            expected, offset = read_then.get(tp), records[0].offset
        if self._read_offset[tp] == expected and offset <= records[-1].offset:
            rewind[tp] = offset
    await _rewind(self, rewind)


def _acked(consumer: Consumer, tp: Any) -> bool:
    """Whether Faust commits this partition from acks (not a changelog), so a record it
    drops unprocessed would be committed past."""
    return bool(consumer.app.topics.acks_enabled_for(tp.topic))


async def _rewind(consumer: Consumer, rewind: Mapping[Any, int]) -> None:
    assigned = consumer.assignment()
    for tp, offset in rewind.items():
        committed = consumer._committed_offset.get(tp)
        if tp not in assigned or (committed is not None and offset < committed):
            continue  # revoked (its next owner starts from the commit), or done already
        logger.warning(
            "records of %s[%d] from offset %d were fetched but not processed; fetching "
            "them again (a commit would have gone past them)",
            tp.topic,
            tp.partition,
            offset,
        )
        await consumer.seek(tp, offset)


def apply_faust_fixes() -> None:
    """Install the fixes (idempotent; process-wide, as Faust's classes are)."""
    Recovery.on_recovery_completed = _seek_then_resume  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = _seek_every_source_partition  # type: ignore[method-assign]
    ProducerBuffer.put = _put_and_track  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_until_acknowledged  # type: ignore[method-assign]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer_short_fetch_wait  # type: ignore[method-assign]
    Consumer._commit_offsets = _write_states_then_commit  # type: ignore[method-assign]
    Consumer._wait_next_records = _wait_and_keep_fetched  # type: ignore[method-assign]
    Consumer.getmany = _getmany_without_skips  # type: ignore[method-assign]
