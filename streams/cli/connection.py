"""Where the CLI finds the broker: METASUP_BROKER, else the running stack, else 9092."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from projections.log import LogRecord, read_broker, read_durable_log
from streams.runtime.settings import Settings
from streams.runtime.stack import durable_log_path, stack_file


def resolve_bootstrap(settings: Settings) -> str:
    if not settings.embedded:
        return settings.bootstrap_servers()
    path = stack_file(settings)
    if path.exists():
        return str(orjson.loads(path.read_bytes())["bootstrap"])
    return settings.bootstrap_servers()


class LogUnavailable(RuntimeError):
    """Neither the broker nor the durable log can be read; the message says what to do."""


def read_log(
    settings: Settings, names: Sequence[str], allow_durable: bool = True, timeout_s: float = 60.0
) -> tuple[list[LogRecord], str]:
    """Records of the named catalogue topics, and where they came from: the broker, or,
    when it is down and `allow_durable`, the durable log of the embedded mode."""
    bootstrap = resolve_bootstrap(settings)
    topics = [settings.topic(name) for name in names]
    try:
        records = asyncio.run(asyncio.wait_for(read_broker(bootstrap, topics), timeout_s))
        return records, f"broker {bootstrap}"
    except Exception as error:
        path = durable_log_path(settings)
        if not allow_durable or not path.exists():
            detail = str(error) or type(error).__name__
            raise LogUnavailable(
                f"cannot read the log from the broker at {bootstrap} ({detail}); "
                "is it running (`metasup up`)?"
            ) from None
        return read_durable_log(path, topics), f"durable log {path} (broker not reachable)"
