"""`metasup up` killed from outside takes its broker and workers with it: no orphaned
Tansu holding memory and a port (streams/broker/child_process.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from streams.broker.embedded import free_port
from tests.conftest import eventually


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (every thread's list)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as listing:
            found.update(int(child) for child in listing.read().split())
    return found


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for whoever adopted it to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except FileNotFoundError:
        return True


async def test_a_killed_up_leaves_no_broker_or_worker_behind(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "METASUP_DATA_DIR": str(tmp_path),
        "METASUP_BROKER_PORT": "0",
        "METASUP_WEB_PORT": str(free_port()),
        "METASUP_TOPIC_PREFIX": "own.",
    }
    up = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "streams.cli.main", "up", "--workers", "1"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # Tansu and one worker.
        await eventually(lambda: len(children(up.pid)) >= 2, timeout_s=60)
        started = children(up.pid)
        assert not any(gone(pid) for pid in started)
        up.send_signal(signal.SIGKILL)
        await asyncio.wait_for(up.wait(), 10)
        await eventually(lambda: all(gone(pid) for pid in started), timeout_s=10)
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()
