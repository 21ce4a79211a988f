"""Stores a fold's state in a Faust table as a small head plus one entry per day (or key).

A Faust table writes the whole value to its changelog on every update, so a state
holding a 30-day window would rewrite the window on every event (hundreds of KB
per event, measured: see docs/ARCHITECTURE.md). Here the big collections of a
state are split out: a tuple of time-stamped items is stored per UTC day, a dict
per key, and only the entries an event changed are written. The pure folds never
see this; they get back exactly the model they returned.

A save costs what changed, not the size of the state: the folds are frozen and
share every part an event did not touch, so a part that is the same object as in
the last saved model (or, failing that, equal to it) keeps its shard without being
serialized again. Only the changed parts and the head (the model without its
sharded collections) are serialized.

A worker keeps the decoded state of the keys it touched; the head's bytes tell
whether the table still holds that state (another worker may have written it
while this one did not own the partition), so a load is usually free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from datetime import date
from itertools import compress
from operator import is_not
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel
from pydantic_core import to_json, to_jsonable_python

M = TypeVar("M", bound=BaseModel)

# How a path is split: "day:<field>" groups a sorted tuple by the UTC day of the item's
# datetime field (dotted for nested, e.g. "day:signal.ts"); "key" stores a dict per key;
# "days" is a dict keyed by ISO day whose newest day stays inline in the head: the day
# almost every event changes costs no shard write and no tombstone, only the head.
# A path segment "*" stands for every value of a dict.
ShardSpec = dict[str, str]

Path = tuple[str, ...]


@dataclass(frozen=True)
class _Shard:
    name: str
    part: Any  # the piece of the model this shard holds: a dict value, or one day's items
    digest: str


@dataclass(frozen=True)
class _Collection:
    """A sharded collection of the last saved (or loaded) model, with its shards by group
    (dict key or day), so the next save can tell which groups changed."""

    value: Any
    how: str
    shards: dict[str, _Shard]


def _child(node: Any, name: str) -> Any:
    if isinstance(node, BaseModel):
        return getattr(node, name) if name in type(node).model_fields else None
    if isinstance(node, dict):
        return node.get(name)
    return None


def _collections(model: BaseModel, spec: ShardSpec) -> Iterator[tuple[Path, str, Any]]:
    """(concrete path, how, collection) for every collection the spec names in `model`."""
    for path, how in spec.items():
        for concrete, collection in _walk(model, path.split("."), ()):
            yield concrete, how, collection


def _walk(node: Any, parts: list[str], concrete: Path) -> Iterator[tuple[Path, Any]]:
    if not parts:
        yield concrete, node
        return
    if parts[0] == "*":
        children = list(node.items()) if isinstance(node, dict) else []
    else:
        child = _child(node, parts[0])
        children = [] if child is None else [(parts[0], child)]
    for name, value in children:
        yield from _walk(value, parts[1:], (*concrete, name))


def _day(item: Any, dotted: str) -> str:
    for part in dotted.split("."):
        item = _child(item, part)
    return item.isoformat()[:10] if isinstance(item, date) else str(item)[:10]


def _groups(how: str, collection: Any) -> dict[str, Any]:
    """The parts of a collection, one per shard: by key, or the items of each day."""
    if how == "key":
        return collection
    if how == "days":
        newest = _newest(collection)
        return {day: part for day, part in collection.items() if day != newest}
    field = how.removeprefix("day:")
    by_day: dict[str, list[Any]] = {}
    for item in collection:
        by_day.setdefault(_day(item, field), []).append(item)
    return {day: tuple(items) for day, items in by_day.items()}


def _changed(how: str, old: _Collection | None, groups: dict[str, Any]) -> list[str]:
    """The groups whose part is not the very object the last save stored (new ones too).

    When a dict keeps its keys in order, which is the usual case (a fold replaced a few
    entries), the comparison runs in C, so an unchanged entry costs next to nothing.
    """
    if old is None:
        return list(groups)
    if how == "key" and list(old.value) == list(groups):
        return list(compress(groups, map(is_not, groups.values(), old.value.values())))
    return [
        group
        for group, part in groups.items()
        if (shard := old.shards.get(group)) is None or shard.part is not part
    ]


def _exclusions(spec: ShardSpec) -> dict[str, Any]:
    """The tree of what the head leaves out: the sharded collections ("*": every value)."""
    tree: dict[str, Any] = {}
    for path in spec:
        parts = path.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = True
    return tree


def _head(node: Any, exclude: dict[str, Any]) -> Any:
    """`node` as JSON data without what `exclude` names.

    Each model on a sharded path is dumped with only its own fields excluded: a nested
    `exclude` passed to `model_dump` would not get through the plain field serializer
    of `WireModel`, and the whole collection would be serialized, then thrown away.
    """
    if isinstance(node, BaseModel):
        document = node.model_dump(mode="json", exclude=set(exclude))
        for name, inner in exclude.items():
            if inner is not True and name in type(node).model_fields:
                document[name] = _head(getattr(node, name), inner)
        return document
    if isinstance(node, dict):
        document = {}
        for name, value in node.items():
            inner = exclude.get(name, exclude.get("*"))
            if inner is None:
                document[name] = to_jsonable_python(value)
            elif inner is not True:
                document[name] = _head(value, inner)
        return document
    return to_jsonable_python(node)


def _shard_name(segments: list[str]) -> str:
    """A shard's name is the JSON list of its path: safe for any agent or class name."""
    return orjson.dumps(segments).decode()


