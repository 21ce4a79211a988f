"""`metasup up`: broker (embedded unless METASUP_BROKER is set), durable log, workers."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from functools import partial

from streams.cli.demo import run_demo
from streams.dashboard.server import run_dashboard
from streams.email.config import EmailSettings
from streams.llm.config import LlmSettings
from streams.reconcile.http_feeds import default_price_feed
from streams.runtime.live_feed import run_live_feed
from streams.runtime.settings import Settings
from streams.runtime.stack import DataDirInUse, Stack, install_stop_handlers
from streams.runtime.supervisor_key import ensure_key_pair, load_signer, load_verifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("up", help="run the stack until Ctrl-C")
    parser.add_argument("--workers", type=int, default=1, help="Faust worker processes")
    parser.add_argument(
        "--demo", action="store_true", help="also run the simulated fleet on the shipped BTC prices"
    )
    parser.add_argument(
        "--demo-speed", type=float, default=40.0, help="simulated hours per second (default 40)"
    )
    parser.add_argument(
        "--price-poll-s",
        type=positive_seconds,
        default=60.0,
        help="seconds between polls of the live price feed (METASUP_PRICE_FEED=binance; "
        "default 60)",
    )
    parser.set_defaults(run=run)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def price_feed_line(settings: Settings, poll_s: float, demo: bool) -> str:
    """The start-up line saying where prices come from."""
    if settings.price_feed == "binance":
        return f"price feed: Binance klines (Coinbase candles fallback), polling every {poll_s:g} s"
    if settings.price_feed == "csv":
        return "price feed: csv demo data" + ("" if demo else " (published with --demo only)")
    return "price feed: none"


def schedule_line(settings: Settings, env: Mapping[str, str]) -> str:
    """The start-up line saying what the report schedule will do, and where mail goes;
    a bad email setting is refused here (ValueError naming it), before anything starts."""
    if not settings.schedules:
        return "report schedule: off (METASUP_SCHEDULES=off)"
    email, llm = EmailSettings.from_env(env), LlmSettings.from_env(env)
    mail = (
        f"SendGrid to {len(email.recipients)} recipient(s)"
        if email.can_send()
        else f"the outbox {settings.data_dir / 'reports' / 'outbox'} "
        "(set SENDGRID_API_KEY and META_EMAIL_TO to send)"
    )
    memo = llm.memo_model if llm.api_key else "off until OPENAI_API_KEY is set"
    return (
        "report schedule (UTC): IC memo Sundays 12:00, LP email 07:10, forensics 08:30; "
        f"mail to {mail}; memo model: {memo}"
    )


async def serve(args: argparse.Namespace, settings: Settings, schedule: str) -> None:
    stop = asyncio.Event()
    install_stop_handlers(stop)
    stack = Stack(settings, workers=args.workers, say=lambda line: print(line, flush=True))
    if ensure_key_pair(settings):
        stack.say(
            f"created the supervisor key {settings.supervisor_key_path()} (mode 600); readers "
            f"verify kills and policy with {settings.supervisor_public_key_path()}"
        )
    stack.say(price_feed_line(settings, args.price_poll_s, args.demo))
    stack.say(schedule)
    stack.extras.append(
        partial(run_dashboard, settings=settings, verifier=load_verifier(settings), say=stack.say)
    )
    if args.demo:
        stack.extras.append(
            partial(
                run_demo,
                topic_prefix=settings.topic_prefix,
                data_dir=settings.data_dir,
                speed=args.demo_speed,
                say=stack.say,
                signer=load_signer(settings),
            )
        )
    if settings.price_feed == "binance":
        stack.extras.append(
            partial(
                run_live_feed,
                topic_prefix=settings.topic_prefix,
                feed=default_price_feed(
                    binance_url=settings.binance_base_url,
                    coinbase_url=settings.coinbase_base_url,
                ),
                say=stack.say,
                poll_s=args.price_poll_s,
            )
        )
    await stack.run(stop)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        schedule = schedule_line(settings, os.environ)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    try:
        asyncio.run(serve(args, settings, schedule))
    except DataDirInUse as error:
        print(f"error: {error}")
        return 1
    return 0
