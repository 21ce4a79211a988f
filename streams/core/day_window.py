"""A rolling window of facts in UTC-day buckets, whose totals cost days, not facts.

Rules decide on every event from totals over a window (30 or 90 days of trades,
runs, class results). Summing the window's facts per event would make the cost per
event grow with history, so the window is kept in one bucket per UTC day, each sorted
in fact order and carrying the totals of its facts in that order:

- folding a fact touches its own day only (a fact's time never changes, so its
  duplicate can only be in that day), and the store writes that day alone;
- eviction drops whole days and trims the one day the horizon cuts;
- the totals of a window are its first and last day (the two it may cut, summed
  fact by fact) merged with the whole days between, merged block by block
  (`MergedDays`). Totals merge by an associative `concat`, so the order of the
  facts, not the order they arrived in, fixes every figure.

Both the agent stats (`streams.agents.stats`) and the fleet's class trades
(`streams.fleet.book`) keep their windows this way.
"""

from __future__ import annotations

import operator
import weakref
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import takewhile
from typing import Any, Generic, Protocol, Self, TypeVar

from schemas.envelope import WireModel, to_utc


class Fact(Protocol):
    """What a day bucket needs of a fact: its time and its order (unique per fact)."""

    @property
    def at(self) -> datetime: ...

    def sort_key(self) -> tuple[Any, ...]: ...


F = TypeVar("F", bound=WireModel)
T = TypeVar("T", bound=WireModel)


class DayBucket(WireModel, Generic[F, T]):
    """The facts of one UTC day after the horizon, in fact order, and their totals.

    A subclass says how totals add up (`fold`): folding more facts onto totals must give
    the very floats folding all of them at once would, so a day's totals are the same
    whatever order its facts arrived in.
    """

    facts: tuple[F, ...]
    totals: T
    # The totals of the facts before the day's last fact time. Many facts share a time
    # (every trade of an hour exits at that hour, ordered among themselves by id), and
    # one that lands among them refolds that group only, not the whole day.
    before_last: T

    @classmethod
    def fold(cls, totals: T | None, facts: Iterable[F]) -> T:
        """`totals` (None: no facts yet) with `facts` added, in the given order."""
        raise NotImplementedError

    @classmethod
    def of(cls, facts: tuple[F, ...]) -> Self:
        group = _last_time_group(facts)
        before = cls.fold(None, facts[:group])
        return cls(facts=facts, before_last=before, totals=cls.fold(before, facts[group:]))

    def with_fact(self, fact: F) -> Self:
        last = self.facts[-1]
        if _sort_key(fact) > _sort_key(last):  # the usual case: in order
            later = _fact_time(fact) > _fact_time(last)
            return type(self)(
                facts=(*self.facts, fact),
                before_last=self.totals if later else self.before_last,
                totals=self.fold(self.totals, [fact]),
            )
        facts = list(self.facts)
        insort(facts, fact, key=_sort_key)
        if _fact_time(fact) != _fact_time(last):
            return self.of(tuple(facts))
        group = facts[_last_time_group(facts) :]
        return type(self)(
            facts=tuple(facts),
            before_last=self.before_last,
            totals=self.fold(self.before_last, group),
        )

    def after(self, horizon: datetime) -> Self | None:
        """The day without its facts at or before `horizon`; None if none is left."""
        first = bisect_right(self.facts, horizon, key=_fact_time)
        if not first:
            return self
        return self.of(self.facts[first:]) if first < len(self.facts) else None

    def has(self, fact: F) -> bool:
        """Whether the day holds `fact` already: its sort key is unique, so there is one
        place it can be."""
        key = _sort_key(fact)
        index = bisect_left(self.facts, key, key=_sort_key)
        return index < len(self.facts) and _sort_key(self.facts[index]) == key

    def within(self, start: datetime | None, end: datetime) -> T:
        """The totals of the day's facts in (start, end]."""
        facts = self.facts
        # Most windows end after their last day (now), and many start before their first.
        first = 0
        if start is not None and _fact_time(facts[0]) <= start:
            first = bisect_right(facts, start, key=_fact_time)
        last = len(facts)
        if _fact_time(facts[-1]) > end:
            last = bisect_right(facts, end, key=_fact_time)
        if (first, last) == (0, len(facts)):
            return self.totals
        key, totals = _CUTS.get((self,), (first, last))
        if totals is None:
            totals = _CUTS.put(key, (self,), self.fold(None, self.facts[first:last]))
        return totals


