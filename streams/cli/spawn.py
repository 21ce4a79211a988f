"""`metasup spawn`: record that an agent was spawned from a parent (`agent.spawned`).

`lineage` is a derived topic, which `emit` refuses to write. This command is the
supervisor's own tool, and the writer of lineage facts: the operator (or the
proposal workflow) runs it once a child agent is actually deployed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from schemas.envelope import format_utc
from schemas.events import AgentSpawned
from streams.cli.operator import PRODUCER, send_event
from streams.fleet.commands import spawn_event_id
from streams.runtime.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "spawn",
        help="record that a child agent was spawned from a parent (writes `lineage`)",
        description=(
            "Publish agent.spawned to `lineage`.\n\n"
            "`lineage` is a derived topic, which `emit` refuses to write: this command is\n"
            "the supervisor's own CLI acting as the writer of lineage facts. Run it once\n"
            "the child is deployed. The event id derives from (parent, child, proposal id\n"
            "or else reason), so the same spawn sent twice carries one id."
        ),
        epilog=(
            "example:\n  metasup spawn --parent momentum-7 --child momentum-7b "
            "--reason 'tighter stops' \\\n      --strategy momentum --proposal-id p-42"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--parent", required=True, metavar="AGENT", help="the parent agent")
    parser.add_argument("--child", required=True, metavar="AGENT", help="the new agent")
    parser.add_argument("--reason", required=True, metavar="TEXT", help="why it was spawned")
    parser.add_argument("--strategy", metavar="CLASS", help="the child's strategy class")
    parser.add_argument(
        "--proposal-id", metavar="ID", help="the agent.proposed it comes from, if any"
    )
    parser.set_defaults(run=run)


def build_spawn(
    parent: str,
    child: str,
    reason: str,
    now: datetime,
    strategy_class: str | None = None,
    proposal_id: str | None = None,
) -> AgentSpawned:
    return AgentSpawned.create(
        event_id=spawn_event_id(parent, child, reason, proposal_id),
        ts=now,
        producer=PRODUCER,
        parent=parent,
        child=child,
        reason=reason,
        strategy_class=strategy_class,
        proposal_id=proposal_id,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    parent, child = args.parent.strip(), args.child.strip()
    if not parent or not child:
        print("error: --parent and --child must name agents", file=sys.stderr)
        return 2
    if parent == child:
        print("error: an agent cannot be its own parent", file=sys.stderr)
        return 2
    event = build_spawn(
        parent, child, args.reason, datetime.now(UTC), args.strategy or None, args.proposal_id
    )
    strategy = f" ({event.strategy_class})" if event.strategy_class else ""
    if not send_event(settings, event, f"{parent} -> {child}{strategy} at {format_utc(event.ts)}"):
        return 1
    return 0
