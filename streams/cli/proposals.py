"""`metasup proposals list|show|accept|reject`: the agents the IC memo run proposed.

A proposal is data: accepting one sends a signed `proposal.accept.requested` to
`commands`, and the supervisor records the child in `lineage` (`agent.spawned`, with the
parent and the proposal id). Deploying the agent is up to you; nothing a proposal says is
run by the system.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from datetime import UTC, datetime

import orjson

from projections.log import events
from projections.proposals import ProposalBook, ProposalState
from projections.reports.markup import printable
from schemas.envelope import format_utc
from schemas.events import (
    AgentSpawned,
    ProposalAcceptRequested,
    ProposalCommand,
    ProposalRejectRequested,
)
from streams.cli.connection import read_log
from streams.cli.operator import PRODUCER, add_actor, send_event, signing_key
from streams.fleet.commands import new_nonce, sign
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier

VERBS = ("list", "show", "accept", "reject")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "proposals",
        help="agent proposals from the IC memo run: list, show, accept, reject",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n  metasup proposals list\n  metasup proposals show 2026-W48-2\n"
            "  metasup proposals accept 2026-W48-2 --reason 'fits the book'\n"
            "  metasup proposals reject 2026-W48-3 --reason 'duplicates momentum-7'"
        ),
    )
    parser.add_argument("verb", choices=VERBS)
    parser.add_argument("proposal_id", nargs="?", metavar="ID", help="a proposal id")
    parser.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the log)")
    parser.add_argument("--all", action="store_true", help="list: also accepted and rejected")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    add_actor(parser)
    parser.set_defaults(run=run)


def load_book(settings: Settings) -> tuple[ProposalBook, set[str]]:
    """The proposals and their fate, and every child already in the lineage."""
    records, _ = read_log(settings, ["proposals", "lineage"])
    book = ProposalBook()
    children: set[str] = set()
    for event in events(records, verifier=load_verifier(settings)):
        book.apply(event)
        if isinstance(event, AgentSpawned):
            children.add(event.child)
    return book, children


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.verb != "list" and not args.proposal_id:
        print(f"error: `metasup proposals {args.verb}` needs a proposal ID", file=sys.stderr)
        return 2
    book, children = load_book(settings)
    if args.verb == "list":
        return _list(book, args)
    state = book.proposals.get(args.proposal_id)
    if state is None:
        known = ", ".join(sorted(book.proposals)[-5:]) or "none yet (see `metasup memo`)"
        print(f"error: no proposal {args.proposal_id!r} (latest: {known})", file=sys.stderr)
        return 1
    if args.verb == "show":
        print(_json(state) if args.format == "json" else _details(state))
        return 0
    if state.status != "proposed":
        print(f"error: proposal {args.proposal_id} is {state.status} already", file=sys.stderr)
        return 1
    if args.verb == "accept" and state.proposal.name in children:
        print(f"error: agent {state.proposal.name!r} is in the lineage already", file=sys.stderr)
        return 1
    return _send_verdict(args, settings, state)


def _send_verdict(args: argparse.Namespace, settings: Settings, state: ProposalState) -> int:
    try:
        actor, secret = signing_key(settings, args.actor)
    except (ValueError, orjson.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kind: type[ProposalCommand] = (
        ProposalAcceptRequested if args.verb == "accept" else ProposalRejectRequested
    )
    proposal = state.proposal
    command = kind.create(
        ts=datetime.now(UTC),
        producer=PRODUCER,
        actor=actor,
        reason=args.reason,
        nonce=new_nonce(),
        proposal_id=proposal.proposal_id,
        child=proposal.name,
        parent=proposal.parent_agent,
        strategy_class=proposal.strategy_class,
    )
    if not send_event(settings, sign(command, secret), f"{proposal.name!r}, actor {actor!r}"):
        return 1
    after = "`agent.spawned` on `lineage`" if args.verb == "accept" else "`proposal.rejected`"
    print(f"the supervisor verifies it and records {after}; a refusal goes to `deadletter`")
    return 0


def _list(book: ProposalBook, args: argparse.Namespace) -> int:
    shown = [s for s in book.listed() if args.all or s.status == "proposed"]
    if args.format == "json":
        print(orjson.dumps([orjson.loads(_json(s)) for s in shown]).decode())
        return 0
    if not shown:
        print("no open proposals" + ("" if args.all else " (--all shows decided ones)"))
    for state in shown:
        p = state.proposal
        parent = f" <- {p.parent_agent}" if p.parent_agent else ""
        line = f"{p.proposal_id:<24} {state.status:<9} {p.name}{parent} [{p.strategy_class}]"
        print(printable(line))
    for invalid in book.invalid[-3:]:
        why = printable(invalid.reason[:200])
        print(f"refused LLM output ({invalid.period}, {invalid.model}): {why}")
    return 0


def _json(state: ProposalState) -> str:
    body = state.proposal.model_dump(mode="json")
    body |= {"status": state.status, "decided_by": state.decided_by, "reason": state.reason}
    body["decided_at"] = format_utc(state.decided_at) if state.decided_at else None
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()


def _details(state: ProposalState) -> str:
    p = state.proposal

    def listed(items: list[str]) -> str:
        return "\n".join(f"  - {printable(item)}" for item in items)

    verdict = (
        f"{state.status} by {state.decided_by} at {format_utc(state.decided_at)}: {state.reason}"
        if state.decided_at
        else state.status
    )
    return "\n".join(
        [
            printable(f"{p.proposal_id}: {p.name} ({p.strategy_class}), {verdict}"),
            printable(
                f"proposed {format_utc(p.ts)}; parent {p.parent_agent or '-'}; "
                f"regime trigger {p.regime_trigger}"
            ),
            "thesis:",
            textwrap.indent(textwrap.fill(printable(p.thesis), 88), "  "),
            "data sources:",
            listed(p.data_sources),
            "signals:",
            listed(p.signals),
            "evaluation offline:",
            listed(p.eval_plan.offline),
            "evaluation live shadow:",
            listed(p.eval_plan.live_shadow),
            "risk controls:",
            listed(p.risk_controls),
            f"expected edge: {printable(p.expected_edge)}",
        ]
    )
