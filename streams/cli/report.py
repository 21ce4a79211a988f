"""`metasup report KIND`: a report rebuilt from the log, now or as of a past time or offsets.

Every kind reads the log once through the streaming replay (`projections.replay`) into
the fleet projection and renders one view of it. The report is a function of the records
read: `meta.generated_at` is the newest receipt time among them and `meta.position` where
the read stopped, so `--as-of <generated_at>` or `--as-of-offsets <position>` rebuilds
the very same bytes later, whatever was appended since.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from projections.fleet import REPORT_TOPICS, FleetProjection
from projections.replay import AsOf, AsOfError
from projections.reports.forensics import forensics_markdown, forensics_report, forensics_text
from projections.reports.governance import kill_list_text, lineage_text
from projections.reports.lp_email import lp_email
from projections.reports.meta import MetaReport, kill_list_view, lineage_view, replayed_report
from projections.reports.meta import report_json as to_json
from projections.reports.pr_comment import pr_comment
from schemas.clock import utc_now
from streams.cli.connection import replayed
from streams.cli.github_comment import GitHubCommentError, post_pr_comment
from streams.cli.replay import chosen_as_of
from streams.core.fleet_state import default_policy, policy_at
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier

Renderer = Callable[[FleetProjection, MetaReport], bytes]


@dataclass(frozen=True)
class Kind:
    help: str
    formats: dict[str, Renderer]  # the first is the default


def _meta_json(projection: FleetProjection, report: MetaReport) -> bytes:
    return to_json(report)


def _kills_text(projection: FleetProjection, report: MetaReport) -> bytes:
    return kill_list_text(report.kill_list).encode()


def _kills_json(projection: FleetProjection, report: MetaReport) -> bytes:
    return to_json(kill_list_view(projection))


def _lineage_text(projection: FleetProjection, report: MetaReport) -> bytes:
    return lineage_text(report.lineage).encode()


def _lineage_json(projection: FleetProjection, report: MetaReport) -> bytes:
    return to_json(lineage_view(projection))


def _forensics_md(projection: FleetProjection, report: MetaReport) -> bytes:
    return forensics_markdown(forensics_report(projection)).encode()


def _forensics_text(projection: FleetProjection, report: MetaReport) -> bytes:
    return forensics_text(forensics_report(projection)).encode()


def _forensics_json(projection: FleetProjection, report: MetaReport) -> bytes:
    return to_json(forensics_report(projection))


def _comment_md(projection: FleetProjection, report: MetaReport) -> bytes:
    """The PR comment, judged by the policy in force at the report's clock."""
    at = projection.clock
    policy = policy_at(projection.fleet, at) if at else default_policy()
    return pr_comment(report, policy).encode()


def _email_text(projection: FleetProjection, report: MetaReport) -> bytes:
    return lp_email(report).text.encode()


def _email_html(projection: FleetProjection, report: MetaReport) -> bytes:
    return lp_email(report).html.encode()


def _email_json(projection: FleetProjection, report: MetaReport) -> bytes:
    return to_json(lp_email(report))


