"""Where the CLI finds the log: the broker (METASUP_BROKER, else the running stack, else
9092), or, when it is down, the durable log of the embedded mode (`projections.replay`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager

import orjson

from projections.log import LogRecord, LogUnavailable
from projections.replay import AsOf, LogSource, Replay, open_source
from streams.runtime.settings import Settings
from streams.runtime.stack import durable_log_path, stack_file

__all__ = ["LogUnavailable", "open_log", "read_log", "replayed", "resolve_bootstrap"]


def resolve_bootstrap(settings: Settings) -> str:
    if not settings.embedded:
        return settings.bootstrap_servers()
    path = stack_file(settings)
    if path.exists():
        return str(orjson.loads(path.read_bytes())["bootstrap"])
    return settings.bootstrap_servers()


def open_log(settings: Settings, allow_durable: bool = True, timeout_s: float = 60.0) -> LogSource:
    """The broker, or, when it is down and `allow_durable`, the durable log."""
    durable_log = durable_log_path(settings) if allow_durable else None
    return open_source(resolve_bootstrap(settings), durable_log, timeout_s)


@contextmanager
def replayed(
    settings: Settings,
    names: Sequence[str],
    as_of: AsOf | None = None,
    progress: bool = True,
    allow_durable: bool = True,
    timeout_s: float = 60.0,
) -> Iterator[tuple[Replay, str]]:
    """A streaming replay of the named catalogue topics, and where it reads from."""
    with closing(open_log(settings, allow_durable, timeout_s)) as source:
        topics = [settings.topic(name) for name in names]
        yield Replay(source, topics, as_of, progress), source.description


def read_log(
    settings: Settings, names: Sequence[str], allow_durable: bool = True, timeout_s: float = 60.0
) -> tuple[list[LogRecord], str]:
    """Every record of the named topics in receipt order, for commands that read a few
    small topics whole (the policy)."""
    with replayed(settings, names, None, False, allow_durable, timeout_s) as (replay, where):
        return list(replay), where