# A fact's order and time, as bisection keys: called in C, so that a probe costs the fact's
# own `sort_key` or `at` and no Python call around it (bisecting the days a window cuts is
# most of what cutting them costs).
_sort_key: Callable[[Any], tuple[Any, ...]] = operator.methodcaller("sort_key")
_fact_time: Callable[[Any], datetime] = operator.attrgetter("at")


def _last_time_group(facts: Sequence[Any]) -> int:
    """The index of the first fact at the time of the last one."""
    return bisect_left(facts, _fact_time(facts[-1]), key=_fact_time)


def day_of(ts: datetime) -> str:
    """The ISO UTC day of a fact time, the key of its bucket."""
    return to_utc(ts).date().isoformat()


def within(ts: datetime, start: datetime | None, end: datetime) -> bool:
    """Whether `ts` is in (start, end]; no start means no lower bound."""
    return (start is None or ts > start) and ts <= end


Day = TypeVar("Day", bound=DayBucket[Any, Any])
Bucket = TypeVar("Bucket")
Totals = TypeVar("Totals")
Totals_co = TypeVar("Totals_co", covariant=True)


def put_day(days: dict[str, Day], day: str, bucket: Day) -> dict[str, Day]:
    """`days` with `bucket` under `day`, still in day order."""
    if day in days or not days or day > next(reversed(days)):
        return {**days, day: bucket}
    return dict(sorted({**days, day: bucket}.items()))


def evict_days(days: dict[str, Day], horizon: datetime) -> dict[str, Day]:
    """`days` without the facts at or before `horizon`: whole days before the horizon's
    day go, that day is trimmed. The same dict when nothing goes."""
    first = day_of(horizon)
    stale = sum(1 for _ in takewhile(lambda day: day < first, days))
    boundary = days.get(first)
    trimmed = None if boundary is None else boundary.after(horizon)
    if not stale and trimmed is boundary:
        return days
    kept = dict(list(days.items())[stale:])
    if trimmed is None:
        kept.pop(first, None)
    else:
        kept[first] = trimmed
    return kept


def days_between(
    days: Mapping[str, Bucket], start: datetime | None, end: datetime
) -> tuple[list[str], list[Bucket]]:
    """The days (ISO keys) and their buckets, in order, that may hold facts in (start, end]."""
    keys = list(days)
    first = 0 if start is None else bisect_left(keys, day_of(start))
    last = bisect_right(keys, day_of(end))
    return keys[first:last], list(days.values())[first:last]


def _block_end(keys: Sequence[str], first: int) -> int:
    """The index after the block of `keys[first]`. A block is the days sharing an ISO key
    but its last digit (days 1-9, 10-19, 20-29, 30-31 of a month): fixed by the calendar,
    not by the window, so a block's days stay the same objects while the window slides
    over it. ":" sorts after every digit."""
    return bisect_left(keys, keys[first][:9] + ":", first)


class _Bucket(Protocol[Totals_co]):
    @property
    def totals(self) -> Totals_co: ...

    def within(self, start: datetime | None, end: datetime) -> Totals_co: ...