KINDS: dict[str, Kind] = {
    "meta": Kind(
        "the whole fleet: meta, fleet, agents, allocation, capital, kills, lineage, strategies",
        {"json": _meta_json},
    ),
    "kills": Kind(
        "the kill list now and its full history, with signature status",
        {"text": _kills_text, "json": _kills_json},
    ),
    "lineage": Kind("the family tree of agents", {"text": _lineage_text, "json": _lineage_json}),
    "forensics": Kind(
        "the worst trades with their runs' telemetry, per-agent losses and hypotheses",
        {"md": _forensics_md, "text": _forensics_text, "json": _forensics_json},
    ),
    "pr-comment": Kind(
        "markdown for a pull request: severity, portfolio, decisions, allocation, gate",
        {"md": _comment_md},
    ),
    "lp-email": Kind(
        "the LP daily email: subject, plain text and HTML (json: all three)",
        {"text": _email_text, "html": _email_html, "json": _email_json},
    ),
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "report",
        help="a report rebuilt from the log (meta, kills, lineage, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = "\n".join(f"  {name:<11} {kind.help}" for name, kind in KINDS.items())
    parser.epilog = f"kinds:\n{kinds}"
    parser.add_argument("kind", choices=list(KINDS), metavar="KIND", help="which report")
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--as-of",
        metavar="TIME",
        help="ISO-8601 time with timezone: only records the broker had received by then",
    )
    when.add_argument(
        "--as-of-offsets",
        metavar="POSITION",
        help="topic:partition:offset,... (a report's meta.position): records before them",
    )
    parser.add_argument("--format", help="output format (default: the kind's first)")
    parser.add_argument("--out", type=Path, help="write to this file instead of stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        metavar="SECONDS",
        help="without --as-of: leave out records received in the last SECONDS "
        f"(default {SETTLE_S:g}), so --as-of <generated_at> can rebuild the report later",
    )
    github = parser.add_argument_group("posting the pr-comment (token from GITHUB_TOKEN)")
    github.add_argument("--post", metavar="OWNER/REPO#N", help="post it on this pull request")
    github.add_argument(
        "--github-api",
        default="https://api.github.com",
        help="GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3)",
    )
    parser.set_defaults(run=run)


# A producer stamps a record when it makes it and the broker appends it a moment later
# (batching, network); Tansu keeps the producer's stamp (it ignores LogAppendTime). A live
# report therefore leaves out the last seconds: every record stamped before its cut has
# been appended by the time it reads, so the same cut replays the same records later.
SETTLE_S = 5.0


def live_as_of(args: argparse.Namespace, settings: Settings, now: datetime) -> AsOf:
    """The as-of a command asked for; without one, what had settled by `now`."""
    as_of = chosen_as_of(args, settings)
    if as_of.received_until is None and not as_of.offsets and args.settle > 0:
        return AsOf(received_until=now - timedelta(seconds=args.settle))
    return as_of


def build(
    settings: Settings, as_of: AsOf, progress: bool
) -> tuple[FleetProjection, MetaReport, str]:
    """Replay the report topics into the fleet projection; its meta report; where from."""
    verifier = load_verifier(settings)
    with replayed(settings, REPORT_TOPICS, as_of, progress) as (replay, where):
        projection, report = replayed_report(replay, verifier, settings.topic_prefix)
    return projection, report, where


def run(args: argparse.Namespace, settings: Settings) -> int:
    kind = KINDS[args.kind]
    fmt = args.format or next(iter(kind.formats))
    if fmt not in kind.formats:
        print(
            f"error: {args.kind} comes as {', '.join(kind.formats)}, not {fmt!r}", file=sys.stderr
        )
        return 2
    try:
        as_of = live_as_of(args, settings, utc_now())
        projection, report, where = build(settings, as_of, not args.no_progress)
    except AsOfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    body = kind.formats[fmt](projection, report)
    if args.post:
        return _post(args, body.decode())
    if args.out is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    else:
        args.out.write_bytes(body)
        print(f"{args.kind} report ({fmt}) written to {args.out}", file=sys.stderr)
    print(
        f"read {report.meta.records:,} records from the {where}; "
        f"as of {report.meta.generated_at or 'an empty log'}",
        file=sys.stderr,
    )
    return 0


def _post(args: argparse.Namespace, body: str) -> int:
    repo, _, number = args.post.partition("#")
    if args.kind != "pr-comment" or not number.isdigit() or repo.count("/") != 1:
        print("error: --post OWNER/REPO#N posts the pr-comment report only", file=sys.stderr)
        return 2
    try:
        url = post_pr_comment(
            args.github_api, repo, int(number), os.environ.get("GITHUB_TOKEN", ""), body
        )
    except GitHubCommentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"posted: {url}", file=sys.stderr)
    return 0
