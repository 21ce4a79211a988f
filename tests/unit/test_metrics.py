"""`GET /metrics`: what the server counted, read back by Prometheus's own text parser."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from projections.metrics import MetricsSnapshot, PartitionLag, TopicEvents, metrics_text

LAST_DECISION = datetime(2025, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)

SNAPSHOT = MetricsSnapshot(
    topics=[
        TopicEvents(topic="signals", events=1200, per_second=3.5),
        TopicEvents(topic="runs", events=1250, per_second=4.25),
    ],
    consumer_lag=[
        PartitionLag(group="metasup-agents", topic="signals", partition=3, lag=17),
        PartitionLag(group="metasup-agents", topic="signals", partition=0, lag=0),
        PartitionLag(group="metasup-fleet", topic="fleet-input", partition=0, lag=2),
    ],
    deadletter=4,
    pending_reconciliations=31,
    last_decision_at=LAST_DECISION,
)


def parsed(text: bytes) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    """Each family's type and its samples, keyed by their sorted labels."""
    return {
        family.name: (
            family.type,
            {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples},
        )
        for family in text_string_to_metric_families(text.decode())
    }


def test_the_text_parses_and_holds_the_figures_given() -> None:
    families = parsed(metrics_text(SNAPSHOT))
    assert families["metasup_events"] == (
        "counter",
        {(("topic", "runs"),): 1250.0, (("topic", "signals"),): 1200.0},
    )
    assert families["metasup_events_per_second"] == (
        "gauge",
        {(("topic", "runs"),): 4.25, (("topic", "signals"),): 3.5},
    )
    assert families["metasup_consumer_lag_records"] == (
        "gauge",
        {
            (("group", "metasup-agents"), ("partition", "0"), ("topic", "signals")): 0.0,
            (("group", "metasup-agents"), ("partition", "3"), ("topic", "signals")): 17.0,
            (("group", "metasup-fleet"), ("partition", "0"), ("topic", "fleet-input")): 2.0,
        },
    )
    assert families["metasup_deadletter_events"] == ("counter", {(): 4.0})
    assert families["metasup_pending_reconciliations"] == ("gauge", {(): 31.0})
    # 2025-03-01T12:30:15.25Z in Unix seconds, to the quarter second.
    assert families["metasup_last_decision_timestamp_seconds"] == ("gauge", {(): 1740832215.25})
    assert set(families) == {
        "metasup_events",
        "metasup_events_per_second",
        "metasup_consumer_lag_records",
        "metasup_deadletter_events",
        "metasup_pending_reconciliations",
        "metasup_last_decision_timestamp_seconds",
    }


def test_counters_are_exposed_with_the_total_suffix() -> None:
    text = metrics_text(SNAPSHOT).decode()
    assert 'metasup_events_total{topic="runs"} 1250.0' in text.splitlines()
    assert "metasup_deadletter_events_total 4.0" in text.splitlines()


def test_before_any_decision_there_is_no_made_up_time() -> None:
    families = parsed(metrics_text(MetricsSnapshot()))
    assert families["metasup_last_decision_timestamp_seconds"] == ("gauge", {})
    assert families["metasup_deadletter_events"] == ("counter", {(): 0.0})
    assert families["metasup_events"] == ("counter", {})


def test_each_call_shows_only_its_own_snapshot_in_a_fixed_order() -> None:
    first = metrics_text(SNAPSHOT)
    later = parsed(
        metrics_text(
            MetricsSnapshot(topics=[TopicEvents(topic="prices", events=1, per_second=0.0)])
        )
    )
    assert later["metasup_events"] == ("counter", {(("topic", "prices"),): 1.0})
    shuffled = SNAPSHOT.model_copy(
        update={
            "topics": SNAPSHOT.topics[::-1],
            "consumer_lag": SNAPSHOT.consumer_lag[::-1],
        }
    )
    assert metrics_text(shuffled) == first == metrics_text(SNAPSHOT)


def test_a_label_value_with_quotes_and_a_newline_reads_back_unchanged() -> None:
    topic = 'odd "topic"\nname\\'
    families = parsed(
        metrics_text(MetricsSnapshot(topics=[TopicEvents(topic=topic, events=2, per_second=1.0)]))
    )
    assert families["metasup_events"] == ("counter", {(("topic", topic),): 2.0})