class IdentityMemo(Generic[Totals]):
    """Totals by the identity of the objects they were merged from.

    An entry refers to those objects weakly: a remembered run must not keep the days of
    a window alive once the window has let them go (with strong references, the entries
    of a long replay kept months of evicted days, gigabytes). An object's id may be
    reused once it is gone, so a hit counts only if every object is still the one the
    entry was made from. The oldest entries go first; a live entry that goes is merged
    again, to the same bits.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        # Not a dict: deleting its oldest entry leaves a hole that finding the next oldest
        # walks over, so a full memo of 32,768 entries paid ~20 us per eviction.
        self._entries: OrderedDict[tuple[int, ...], tuple[tuple[weakref.ref[Any], ...], Totals]]
        self._entries = OrderedDict()

    def get(
        self, parts: Sequence[object], detail: tuple[int, ...] = ()
    ) -> tuple[tuple[int, ...], Totals | None]:
        """The totals merged from `parts` (and `detail`, what else they depend on), if known."""
        key = (*map(id, parts), *detail)
        entry = self._entries.get(key)
        if entry is None or not all(map(operator.is_, map(operator.call, entry[0]), parts)):
            return key, None
        return key, entry[1]

    def put(self, key: tuple[int, ...], parts: Sequence[object], totals: Totals) -> Totals:
        if len(self._entries) >= self._size:
            self._entries.popitem(last=False)
        self._entries[key] = (tuple(map(weakref.ref, parts)), totals)
        return totals


# The totals of the days a window cuts, by the day and where it is cut. The window's ends
# move by the hour while every trade of that hour is judged (a strategy class's four
# windows cut four days each time), so a cut is folded once, not once per trade.
_CUTS: IdentityMemo[Any] = IdentityMemo(32768)


class MergedDays(Generic[Totals]):
    """Merges totals, and remembers merged runs of days by their identity, so that the
    totals of a window cost a few merges per event, not one per day.

    The whole days of a window (all but the first and last, which it may cut) are split
    into calendar blocks (`_block_end`). The first block, which the horizon eats a day
    at a time, is folded from the right (each day onto the totals of the days after it),
    the others from the left (each day onto the totals of the days before it), and the
    blocks between the first and the last are merged once for as long as they stay the
    same. Between two events of a key the window moves at its ends only, so an event
    finds almost every run it needs already merged: at most one new day per end. Days
    are frozen and blocks fixed by the calendar, so a remembered run is exactly what
    merging it again would give: rules stay pure functions of the state, bit for bit.
    """

    def __init__(self, concat: Callable[[Iterable[Totals]], Totals], size: int) -> None:
        self.concat = concat
        self._from_left: IdentityMemo[Totals] = IdentityMemo(size)
        self._from_right: IdentityMemo[Totals] = IdentityMemo(size)
        self._blocks: IdentityMemo[Totals] = IdentityMemo(size)

    def _left_fold(self, days: Sequence[_Bucket[Totals]]) -> Totals:
        """Each day onto the totals of the days before it. A block grows a day at a time at
        the window's end, so the run one day shorter is usually remembered; only whole
        runs are kept (not every prefix), since a block is needed whole once it is past."""
        key, totals = self._from_left.get(days)
        if totals is not None:
            return totals
        _, totals = self._from_left.get(days[:-1])
        if totals is None:
            totals = days[0].totals
            for day in days[1:-1]:
                totals = self.concat([totals, day.totals])
        if len(days) > 1:
            totals = self.concat([totals, days[-1].totals])
        return self._from_left.put(key, days, totals)

    def _right_fold(self, days: Sequence[_Bucket[Totals]]) -> Totals:
        """Each day onto the totals of the days after it. The horizon eats the first block
        a day at a time, so every suffix is remembered when the block is first folded."""
        _, totals = self._from_right.get(days)
        if totals is not None:
            return totals
        totals = days[-1].totals
        for first in range(len(days) - 2, -1, -1):
            totals = self.concat([days[first].totals, totals])
            suffix = days[first:]
            self._from_right.put(tuple(map(id, suffix)), suffix, totals)
        return totals

    def _joined(self, keys: Sequence[str], days: Sequence[_Bucket[Totals]]) -> Totals:
        """Whole blocks, each folded from the left, then merged: remembered by the days,
        one lookup for them all, as they stay the same for as long as a block lasts."""
        key, totals = self._blocks.get(days)
        if totals is not None:
            return totals
        blocks, first = [], 0
        while first < len(days):
            end_of_block = _block_end(keys, first)
            blocks.append(self._left_fold(days[first:end_of_block]))
            first = end_of_block
        return self._blocks.put(key, days, self.concat(blocks))

    def window(
        self, days: Mapping[str, _Bucket[Totals]], start: datetime | None, end: datetime
    ) -> Totals:
        """The totals of the facts in (start, end], in fact order."""
        keys, buckets = days_between(days, start, end)
        if len(buckets) <= 2:
            return self.concat(day.within(start, end) for day in buckets)
        last = len(buckets) - 1
        head_end = min(_block_end(keys, 1), last)
        parts = [buckets[0].within(start, end), self._right_fold(buckets[1:head_end])]
        if head_end < last:
            tail_start = max(bisect_left(keys, keys[last - 1][:9], head_end), head_end)
            if head_end < tail_start:
                parts.append(self._joined(keys[head_end:tail_start], buckets[head_end:tail_start]))
            parts.append(self._left_fold(buckets[tail_start:last]))
        parts.append(buckets[-1].within(start, end))
        return self.concat(parts)
