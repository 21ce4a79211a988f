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
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker.admin import topic_partitions
from streams.broker.durable_log import DurableLog, StoredRecord

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        bootstrap: str,
        durable_log: DurableLog,
        groups: Iterable[str] = (),
        topic_refresh_s: float = 1.0,
        group_offsets_every_s: float = 1.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.durable_log = durable_log
        self.groups = tuple(groups)
        self.topic_refresh_s = topic_refresh_s
        self.group_offsets_every_s = group_offsets_every_s
        self.copied = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()
        self._highwater: dict[TopicPartition, int] = {}
        self._durable: dict[tuple[str, int], int] = durable_log.next_offsets()
        self._copied = asyncio.Condition()

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
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("Recorder.start() must run first")
        return self._consumer

    async def refresh_assignment(self) -> None:
        """Follow new topics (Faust creates changelogs on the fly) and partitions."""
        partitions = await topic_partitions(self.bootstrap)
        self.durable_log.set_topics(partitions)
        wanted = {TopicPartition(t, p) for t, count in partitions.items() for p in range(count)}
        if wanted == self._assigned:
            return
        self.consumer.assign(sorted(wanted))
        resume_at = self.durable_log.next_offsets()
        for tp in wanted:
            self.consumer.seek(tp, resume_at.get((tp.topic, tp.partition), 0))
        self._assigned = wanted

    async def copy_once(self, timeout_ms: int = 100) -> int:
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
        self.durable_log.append(records)
        self.copied += len(records)
        if records:
            for record in records:
                key = (record.topic, record.partition)
                self._durable[key] = max(self._durable.get(key, 0), record.offset + 1)
            async with self._copied:
                self._copied.notify_all()
        return len(records)

    async def wait_durable(
        self, topic: str, partition: int, offset: int, timeout_s: float = 5.0
    ) -> None:
        """Return once the record at `offset` is in the durable log (the proxy holds the
        producer's ack until then). After `timeout_s` it gives up and logs it: a stuck
        recorder must not stop every producer."""

        def stored() -> bool:
            return self._durable.get((topic, partition), 0) > offset

        try:
            async with self._copied:
                await asyncio.wait_for(self._copied.wait_for(stored), timeout_s)
        except TimeoutError:
            log.warning("ack of %s[%d]@%d released before it was copied", topic, partition, offset)

    def lag(self) -> int:
        """Records the broker has that the durable log does not, as of the last fetches."""
        stored = self.durable_log.next_offsets()
        return sum(
            max(0, highwater - stored.get((tp.topic, tp.partition), 0))
            for tp, highwater in self._highwater.items()
        )

    async def save_group_offsets(self) -> None:
        for group in self.groups:
            probe = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
            )
            await probe.start()
            try:
                committed: dict[tuple[str, int], int] = {}
                for tp in self._assigned:
                    offset = await probe.committed(tp)
                    if offset is not None and offset >= 0:
                        committed[(tp.topic, tp.partition)] = offset
                self.durable_log.save_group_offsets(group, committed)
            finally:
                await probe.stop()

    async def drain(self, quiet_ms: int = 300) -> None:
        """Copy until a fetch round brings nothing new and no partition is behind."""
        await self.refresh_assignment()
        idle_rounds = 0
        while idle_rounds < 2 or self.lag() > 0:
            copied = await self.copy_once(timeout_ms=quiet_ms)
            idle_rounds = idle_rounds + 1 if copied == 0 else 0
        await self.save_group_offsets()

    async def run(self, stop: asyncio.Event) -> None:
        """Copy continuously until `stop` is set, then drain what is left."""
        loop = asyncio.get_running_loop()
        next_refresh = next_offsets_save = loop.time()
        while not stop.is_set():
            await self.copy_once()
            now = loop.time()
            if now >= next_refresh:
                with contextlib.suppress(Exception):
                    await self.refresh_assignment()
                next_refresh = now + self.topic_refresh_s
            if now >= next_offsets_save:
                with contextlib.suppress(Exception):
                    await self.save_group_offsets()
                next_offsets_save = now + self.group_offsets_every_s
