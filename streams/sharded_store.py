"""Stores a fold's state in a Faust table as a small head plus one entry per day (or key).

A Faust table writes the whole value to its changelog on every update, so a state
holding a 30-day window would rewrite the window on every event (hundreds of KB
per event, measured: see docs/ARCHITECTURE.md). Here the big collections of a
state are split out: a tuple of time-stamped items is stored per UTC day, a dict
per key, and only the entries an event changed are written. The pure folds never
see this; they get back exactly the model they returned.

A worker keeps the decoded state of the keys it touched; the head's bytes tell
whether the table still holds that state (another worker may have written it
while this one did not own the partition), so a load is usually free.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

# How a path is split: "day:<field>" groups a sorted list by the UTC day of the item's
# ISO-8601 field (dotted for nested, e.g. "day:signal.ts"); "key" stores a dict per key.
# A path segment "*" stands for every value of a dict.
ShardSpec = dict[str, str]


def _item_field(item: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        item = item[part]
    return item


def _expand(document: dict[str, Any], path: str) -> list[tuple[list[str], dict[str, Any], str]]:
    """(concrete path, parent dict, field name) for a path that may contain "*"."""
    parts = path.split(".")
    found: list[tuple[list[str], dict[str, Any], str]] = []

    def walk(node: dict[str, Any], index: int, concrete: list[str]) -> None:
        part, last = parts[index], index == len(parts) - 1
        names = sorted(node) if part == "*" else [part] if part in node else []
        for name in names:
            if last:
                found.append(([*concrete, name], node, name))
            elif isinstance(node[name], dict):
                walk(node[name], index + 1, [*concrete, name])

    walk(document, 0, [])
    return found


def _shard_name(segments: list[str]) -> str:
    """A shard's name is the JSON list of its path: safe for any agent or class name."""
    return orjson.dumps(segments).decode()


def split(document: dict[str, Any], spec: ShardSpec) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Move the sharded collections out of a JSON document; return (head, shards)."""
    shards: dict[str, bytes] = {}
    for path, how in spec.items():
        for concrete, parent, field in _expand(document, path):
            collection = parent[field]
            if how == "key":
                for name, value in collection.items():
                    shards[_shard_name([*concrete, name])] = orjson.dumps(value)
                parent[field] = {}
                continue
            by_day: dict[str, list[Any]] = {}
            for item in collection:
                by_day.setdefault(str(_item_field(item, how.removeprefix("day:")))[:10], []).append(
                    item
                )
            for day, items in by_day.items():
                shards[_shard_name([*concrete, day])] = orjson.dumps(items)
            parent[field] = []
    return document, shards


def join(head: dict[str, Any], shards: dict[str, bytes], spec: ShardSpec) -> dict[str, Any]:
    """Put the shards back into the head document (days in order, keys by name)."""
    for name in sorted(shards):
        *parents, field, part = orjson.loads(name)
        node = head
        for parent in parents:
            node = node[parent]
        value = orjson.loads(shards[name])
        if isinstance(node[field], list):
            node[field].extend(value)
        else:
            node[field][part] = value
    return head


def _digest(value: bytes) -> str:
    return hashlib.blake2b(value, digest_size=8).hexdigest()


@dataclass
class _Cached(Generic[M]):
    head: bytes
    model: M
    digests: dict[str, str]


class ShardedStore(Generic[M]):
    """Load and save one model type: a head under `<key>`, each shard under
    `<key>|<shard name>|<digest of its content>`.

    Shards are never rewritten in place: a save writes the changed shards under new
    keys, then the head that names them, then deletes the shards it replaced. A crash
    at any point leaves the last complete head and every shard it names, so a load
    always sees one consistent state (at worst a few orphan shards remain).
    """

    def __init__(self, table: MutableMapping[bytes, bytes], model: type[M], spec: ShardSpec):
        self.table = table
        self.model = model
        self.spec = spec
        self._cache: dict[bytes, _Cached[M]] = {}

    @staticmethod
    def _shard_key(key: bytes, name: str, digest: str) -> bytes:
        return key + b"|" + name.encode() + b"|" + digest.encode()

    def heads(self) -> list[bytes]:
        """The keys of the stored models (heads), without their shards."""
        return sorted(key for key in self.table if b'|["' not in key)

    def load(self, key: bytes) -> M | None:
        head = self.table.get(key)
        if head is None:
            self._cache.pop(key, None)
            return None
        cached = self._cache.get(key)
        if cached is not None and cached.head == head:
            return cached.model
        envelope = orjson.loads(head)
        digests: dict[str, str] = envelope["shards"]
        shards = {name: self.table[self._shard_key(key, name, d)] for name, d in digests.items()}
        model = self.model.model_validate(join(envelope["head"], shards, self.spec))
        self._cache[key] = _Cached(head, model, digests)
        return model

    def save(self, key: bytes, model: M) -> None:
        cached = self._cache.get(key)
        if cached is not None and cached.model == model:
            return
        previous = cached.digests if cached is not None else {}
        document, shards = split(model.model_dump(mode="json"), self.spec)
        digests = {name: _digest(value) for name, value in sorted(shards.items())}
        for name, value in shards.items():
            if previous.get(name) != digests[name]:
                self.table[self._shard_key(key, name, digests[name])] = value
        # The digests make the head change whenever any shard does, which is also what
        # lets `load` trust its cache when the head bytes are unchanged.
        head = orjson.dumps({"head": document, "shards": digests})
        self.table[key] = head
        for name, digest in previous.items():
            if digests.get(name) != digest:
                del self.table[self._shard_key(key, name, digest)]
        self._cache[key] = _Cached(head, model, digests)
