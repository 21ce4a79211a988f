"""Copies every record of every topic from the broker into the durable log, as it arrives.

A plain aiokafka consumer without a group: it assigns itself every partition of
every topic and resumes at the durable log's next offsets, so copying is
idempotent across restarts. The end of a partition is taken from fetch
responses (highwater), never from ListOffsets, which Tansu gets wrong for
multi-record batches (BROKER-NOTES defect 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker.admin import topic_partitions
from streams.broker.durable_log import DurableLog, StoredRecord

log = logging.getLogger(__name__)


class NotDurable(RuntimeError):
    """The records of an ack could not be copied in time: the ack must not be sent."""


Ends = list[tuple[str, int, int]]


class Recorder:
    """Copies in batches: one SQLite transaction per fetch round (up to 10,000 records),
    and every ack waiting on records of that round is released at once.

    The copy loop does nothing else: following new topics and saving the groups'
    committed offsets run beside it, so a slow metadata or offset request never holds
    a producer's ack (it used to: one consumer per group per second, one OffsetFetch
    per partition, inside the copy loop; under load that stalled copying for seconds,
    and acks older than 5 s were then released before their records were copied)."""

    def __init__(
        self,
        bootstrap: str,
        durable_log: DurableLog,
        groups: Iterable[str] = (),
        topic_refresh_s: float = 1.0,
        group_offsets_every_s: float = 1.0,
        ack_timeout_s: float = 60.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.durable_log = durable_log
        self.groups = tuple(groups)
        self.topic_refresh_s = topic_refresh_s
        self.group_offsets_every_s = group_offsets_every_s
        self.ack_timeout_s = ack_timeout_s
        self.copied = 0
        self.copies = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._probes: dict[str, AIOKafkaConsumer] = {}
        self._assigned: set[TopicPartition] = set()
        self._wanted: set[TopicPartition] | None = None
        self._highwater: dict[TopicPartition, int] = {}
        self._durable: dict[tuple[str, int], int] = durable_log.next_offsets()
        self._waiters: list[tuple[Ends, asyncio.Future[None]]] = []

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # Copy as soon as records arrive: the copy lag is what a broker crash can lose.
            fetch_max_wait_ms=5,
        )
        await self._consumer.start()
        await self.refresh_assignment()

    async def stop(self) -> None:
        self._fail_waiters("the recorder stopped")
        for probe in self._probes.values():
            with contextlib.suppress(Exception):
                await probe.stop()
        self._probes = {}
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("Recorder.start() must run first")
        return self._consumer

    async def _wanted_partitions(self) -> set[TopicPartition]:
        partitions = await topic_partitions(self.bootstrap)
        self.durable_log.set_topics(partitions)
        return {TopicPartition(t, p) for t, count in partitions.items() for p in range(count)}

    def _apply_assignment(self, wanted: set[TopicPartition]) -> None:
        if wanted == self._assigned:
            return
        self.consumer.assign(sorted(wanted))
        for tp in wanted:  # resume where the durable log ends (re-copies are ignored)
            self.consumer.seek(tp, self._durable.get((tp.topic, tp.partition), 0))
        self._assigned = wanted

    async def refresh_assignment(self) -> None:
        """Follow new topics (Faust creates changelogs on the fly) and partitions."""
        self._apply_assignment(await self._wanted_partitions())

    async def copy_once(self, timeout_ms: int = 100) -> int:
        if self._wanted is not None:
            self._apply_assignment(self._wanted)
            self._wanted = None
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        records = [
            StoredRecord(
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                timestamp_ms=m.timestamp,
                key=m.key,
                value=m.value,
                headers=tuple((name, bytes(value)) for name, value in m.headers),
            )
            for messages in batches.values()
            for m in messages
        ]
        for tp in batches:
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self._highwater[tp] = highwater
        if not records:
            return 0
        self.durable_log.append(records)  # one transaction for the whole round
        self.copied += len(records)
        self.copies += 1
        for tp, messages in batches.items():
            if messages:
                key = (tp.topic, tp.partition)
                self._durable[key] = max(self._durable.get(key, 0), messages[-1].offset + 1)
        self._release()
        return len(records)

    def is_durable(self, ends: Ends) -> bool:
        return all(self._durable.get((t, p), 0) >= end for t, p, end in ends)

    def _release(self) -> None:
        """Release every ack whose records are all in the durable log now."""
        waiting: list[tuple[Ends, asyncio.Future[None]]] = []
        for ends, future in self._waiters:
            if future.done():
                continue
            if self.is_durable(ends):
                future.set_result(None)
            else:
                waiting.append((ends, future))
        self._waiters = waiting

    def _fail_waiters(self, reason: str) -> None:
        for ends, future in self._waiters:
            if not future.done():
                future.set_exception(NotDurable(f"{reason}: {ends}"))
        self._waiters = []

    async def wait_durable(self, ends: Ends) -> None:
        """Return once, for each (topic, partition, end), every record below `end` is in
        the durable log (the proxy holds the producer's ack until then).

        Never releases an ack early. If the records are still not copied after
        `ack_timeout_s` (or the recorder stops), it raises `NotDurable`: the proxy then
        drops the connection without the ack, and the producer retries, so a stuck
        recorder costs duplicates (absorbed by the idempotent folds), never a loss."""
        if self.is_durable(ends):
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((ends, future))
        deadline = loop.time() + self.ack_timeout_s
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(future), min(5.0, self.ack_timeout_s))
                    return
                except TimeoutError:
                    missing = [
                        (t, p, self._durable.get((t, p), 0), end)
                        for t, p, end in ends
                        if self._durable.get((t, p), 0) < end
                    ]
                    if loop.time() >= deadline:
                        log.error("ack not sent: records not copied in time %s", missing)
                        raise NotDurable(
                            f"not copied after {self.ack_timeout_s:.0f} s: {missing}"
                        ) from None
                    log.warning(
                        "ack held: records not yet copied (topic, partition, copied, end) %s",
                        missing,
                    )
        finally:
            if not future.done():
                future.cancel()

    def lag(self) -> int:
        """Records the broker has that the durable log does not, as of the last fetches."""
        return sum(
            max(0, highwater - self._durable.get((tp.topic, tp.partition), 0))
            for tp, highwater in self._highwater.items()
        )

    async def _probe(self, group: str) -> AIOKafkaConsumer:
        probe = self._probes.get(group)
        if probe is None:
            probe = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
            )
            await probe.start()
            self._probes[group] = probe
        return probe

    async def save_group_offsets(self) -> None:
        """One OffsetFetch per group for every partition (not one request per partition)."""
        for group in self.groups:
            probe = await self._probe(group)
            coordinator: Any = probe._coordinator
            found = await coordinator.fetch_committed_offsets(sorted(self._assigned))
            committed = {
                (tp.topic, tp.partition): meta.offset
                for tp, meta in found.items()
                if meta is not None and meta.offset is not None and meta.offset >= 0
            }
            self.durable_log.save_group_offsets(group, committed)

    async def drain(self, quiet_ms: int = 300) -> None:
        """Copy until a fetch round brings nothing new and no partition is behind."""
        await self.refresh_assignment()
        self._wanted = None
        idle_rounds = 0
        while idle_rounds < 2 or self.lag() > 0:
            copied = await self.copy_once(timeout_ms=quiet_ms)
            idle_rounds = idle_rounds + 1 if copied == 0 else 0
        await self.save_group_offsets()

    async def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            with contextlib.suppress(Exception):
                await job()
            await asyncio.sleep(seconds)

    async def _follow_topics(self) -> None:
        self._wanted = await self._wanted_partitions()

    async def run(self, stop: asyncio.Event) -> None:
        """Copy continuously until `stop` is set; topics and group offsets beside it."""
        helpers = [
            asyncio.create_task(self._every(self.topic_refresh_s, self._follow_topics)),
            asyncio.create_task(self._every(self.group_offsets_every_s, self.save_group_offsets)),
        ]
        try:
            while not stop.is_set():
                await self.copy_once()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
