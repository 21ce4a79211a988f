"""Every worker (and every SDK guard) keeps its own FleetState by tailing the fleet topics.

The fleet topics are tiny and single-partition, so each reader folds all of them
from the start: nothing is lost on a rebalance, and no reader depends on another.
Kill and policy facts are folded only when the supervisor's signature verifies.
Readers wait for `ready` (caught up to the end at start-up) before they decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import RejectedRecord
from streams.broker.offsets import true_end_offsets
from streams.core.fleet_state import FleetState, apply_fleet_event
from streams.core.kill_list import kill_reason
from streams.core.signing import FactVerifier

log = logging.getLogger(__name__)

FLEET_TOPICS = ("policy", "regimes", "kills", "allocations")


class FleetView:
    def __init__(self, bootstrap: str, topic_prefix: str, verifier: FactVerifier) -> None:
        self.bootstrap = bootstrap
        self.verifier = verifier
        self.topics = [f"{topic_prefix}{name}" for name in FLEET_TOPICS]
        self.state = FleetState()
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def killed_reason(self, agent: str, strategy_class: str | None, at: datetime) -> str | None:
        """The SDK guard's question: may this agent run now?"""
        return kill_reason(self.state.kills, agent, strategy_class, at)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever())
        await self.ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_forever(self) -> None:
        """Keep following the fleet topics; after a broker error, rebuild from the start."""
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Keep answering from the last state (a kill stays a kill) while rebuilding.
                log.warning("fleet view lost the broker (%s); rebuilding in 1 s", error)
                await asyncio.sleep(1)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, 0) for topic in self.topics]
            consumer.assign(tps)
            ends = await true_end_offsets(consumer, tps)
            for tp in tps:
                consumer.seek(tp, 0)
            # Fold from scratch into a private state; publish it once caught up, so readers
            # never see a half-rebuilt kill list.
            state, caught_up = FleetState(), False
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                for messages in batches.values():
                    for message in messages:
                        state = fold(state, message.value, self.verifier)
                if not caught_up:
                    positions = [await consumer.position(tp) for tp in tps]
                    caught_up = all(p >= ends[tp] for p, tp in zip(positions, tps, strict=True))
                if caught_up:
                    self.state = state
                    self.ready.set()
        finally:
            await consumer.stop()


def fold(state: FleetState, raw: bytes | None, verifier: FactVerifier) -> FleetState:
    """Fold one record; an invalid record or an unverified governance fact changes nothing."""
    try:
        event = verifier.decode(raw)
    except RejectedRecord:
        return state  # the topic's intake agent reports it to `deadletter`
    return apply_fleet_event(state, event)