def _newest(days: dict[str, Any]) -> str | None:
    return max(days) if days else None


def join(head: dict[str, Any], shards: dict[str, bytes]) -> dict[str, Any]:
    """Put the shards back into the head document (days in order, keys by name)."""
    filled: list[tuple[dict[str, Any], str]] = []
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
            filled.append((node, field))
    for node, field in filled:  # a "days" head holds its newest day before the shards
        node[field] = dict(sorted(node[field].items()))
    return head


def _digest(value: bytes) -> str:
    return hashlib.blake2b(value, digest_size=8).hexdigest()


@dataclass
class _Cached(Generic[M]):
    head: bytes
    model: M
    digests: dict[str, str]  # what the head names: shard name -> digest, sorted by name
    collections: dict[Path, _Collection]


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
        self._exclude = _exclusions(spec)
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
        model = self.model.model_validate(join(envelope["head"], shards))
        collections = {
            path: _Collection(
                value,
                how,
                {
                    group: _Shard(name, part, digests.get(name, ""))
                    for group, part in _groups(how, value).items()
                    for name in [_shard_name([*path, group])]
                },
            )
            for path, how, value in _collections(model, self.spec)
        }
        self._cache[key] = _Cached(head, model, digests, collections)
        return model

    def save(self, key: bytes, model: M) -> None:
        cached = self._cache.get(key)
        if cached is not None and cached.model is model:
            return
        before = cached.collections if cached is not None else {}
        previous = cached.digests if cached is not None else {}
        digests = dict(previous)
        written: dict[str, bytes] = {}
        replaced: dict[str, str] = {}  # shards the head named and will not: name -> digest
        added = False
        collections: dict[Path, _Collection] = {}
        for path, how, value in _collections(model, self.spec):
            old = before.get(path)
            if old is not None and old.value is value:
                collections[path] = old
                continue
            groups = _groups(how, value)
            shards = dict(old.shards) if old is not None else {}
            for group in _changed(how, old, groups):
                part, kept = groups[group], shards.get(group)
                if kept is not None and kept.part == part:
                    shards[group] = _Shard(kept.name, part, kept.digest)
                    continue
                content = to_json(part)
                name = kept.name if kept is not None else _shard_name([*path, group])
                shards[group] = _Shard(name, part, _digest(content))
                if digests.get(name) != shards[group].digest:
                    written[name] = content
                    if name in previous:
                        replaced[name] = previous[name]
                    added = added or name not in previous
                    digests[name] = shards[group].digest
            gone = [shards.pop(group).name for group in shards.keys() - groups.keys()]
            replaced |= {name: digests.pop(name) for name in gone if name in digests}
            collections[path] = _Collection(value, how, shards)
        for path in before.keys() - collections.keys():
            gone = [shard.name for shard in before[path].shards.values()]
            replaced |= {name: digests.pop(name) for name in gone if name in digests}
        if added:  # keep the head's names sorted, so equal states give equal heads
            digests = dict(sorted(digests.items()))
        document = _head(model, self._exclude)
        for path, collection in collections.items():
            node = document
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = [] if collection.how.startswith("day:") else {}
            newest = _newest(collection.value) if collection.how == "days" else None
            if newest is not None:
                node[path[-1]][newest] = to_jsonable_python(collection.value[newest])
        # The digests make the head change whenever any shard does, which is also what
        # lets `load` trust its cache when the head bytes are unchanged.
        head = orjson.dumps({"head": document, "shards": digests})
        if cached is None or head != cached.head:
            # Shards first, then the head that names them, then what it no longer names.
            for name, content in written.items():
                self.table[self._shard_key(key, name, digests[name])] = content
            self.table[key] = head
            for name, digest in replaced.items():
                del self.table[self._shard_key(key, name, digest)]
        self._cache[key] = _Cached(head, model, digests, collections)
