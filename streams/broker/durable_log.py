"""The durable local copy of the log (SQLite), for the embedded broker that keeps nothing.

Every record of every topic is kept with its topic, partition, offset, key, value,
timestamp and headers, plus the committed offsets of consumer groups. SQLite in
WAL mode gives atomic batches: after a crash the file holds a prefix of each
partition, never a torn record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key BLOB,
    value BLOB,
    headers BLOB,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
"""

TopicPartitionKey = tuple[str, int]
Header = tuple[str, bytes]


@dataclass(frozen=True)
class StoredRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


def _pack_headers(headers: tuple[Header, ...]) -> bytes | None:
    if not headers:
        return None
    return orjson.dumps([[name, value.hex()] for name, value in headers])


def _unpack_headers(blob: bytes | None) -> tuple[Header, ...]:
    if not blob:
        return ()
    return tuple((name, bytes.fromhex(value)) for name, value in orjson.loads(blob))


def _row(r: StoredRecord) -> tuple[object, ...]:
    return (
        r.topic,
        r.partition,
        r.offset,
        r.timestamp_ms,
        r.key,
        r.value,
        _pack_headers(r.headers),
    )


class DurableLog:
    """Append-only store of records; one writer (the recorder), any number of readers."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a committed batch survives a crash of this process; only a power
        # loss can drop the last batches (they are still in the broker then).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def set_topics(self, partitions_by_topic: dict[str, int]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO topics(name, partitions) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET partitions = max(partitions, excluded.partitions)",
                partitions_by_topic.items(),
            )

    def topics(self) -> dict[str, int]:
        rows = self._db.execute("SELECT name, partitions FROM topics ORDER BY name")
        return dict(rows.fetchall())

    def append(self, records: Iterable[StoredRecord]) -> int:
        """Store a batch atomically; a record already stored (same offset) is ignored."""
        rows = [_row(r) for r in records]
        if not rows:
            return 0
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def next_offsets(self) -> dict[TopicPartitionKey, int]:
        """Per partition, the offset after the last stored record (where copying resumes)."""
        rows = self._db.execute(
            "SELECT topic, partition, max(offset) + 1 FROM records GROUP BY topic, partition"
        )
        return {(topic, partition): end for topic, partition, end in rows.fetchall()}

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT topic, count(*) FROM records GROUP BY topic")
        return dict(rows.fetchall())

    def read(
        self, topic: str, partition: int, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        query = (
            "SELECT offset, timestamp_ms, key, value, headers FROM records "
            "WHERE topic = ? AND partition = ? AND offset >= ? AND offset < ? ORDER BY offset"
        )
        upper = end if end is not None else 2**62
        for offset, timestamp_ms, key, value, headers in self._db.execute(
            query, (topic, partition, start, upper)
        ):
            yield StoredRecord(
                topic, partition, offset, timestamp_ms, key, value, _unpack_headers(headers)
            )

    def replace_partition(self, topic: str, partition: int, records: list[StoredRecord]) -> None:
        """Rewrite one partition (used to compact a changelog before a restore)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "DELETE FROM records WHERE topic = ? AND partition = ?", (topic, partition)
            )
            self._db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_row(r) for r in records],
            )

    def save_group_offsets(self, group_id: str, offsets: dict[TopicPartitionKey, int]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO group_offsets VALUES (?, ?, ?, ?) "
                "ON CONFLICT(group_id, topic, partition) DO UPDATE SET offset = excluded.offset",
                [
                    (group_id, topic, partition, offset)
                    for (topic, partition), offset in offsets.items()
                ],
            )

    def group_offsets(self) -> dict[str, dict[TopicPartitionKey, int]]:
        result: dict[str, dict[TopicPartitionKey, int]] = {}
        rows = self._db.execute("SELECT group_id, topic, partition, offset FROM group_offsets")
        for group_id, topic, partition, offset in rows.fetchall():
            result.setdefault(group_id, {})[(topic, partition)] = offset
        return result
