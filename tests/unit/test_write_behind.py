"""States written once per commit: what a restart restores is the state at the last commit."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from streams.runtime.sharded_store import ShardedStore
from streams.runtime.write_behind import ChangelogWriter, WriteBehind


class Counter(BaseModel, frozen=True):
    name: str
    seen: int


class RecordingTable:
    """What `ChangelogWriter` uses of a Faust table: its data and its changelog sends."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog: list[tuple[int, bytes, bytes | None]] = []

    def send_changelog(self, partition: int, key: bytes, value: Any, **_: Any) -> None:
        self.changelog.append((partition, key, value))


def store_over(table: RecordingTable) -> WriteBehind[Counter]:
    writer = ChangelogWriter(table)
    return WriteBehind(ShardedStore(writer, Counter, {}), writer)


def restored(table: RecordingTable) -> dict[bytes, bytes]:
    """What a worker recovering the changelog would hold: the last value per key."""
    data: dict[bytes, bytes] = {}
    for _, key, value in table.changelog:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def test_a_state_saved_many_times_between_commits_is_written_once_to_its_partition() -> None:
    table = RecordingTable()
    states = store_over(table)
    for seen in range(1, 51):
        states.save(b"fleet", Counter(name="fleet", seen=seen), partition=0)
        assert states.load(b"fleet") == Counter(name="fleet", seen=seen)  # read your writes
    states.save(b"agent-7", Counter(name="agent-7", seen=1), partition=3)
    assert table.changelog == []  # nothing before the commit

    assert states.flush() == 2
    assert [(partition, key) for partition, key, _ in table.changelog] == [
        (0, b"fleet"),
        (3, b"agent-7"),
    ]
    recovered = ShardedStore(restored(table), Counter, {})
    assert recovered.load(b"fleet") == Counter(name="fleet", seen=50)
    assert states.flush() == 0  # nothing changed since


def test_a_revoked_partition_loses_its_unwritten_states_and_keeps_the_committed_ones() -> None:
    table = RecordingTable()
    states = store_over(table)
    states.save(b"a", Counter(name="a", seen=1), partition=1)
    states.save(b"b", Counter(name="b", seen=1), partition=2)
    states.flush()
    states.save(b"a", Counter(name="a", seen=2), partition=1)  # after the commit
    states.save(b"b", Counter(name="b", seen=2), partition=2)

    states.drop({1})  # another worker owns partition 1 now, from its last commit
    assert states.load(b"a") == Counter(name="a", seen=1)
    assert states.heads() == [b"a", b"b"]
    states.flush()
    assert restored(table)[b"a"] == table.data[b"a"]
    assert [key for _, key, _ in table.changelog] == [b"a", b"b", b"b"]
