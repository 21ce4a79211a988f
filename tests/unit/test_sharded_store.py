"""The sharded store gives back exactly the model it was given, writing only what changed."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from schemas.envelope import WireModel
from schemas.events import RunCompleted
from schemas.policy import Thresholds
from streams.agents.stats import STATS_SHARDS, StatsState, apply_event
from streams.runtime import sharded_store
from streams.runtime.sharded_store import ShardedStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class Point(WireModel):
    ts: datetime
    value: float


class Inner(WireModel):
    points: tuple[Point, ...] = ()


class State(WireModel):
    name: str = "x"
    inner: Inner = Field(default_factory=Inner)
    by_class: dict[str, tuple[Point, ...]] = Field(default_factory=dict)
    members: dict[str, Point] = Field(default_factory=dict)
    days: dict[str, Point] = Field(default_factory=dict)  # in day order, as the folds keep it


SPEC = {"inner.points": "day:ts", "by_class.*": "day:ts", "members": "key", "days": "days"}

points = st.lists(
    st.builds(
        Point,
        ts=st.integers(0, 24 * 90).map(lambda h: T0 + timedelta(hours=h)),
        value=st.floats(-1e6, 1e6),
    ),
    max_size=40,
).map(lambda items: tuple(sorted(items, key=lambda p: p.ts)))
names = st.text(alphabet='ab./|"', min_size=1, max_size=4)
states = st.builds(
    State,
    inner=st.builds(Inner, points=points),
    by_class=st.dictionaries(names, points, max_size=3),
    members=st.dictionaries(
        names, st.builds(Point, ts=st.just(T0), value=st.floats(0, 1)), max_size=3
    ),
    days=st.dictionaries(
        st.integers(0, 90).map(lambda d: (T0 + timedelta(days=d)).date().isoformat()),
        st.builds(Point, ts=st.just(T0), value=st.floats(0, 1)),
        max_size=6,
    ).map(lambda found: dict(sorted(found.items()))),
)


@settings(max_examples=60, deadline=None)
@given(states, states)
def test_a_saved_state_loads_back_equal_even_through_a_fresh_worker(
    first: State, second: State
) -> None:
    table: dict[bytes, bytes] = {}
    store = ShardedStore(table, State, SPEC)
    store.save(b"k", first)
    store.save(b"k", second)
    assert store.load(b"k") == second
    # A worker that never saw the key (after a rebalance) reads the table alone.
    assert ShardedStore(table, State, SPEC).load(b"k") == second
    # Shards of days or keys that are gone are deleted, not left behind.
    fresh: dict[bytes, bytes] = {}
    ShardedStore(fresh, State, SPEC).save(b"k", second)
    assert fresh == table


def test_appending_to_one_day_rewrites_that_day_and_the_head_only() -> None:
    table: dict[bytes, bytes] = {}
    store = ShardedStore(table, State, SPEC)
    days = tuple(Point(ts=T0 + timedelta(days=d), value=d) for d in range(30))
    store.save(b"k", State(inner=Inner(points=days)))
    writes: list[bytes] = []

    class Recording(dict[bytes, bytes]):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            writes.append(key)
            super().__setitem__(key, value)

    recording = Recording(table)
    store.table = recording
    later = (*days, Point(ts=days[-1].ts + timedelta(hours=1), value=1.0))
    store.save(b"k", State(inner=Inner(points=later)))
    assert len(writes) == 2  # the last day's shard and the head
    assert ShardedStore(recording, State, SPEC).load(b"k") == State(inner=Inner(points=later))


class Crash(Exception):
    pass


@settings(max_examples=60, deadline=None)
@given(states, states, st.integers(min_value=0, max_value=20))
def test_a_save_cut_short_leaves_the_old_or_the_new_state_never_a_mix(
    first: State, second: State, writes_before_crash: int
) -> None:
    table: dict[bytes, bytes] = {}
    ShardedStore(table, State, SPEC).save(b"k", first)
    writes = 0

    class CrashingTable(dict[bytes, bytes]):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            nonlocal writes
            if writes == writes_before_crash:
                raise Crash
            writes += 1
            super().__setitem__(key, value)

        def __delitem__(self, key: bytes) -> None:
            nonlocal writes
            if writes == writes_before_crash:
                raise Crash
            writes += 1
            super().__delitem__(key)

    crashing = CrashingTable(table)
    store = ShardedStore(crashing, State, SPEC)
    store.load(b"k")
    with contextlib.suppress(Crash):
        store.save(b"k", second)
    # A worker restarted after the crash reads what the table (its changelog) holds.
    assert ShardedStore(dict(crashing), State, SPEC).load(b"k") in (first, second)


class Recording(dict[bytes, bytes]):
    """A table that remembers which keys were written and deleted."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.writes: list[bytes] = []
        self.deletes: list[bytes] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.deletes.append(key)
        super().__delitem__(key)


