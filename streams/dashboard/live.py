"""The dashboard's live fleet projection: the log read once from offset 0, then followed.

The catch-up is the replay every report uses (`projections.replay`, records merged by
broker receipt), so the page starts from exactly what `metasup report meta` shows; after
it one group-less consumer follows every public topic from where the replay stopped,
each fetched batch folded in receipt order. The panels are recomputed at most every
`refresh_s` and only when something was folded: a busy log costs one recompute per
interval, not one per record.

A broker restarted under the follower (the stack restores it from the durable log, every
record at its old offset) is followed on: the consumer reconnects and fetches from where
it was, getting nothing until the restore has come that far. Should a fetch ever come back
from before where the follower was (a Kafka broker answers "out of range" for a partition
not yet restored, and the consumer starts it over from its earliest record), the follow
ends and the next attempt replays from offset 0 into a fresh projection: a record is never
folded twice.

Pending reconciliations (for `/metrics`) are folded here too, record by record, with
`metasup status`'s own fold, so a scrape costs nothing however long the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from projections.fleet import REPORT_TOPICS, FleetProjection
from projections.log import LogRecord, LogUnavailable, events, receipt_key
from projections.panels import (
    FEED_SIZE,
    MAX_CURVE_POINTS,
    AgentsPanel,
    DashboardState,
    dashboard_state,
)
from projections.reconcile_status import STATUS_TOPICS, ReconcileStatus
from projections.replay import BrokerSource, Replay
from projections.reports.meta import report_json
from schemas.topics import topic
from streams.broker.consumers import assigned_consumer
from streams.broker.durable_log import TopicPartitionKey
from streams.broker.offsets import consumer_lag
from streams.core.signing import FactVerifier

log = logging.getLogger(__name__)

REFRESH_S: Final = 0.5
# Events per second are measured over this much of the recent past.
RATE_WINDOW_S: Final = 60.0
RETRY_S: Final = 1.0
FETCH_WAIT_MS: Final = 500
# How often the workers' lag per agent is asked of the broker (it reads committed offsets:
# cheap, but not per record).
LAG_POLL_S: Final = 5.0
AGENT_INPUT: Final = "agent-input"


@dataclass(frozen=True)
class Rendered:
    """One recomputed state: the model and the bytes every endpoint serves."""

    version: int
    state: DashboardState
    state_json: bytes
    panels: dict[str, bytes]


def agent_partition(agent: str) -> int:
    """The `agent-input` partition the workers read the agent's records from: the default
    partitioner over the agent's name, the key the processors forward under (the worker
    finds its own agents the same way, `streams.runtime.agent_shell`)."""
    return (murmur2(agent.encode()) & 0x7FFFFFFF) % topic(AGENT_INPUT).partitions


def with_agent_lags(state: DashboardState, lags: Mapping[int, int]) -> DashboardState:
    """Each agent's health with the workers' lag on its `agent-input` partition (None where
    the workers have committed nothing there yet)."""
    rows = [
        row.model_copy(
            update={
                "health": row.health.model_copy(
                    update={"consumer_lag": lags.get(agent_partition(row.agent))}
                )
            }
        )
        for row in state.agents.rows
    ]
    return state.model_copy(update={"agents": AgentsPanel(rows=rows)})


def render(
    projection: FleetProjection,
    version: int,
    max_points: int,
    feed_size: int,
    agent_lags: Mapping[int, int],
) -> Rendered:
    state = with_agent_lags(dashboard_state(projection, max_points, feed_size), agent_lags)
    panels = {name: report_json(getattr(state, name)) for name in type(state).model_fields}
    return Rendered(version, state, report_json(state), panels)


class LogRewound(RuntimeError):
    """A fetch returned records from before where the follower was."""


@dataclass
class Folded:
    """What the log has been folded into so far."""

    fleet: FleetProjection
    reconciliations: ReconcileStatus

    def apply_record(self, record: LogRecord, verifier: FactVerifier, prefix: str) -> None:
        self.fleet.apply_record(record, verifier, prefix)
        if record.topic.removeprefix(prefix) in STATUS_TOPICS:
            for event in events([record], verifier=verifier):  # as `metasup status` decodes
                self.reconciliations.apply(event)


def catch_up(
    bootstrap: str, topics: list[str], verifier: FactVerifier, prefix: str
) -> tuple[Folded, dict[TopicPartitionKey, int], Counter[str]]:
    """The log up to its current end folded (blocking: run it in a thread), where the
    replay stopped per partition, and the records read per topic."""
    source = BrokerSource(bootstrap)
    try:
        replay = Replay(source, topics, progress=False)
        folded = Folded(FleetProjection(), ReconcileStatus())
        for record in replay:
            folded.apply_record(record, verifier, prefix)
        return folded, replay.position, replay.records_by_topic
    finally:
        source.close()


class LiveFleet:
    """The projection, the panels rendered from it, and what `/metrics` counts."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        verifier: FactVerifier,
        refresh_s: float = REFRESH_S,
        max_points: int = MAX_CURVE_POINTS,
        feed_size: int = FEED_SIZE,
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.verifier = verifier
        self.refresh_s = refresh_s
        self.max_points = max_points
        self.feed_size = feed_size
        self.topics = [prefix + name for name in REPORT_TOPICS]
        self.folded = Folded(FleetProjection(), ReconcileStatus())
        # The workers' committed lag per `agent-input` partition (`poll_agent_lags`).
        self.agent_lags: dict[int, int] = {}
        self._lags_changed = False
        self.rendered = render(self.folded.fleet, 0, max_points, feed_size, self.agent_lags)
        # Records per public topic (without the prefix) since the last catch-up.
        self.events: Counter[str] = Counter()
        self._rate_samples: deque[tuple[float, Counter[str]]] = deque()
        self._changed = asyncio.Event()

    # --- following the log --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until `stop`; a broker that fails is retried from offset 0."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except (
                KafkaError,
                OSError,
                TimeoutError,
                LogUnavailable,
                LookupError,
                LogRewound,
            ) as error:
                log.warning("cannot read the log (%s); retrying", error or type(error).__name__)
            except Exception:  # a page frozen without a word would be worse than a retry
                log.exception("following the log failed; starting again from offset 0")
            with contextlib.suppress(TimeoutError):  # (after `stop`, this returns at once)
                await asyncio.wait_for(stop.wait(), RETRY_S)

    async def _follow(self, stop: asyncio.Event) -> None:
        folded, position, counts = await asyncio.to_thread(
            catch_up, self.bootstrap, self.topics, self.verifier, self.prefix
        )
        self.folded = folded
        self.events = Counter({topic.removeprefix(self.prefix): n for topic, n in counts.items()})
        self._rate_samples.clear()
        await self._publish()
        present = sorted({topic for topic, _ in position})
        if not present:
            raise LookupError(f"no topics {self.prefix}* on {self.bootstrap} yet")
        async with assigned_consumer(self.bootstrap, present) as (consumer, partitions):
            for tp in partitions:
                consumer.seek(tp, position.get((tp.topic, tp.partition), 0))
            dirty = False
            last_render = time.monotonic()
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=FETCH_WAIT_MS)
                if self._fold(fetched, position):
                    dirty = True
                self._sample_rate()
                dirty = dirty or self._lags_changed
                if dirty and time.monotonic() - last_render >= self.refresh_s:
                    await self._publish()
                    dirty, last_render = False, time.monotonic()

    def _fold(
        self,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        position: dict[TopicPartitionKey, int],
    ) -> bool:
        """Fold one fetch, its partitions merged by receipt, advancing `position` (the next
        offset per partition); True if anything was folded."""
        for tp, batch in fetched.items():
            expected = position.get((tp.topic, tp.partition), 0)
            if batch and batch[0].offset < expected:
                raise LogRewound(
                    f"{tp.topic}[{tp.partition}] came back from offset {batch[0].offset}, "
                    f"not {expected}: reading the log again from offset 0"
                )
            if batch:
                position[(tp.topic, tp.partition)] = batch[-1].offset + 1
        records = sorted(
            (
                LogRecord(m.topic, m.partition, m.offset, m.timestamp, m.value)
                for batch in fetched.values()
                for m in batch
            ),
            key=receipt_key,
        )
        for record in records:
            self.folded.apply_record(record, self.verifier, self.prefix)
            self.events[record.topic.removeprefix(self.prefix)] += 1
        return bool(records)

    async def _publish(self) -> None:
        """Recompute the panels off the event loop (the follower waits, so the projection
        does not change meanwhile) and wake every subscriber."""
        self._lags_changed = False
        self.rendered = await asyncio.to_thread(
            render,
            self.folded.fleet,
            self.rendered.version + 1,
            self.max_points,
            self.feed_size,
            dict(self.agent_lags),
        )
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def poll_agent_lags(self, group_id: str, stop: asyncio.Event) -> None:
        """Every LAG_POLL_S, the workers' lag on `agent-input`; the follower shows a change
        with its next render. A broker that does not answer leaves the last figures."""
        while not stop.is_set():
            try:
                lags = await consumer_lag(self.bootstrap, group_id, [self.prefix + AGENT_INPUT])
            except (KafkaError, OSError, TimeoutError) as error:
                log.debug("no consumer lag (%s)", error)
            else:
                fresh = {lag.partition: lag.lag for lag in lags}
                if fresh != self.agent_lags:
                    self.agent_lags, self._lags_changed = fresh, True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LAG_POLL_S)

    def wake(self) -> None:
        """Wake every subscriber without a new state (the server is closing)."""
        self._changed.set()

    async def changed_since(self, version: int, timeout_s: float) -> bool:
        """Wait until the rendered state is newer than `version`; False after `timeout_s`."""
        if self.rendered.version != version:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # --- what /metrics reports ----------------------------------------------------------

    def _sample_rate(self) -> None:
        now = time.monotonic()
        if self._rate_samples and now - self._rate_samples[-1][0] < 1.0:
            return
        self._rate_samples.append((now, Counter(self.events)))
        while self._rate_samples and now - self._rate_samples[0][0] > RATE_WINDOW_S:
            self._rate_samples.popleft()

    def rates(self) -> dict[str, float]:
        """Events per second per topic since the oldest sample of the rate window (the
        catch-up is not counted: it reads history, not traffic)."""
        if len(self._rate_samples) < 2:
            return dict.fromkeys(self.events, 0.0)
        then, counts = self._rate_samples[0]
        elapsed = time.monotonic() - then
        return {
            topic: max(0.0, (n - counts.get(topic, 0)) / elapsed) if elapsed > 0 else 0.0
            for topic, n in self.events.items()
        }

    def last_decision_at(self) -> datetime | None:
        decisions = self.folded.fleet.decisions.values()
        return max((made.ts for made in decisions), default=None)
