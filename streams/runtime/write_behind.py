"""Processor states written to their tables once per commit, not once per record.

A Faust table sends every update to its changelog. A processor that saved its
state after each record wrote several changelog records per record (measured:
3.5 per event for the single fleet key, 6 per source event over all processors),
each serialized, copied by the broker and made durable, although only the state
at the next commit is ever restored: a restart resumes from the committed offsets.

So a processor's states are kept here, in memory, until the consumer commits.
Just before it commits (`streams.runtime.faust_fixes`, fix 5), `flush` writes each
state changed since the last commit once, to the changelog partition of the record
that changed it. The commit then waits for those writes to be acknowledged (fix 3),
so offsets are never committed ahead of the states that cover them. A crash before
the commit loses the unwritten states and the uncommitted offsets together: the
records are processed again, from the states of the last commit.

A worker that loses a partition drops what it had not written for it: another
worker now owns it and starts from the last commit.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from streams.runtime.sharded_store import ShardedStore

M = TypeVar("M", bound=BaseModel)


class ChangelogWriter(MutableMapping[bytes, bytes]):
    """A Faust table whose writes go to a partition chosen by the caller.

    Faust sends a table write to the changelog partition of the record being
    processed, so it refuses writes outside a stream. At commit time there is no
    such record; the partition of the record that changed the state is used.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition: int | None = None

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self.table.data[key]
        return value

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.table.data)

    def __len__(self) -> int:
        return len(self.table.data)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        assert self.partition is not None, "a write needs the partition of its record"
        self.table.data[key] = value
        self.table.send_changelog(self.partition, key, value)

    def __delitem__(self, key: bytes) -> None:
        assert self.partition is not None, "a delete needs the partition of its record"
        del self.table.data[key]
        self.table.send_changelog(self.partition, key, None, value_serializer="raw")


class WriteBehind(Generic[M]):
    """States by key: read from memory first, written to the table by `flush`."""

    def __init__(self, store: ShardedStore[M], writer: ChangelogWriter) -> None:
        self.store = store
        self.writer = writer
        self._unwritten: dict[bytes, tuple[int, M]] = {}

    def load(self, key: bytes) -> M | None:
        unwritten = self._unwritten.get(key)
        return unwritten[1] if unwritten is not None else self.store.load(key)

    def heads(self) -> list[bytes]:
        return sorted({*self.store.heads(), *self._unwritten})

    def save(self, key: bytes, model: M, partition: int) -> None:
        self._unwritten[key] = (partition, model)

    def flush(self) -> int:
        """Write every state changed since the last flush; return how many."""
        unwritten, self._unwritten = self._unwritten, {}
        for key, (partition, model) in unwritten.items():
            self.writer.partition = partition
            try:
                self.store.save(key, model)
            finally:
                self.writer.partition = None
        return len(unwritten)

    def drop(self, partitions: set[int]) -> None:
        """Forget the unwritten states of partitions this worker no longer owns."""
        self._unwritten = {
            key: entry for key, entry in self._unwritten.items() if entry[0] not in partitions
        }
