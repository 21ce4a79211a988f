"""The lineage tree and the kill list as the meta report and `metasup report` show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from projections.fleet import FleetProjection, project_fleet
from projections.log import LogRecord
from projections.reports.governance import kill_list_text, lineage_text
from projections.reports.meta import kill_list_view, lineage_view
from schemas.codec import encode_event
from schemas.events import AgentKilled, AgentRevived, AgentSpawned
from tests.keys import SUPERVISOR_KEY, signed
from tests.report_log import as_records

AT = datetime(2025, 3, 1, tzinfo=UTC)


def spawned(child: str, parent: str | None, hours: int, reason: str = "") -> AgentSpawned:
    return AgentSpawned.create(
        ts=AT + timedelta(hours=hours),
        producer="test",
        child=child,
        parent=parent,
        reason=reason,
        strategy_class="momentum",
    )


def folded(*events: object) -> FleetProjection:
    return project_fleet(as_records(events), SUPERVISOR_KEY.verifier)  # type: ignore[arg-type]


def test_lineage_lists_founders_and_each_child_under_its_parent() -> None:
    projection = folded(
        spawned("alpha", None, 0),
        spawned("beta", "alpha", 1, "alpha with a 4h horizon"),
        spawned("gamma", "beta", 2),
        spawned("delta", "alpha", 3),
        spawned("beta", "someone-else", 4),  # a second spawn of a name: the first stands
    )
    view = lineage_view(projection)
    assert view.roots == ["alpha"]
    assert view.nodes["alpha"].children == ["beta", "delta"]
    assert view.nodes["gamma"].parent == "beta"
    assert lineage_text(view).splitlines() == [
        "alpha [momentum]  spawned 2025-03-01T00:00:00Z",
        "  └─ beta [momentum]  spawned 2025-03-01T01:00:00Z: alpha with a 4h horizon",
        "    └─ gamma [momentum]  spawned 2025-03-01T02:00:00Z",
        "  └─ delta [momentum]  spawned 2025-03-01T03:00:00Z",
    ]


def test_a_lineage_cycle_is_drawn_once_and_does_not_loop() -> None:
    view = lineage_view(folded(spawned("a", "b", 0), spawned("b", "a", 1)))
    assert view.roots == []
    assert [line.split()[-4] for line in lineage_text(view).splitlines()] == ["a", "b"]


def test_the_kill_list_shows_what_stops_now_and_the_trail_with_forgeries_marked() -> None:
    killed = signed(
        AgentKilled.create(
            ts=AT,
            producer="supervisor",
            target="alpha",
            source="operator",
            reason="bad fills",
            actor="alice",
        )
    )
    paused = signed(
        AgentKilled.create(
            ts=AT,
            producer="supervisor",
            target="beta",
            source="budget",
            reason="over budget",
            until=AT + timedelta(hours=2),
        )
    )
    revived = signed(
        AgentRevived.create(
            ts=AT + timedelta(hours=1),
            producer="supervisor",
            target="alpha",
            source="operator",
            actor="bob",
        )
    )
    forged = AgentKilled.create(
        ts=AT + timedelta(hours=1), producer="mallory", target="gamma", source="operator"
    )
    projection = folded(killed, paused, revived, spawned("gamma", None, 1))
    # Written straight to `kills` by someone without the supervisor's key: not signed.
    stamp = int(forged.ts.timestamp() * 1000)
    projection.apply_record(
        LogRecord("kills", 0, 99, stamp, encode_event(forged)), SUPERVISOR_KEY.verifier
    )
    view = kill_list_view(projection)
    assert [kill.entry.target for kill in view.agents] == ["beta"]  # alpha revived
    assert [(row.target, row.signature_verified) for row in view.history] == [
        ("alpha", True),
        ("beta", True),
        ("alpha", True),
        ("gamma", False),
    ]
    text = kill_list_text(view)
    assert "agent beta paused by supervisor (budget) until 2025-03-01T02:00:00Z" in text
    assert "NOT BELIEVED: unsigned agent.killed" in text
    # Past the pause's `until` (the report's clock moves with the log), beta runs again.
    projection.apply(spawned("late", None, 3))
    projection.clock = AT + timedelta(hours=3)
    assert kill_list_view(projection).agents == []
