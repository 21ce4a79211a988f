"""Bounded waiting for a condition: never a bare sleep whose length is a guess."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], timeout_s: float = 20.0, every_s: float = 0.05
) -> None:
    """Wait until `condition` holds, or fail with a readable message after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(every_s)