@st.composite
def edits(draw: st.DrawFn, state: State) -> State:
    """A state derived from `state` as a fold derives it: unchanged parts are shared."""
    update: dict[str, Any] = {}
    if draw(st.booleans()):
        update["inner"] = Inner(points=draw(points))
    if draw(st.booleans()):
        members = dict(state.members)
        for name in draw(st.lists(names, max_size=2)):
            members[name] = Point(ts=T0, value=draw(st.floats(0, 1)))
        for name in draw(
            st.lists(st.sampled_from(sorted(members)), max_size=2) if members else st.just([])
        ):
            members.pop(name, None)
        update["members"] = members
    if draw(st.booleans()):
        by_class = dict(state.by_class)
        by_class[draw(names)] = draw(points)
        update["by_class"] = by_class
    if draw(st.booleans()):
        update["name"] = draw(st.sampled_from(["x", "y"]))
    return state.model_copy(update=update)


@settings(max_examples=80, deadline=None)
@given(states, st.data())
def test_a_chain_of_saves_writes_only_new_shards_and_ends_where_a_fresh_save_would(
    first: State, data: st.DataObject
) -> None:
    table = Recording()
    store = ShardedStore(table, State, SPEC)
    store.save(b"k", first)
    state = first
    for _ in range(data.draw(st.integers(1, 4))):
        state = data.draw(edits(state))
        before = dict(table)
        table.writes.clear()
        store.save(b"k", state)
        shard_writes = [k for k in table.writes if k != b"k"]
        # Content-addressed: a shard written again with the same content is a wasted write.
        assert not set(shard_writes) & before.keys()
        assert set(table) - before.keys() == set(shard_writes)
        assert store.load(b"k") == state
    fresh: dict[bytes, bytes] = {}
    ShardedStore(fresh, State, SPEC).save(b"k", state)
    assert dict(table) == fresh
    assert ShardedStore(dict(table), State, SPEC).load(b"k") == state


class Holder(WireModel):
    """A container of stats, as AgentState and FleetBook are."""

    name: str = "alpha"
    stats: StatsState = Field(default_factory=StatsState)


HOLDER_SPEC = {f"stats.{path}": how for path, how in STATS_SHARDS.items()}


def test_one_more_fact_in_a_90_day_window_serializes_and_writes_its_day_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = Thresholds(window_days=90)
    state = StatsState()
    for hour in range(100 * 24):
        ts = T0 + timedelta(hours=hour)
        run = RunCompleted.create(
            ts=ts, agent="a", run_id=uuid.uuid4(), started_at=ts, latency_ms=1.0
        )
        state = apply_event(state, run, policy)
    table = Recording()
    store = ShardedStore(table, Holder, HOLDER_SPEC)
    store.save(b"a", Holder(stats=state))
    # every day after the horizon but the newest, which stays inline, and the head
    assert len(table.writes) == 89 + 1
    serialized: list[Any] = []
    real_to_json = sharded_store.to_json

    def counting_to_json(part: Any) -> bytes:
        serialized.append(part)
        return real_to_json(part)

    monkeypatch.setattr(sharded_store, "to_json", counting_to_json)
    table.writes.clear()

    ts = T0 + timedelta(days=100, minutes=30)  # a new day; the horizon cuts the first one
    run = RunCompleted.create(ts=ts, agent="a", run_id=uuid.uuid4(), started_at=ts, latency_ms=2.0)
    later = Holder(stats=apply_event(state, run, policy))
    store.save(b"a", later)

    # The day that stopped being the newest gets its shard, and the day the horizon trimmed
    # a new one; the new day goes inline in the head.
    assert len(serialized) == 2
    assert len(table.writes) == 3 and table.writes[-1] == b"a"  # those shards, then the head
    assert len(table.deletes) == 1  # the trimmed day's old shard
    assert ShardedStore(dict(table), Holder, HOLDER_SPEC).load(b"a") == later

    table.writes.clear()
    table.deletes.clear()
    ts += timedelta(minutes=5)  # the same, newest day: the head alone changes
    run = RunCompleted.create(ts=ts, agent="a", run_id=uuid.uuid4(), started_at=ts, latency_ms=3.0)
    latest = Holder(stats=apply_event(later.stats, run, policy))
    store.save(b"a", latest)
    assert table.writes == [b"a"] and table.deletes == []
    assert ShardedStore(dict(table), Holder, HOLDER_SPEC).load(b"a") == latest
