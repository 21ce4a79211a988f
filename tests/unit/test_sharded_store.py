"""The sharded store gives back exactly the model it was given, writing only what changed."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from schemas.envelope import WireModel
from streams.sharded_store import ShardedStore

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


SPEC = {"inner.points": "day:ts", "by_class.*": "day:ts", "members": "key"}

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
