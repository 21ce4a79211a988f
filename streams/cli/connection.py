"""Where the CLI finds the broker: METASUP_BROKER, else the running stack, else 9092."""

from __future__ import annotations

import orjson

from streams.settings import Settings
from streams.stack import stack_file


def resolve_bootstrap(settings: Settings) -> str:
    if not settings.embedded:
        return settings.bootstrap_servers()
    path = stack_file(settings)
    if path.exists():
        return str(orjson.loads(path.read_bytes())["bootstrap"])
    return settings.bootstrap_servers()
