"""`metasup up`: broker (embedded unless METASUP_BROKER is set), durable log, workers."""

from __future__ import annotations

import argparse
import asyncio
from functools import partial

from streams.demo import run_demo
from streams.settings import Settings
from streams.stack import Stack, install_stop_handlers


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("up", help="run the stack until Ctrl-C")
    parser.add_argument("--workers", type=int, default=1, help="Faust worker processes")
    parser.add_argument(
        "--demo", action="store_true", help="also run the simulated fleet on the shipped BTC prices"
    )
    parser.add_argument(
        "--demo-speed", type=float, default=40.0, help="simulated hours per second (default 40)"
    )
    parser.set_defaults(run=run)


async def serve(args: argparse.Namespace, settings: Settings) -> None:
    stop = asyncio.Event()
    install_stop_handlers(stop)
    stack = Stack(settings, workers=args.workers, say=lambda line: print(line, flush=True))
    if args.demo:
        stack.extras.append(
            partial(
                run_demo,
                topic_prefix=settings.topic_prefix,
                data_dir=settings.data_dir,
                speed=args.demo_speed,
                say=stack.say,
            )
        )
    await stack.run(stop)


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(serve(args, settings))
    return 0
