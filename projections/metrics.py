"""The dashboard's `GET /metrics` (SPEC section 9): what the server counted, in the
Prometheus text exposition format, for a scraper to alert on.

The figures come from the broker and the server's own counting, so the server gathers them
into a `MetricsSnapshot`; this module only writes them out, the same snapshot giving the
same text (a fresh registry per call: no process-wide state, no figure left over from an
earlier call).

Metrics (every name prefixed `metasup_`, its unit in its name):

- `metasup_events_total{topic}` (counter): events on each public topic so far.
- `metasup_events_per_second{topic}` (gauge): each topic's recent rate, as the server
  measured it.
- `metasup_consumer_lag_records{group,topic,partition}` (gauge): records a consumer group
  has yet to read on a partition (end offset minus committed offset).
- `metasup_deadletter_events_total` (counter): records rejected to `deadletter`.
- `metasup_pending_reconciliations` (gauge): signals whose horizon has not yet been priced.
- `metasup_last_decision_timestamp_seconds` (gauge): event time of the newest decision, in
  Unix seconds; absent until there is one (no sample rather than a made-up time).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from pydantic import Field

from schemas.envelope import UtcDatetime, WireModel

# The Content-Type header `GET /metrics` answers with.
CONTENT_TYPE: str = CONTENT_TYPE_LATEST


class TopicEvents(WireModel):
    topic: str
    events: int = Field(ge=0)
    per_second: float = Field(ge=0)


class PartitionLag(WireModel):
    group: str  # the consumer group (one per worker kind)
    topic: str
    partition: int = Field(ge=0)
    lag: int = Field(ge=0)


class MetricsSnapshot(WireModel):
    """What the server counted at one moment."""

    topics: list[TopicEvents] = Field(default_factory=list)
    consumer_lag: list[PartitionLag] = Field(default_factory=list)
    deadletter: int = Field(default=0, ge=0)
    pending_reconciliations: int = Field(default=0, ge=0)
    last_decision_at: UtcDatetime | None = None


class _SnapshotCollector:
    """Hands one snapshot to a registry as metric families, in a fixed order."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        topics = sorted(snapshot.topics, key=lambda t: t.topic)
        events = CounterMetricFamily(
            "metasup_events", "Events on each public topic so far.", labels=["topic"]
        )
        rate = GaugeMetricFamily(
            "metasup_events_per_second", "Recent events per second on each topic.", labels=["topic"]
        )
        for topic in topics:
            events.add_metric([topic.topic], topic.events)
            rate.add_metric([topic.topic], topic.per_second)
        lag = GaugeMetricFamily(
            "metasup_consumer_lag_records",
            "Records a consumer group has yet to read on a partition.",
            labels=["group", "topic", "partition"],
        )
        for part in sorted(snapshot.consumer_lag, key=lambda p: (p.group, p.topic, p.partition)):
            lag.add_metric([part.group, part.topic, str(part.partition)], part.lag)
        last_decision = GaugeMetricFamily(
            "metasup_last_decision_timestamp_seconds",
            "Event time of the newest decision, in Unix seconds.",
        )
        if snapshot.last_decision_at is not None:
            last_decision.add_metric([], snapshot.last_decision_at.timestamp())
        yield events
        yield rate
        yield lag
        yield CounterMetricFamily(
            "metasup_deadletter_events",
            "Records rejected to the deadletter topic.",
            value=snapshot.deadletter,
        )
        yield GaugeMetricFamily(
            "metasup_pending_reconciliations",
            "Signals whose horizon has not yet been priced.",
            value=snapshot.pending_reconciliations,
        )
        yield last_decision


def metrics_text(snapshot: MetricsSnapshot) -> bytes:
    """The snapshot in the Prometheus text format (served with `CONTENT_TYPE`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
