"""Entry point of `metasup`; each subcommand lives in its own module with `register`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from streams.cli import (
    briefings,
    emit,
    keys,
    operator,
    policy,
    proposals,
    replay,
    report,
    spawn,
    stats,
    status,
    tail,
    topics,
    up,
    whatif,
)
from streams.cli.connection import LogUnavailable
from streams.core.gc_tuning import collect_less_often
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import SupervisorKeyError

SUBCOMMANDS = (
    up,
    emit,
    tail,
    topics,
    status,
    stats,
    replay,
    report,
    keys,
    operator,
    policy,
    spawn,
    whatif,
    briefings,
    proposals,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metasup",
        description="Meta-Supervisor: event-sourced supervisor for a fleet of trading agents.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    collect_less_often()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # aiokafka logs every refused connection; the commands say plainly what failed instead.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    try:
        return int(args.run(args, settings))
    except (LogUnavailable, SupervisorKeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `metasup tail x | head` closed the pipe: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
