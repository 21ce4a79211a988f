"""Measures what an abrupt death of the embedded broker loses: records the broker had
acknowledged (acks=all) that are missing after the stack restored it from the durable log.

    python -m bench.broker_death [--runs 3] [--rate 2000] [--batched]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from projections.log import read_broker
from streams.runtime.settings import Settings
from streams.runtime.stack import Stack
from streams.runtime.waiting import eventually

BURST = 50


async def one_run(
    rate: float, seconds: float = 3.0, batched: bool = False, min_acked: int = 0
) -> tuple[int, int, int]:
    """(acknowledged before the kill, restored, acknowledged but lost). `batched`: many
    records per batch and many sends in flight (as Faust and the restore send), instead
    of one record per batch, each send awaited. Sends for `seconds`, and on until at
    least `min_acked` records are acknowledged (tests must not depend on speed)."""
    data_dir = Path(tempfile.mkdtemp(prefix="metasup-death-"))
    settings = Settings(METASUP_DATA_DIR=data_dir, METASUP_BROKER_PORT=0, METASUP_TOPIC_PREFIX="d.")
    stack = Stack(settings, workers=0, say=lambda line: None)
    stop = asyncio.Event()
    running = asyncio.create_task(stack.run(stop))
    await eventually(lambda: stack.recorder is not None, timeout_s=30)
    assert stack.broker is not None and stack.broker.process is not None
    batching: dict[str, int] = {"linger_ms": 5} if batched else {"max_batch_size": 1}
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", **batching)
    await producer.start()
    acked: list[int] = []

    def note(i: int, future: asyncio.Future[object]) -> None:
        if not future.cancelled() and future.exception() is None:
            acked.append(i)

    kill_at = time.monotonic() + seconds
    i = 0
    while time.monotonic() < kill_at or len(acked) < min_acked:
        if batched:
            for _ in range(BURST):
                sent = await producer.send("d.signals", str(i).encode(), key=str(i % 16).encode())
                sent.add_done_callback(functools.partial(note, i))
                i += 1
            await asyncio.sleep(BURST / rate)
            continue
        await producer.send_and_wait("d.signals", str(i).encode(), key=str(i % 16).encode())
        acked.append(i)
        i += 1
        await asyncio.sleep(1 / rate)
    # Taken before the kill: the stack may have replaced the broker by the time the
    # producer has stopped.
    first = stack.broker.process
    first.send_signal(signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), timeout=5)
    await eventually(
        lambda: (
            stack.broker is not None
            and stack.broker.process is not first
            and stack.recorder is not None
        ),
        timeout_s=60,
    )
    records = await read_broker(stack.bootstrap, ["d.signals"])
    restored = {int(r.value or b"-1") for r in records}
    stop.set()
    await asyncio.wait_for(running, timeout=60)
    return len(acked), len(restored), len(set(acked) - restored)


async def main(runs: int, rate: float, batched: bool) -> None:
    print(f"{'run':>3} {'acked':>7} {'restored':>9} {'lost':>5}")
    for run in range(1, runs + 1):
        acked, restored, lost = await one_run(rate, batched=batched)
        print(f"{run:>3} {acked:>7} {restored:>9} {lost:>5}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2000.0, help="target records per second")
    parser.add_argument("--batched", action="store_true", help="multi-record batches, pipelined")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.rate, arguments.batched))
