"""`metasup report` without --as-of leaves the last seconds out, so that the same report can
be rebuilt later --as-of its generated_at: what a producer stamped before the cut has been
appended by then, though a broker may append it a moment after the stamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from projections.replay import AsOf
from streams.cli.main import build_parser
from streams.cli.report import SETTLE_S, live_as_of
from streams.runtime.settings import Settings

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def as_of(*words: str) -> AsOf:
    args = build_parser().parse_args(["report", "meta", *words])
    return live_as_of(args, Settings(METASUP_TOPIC_PREFIX="p."), NOW)


def test_a_live_report_reads_what_had_settled() -> None:
    assert as_of().received_until == NOW - timedelta(seconds=SETTLE_S)
    assert as_of("--settle", "1.5").received_until == NOW - timedelta(seconds=1.5)


def test_settle_zero_reads_everything_and_an_explicit_as_of_wins() -> None:
    assert as_of("--settle", "0").received_until is None
    assert as_of("--as-of", "2026-12-01T00:00:00Z").received_until == datetime(
        2026, 12, 1, tzinfo=UTC
    )
    offsets = as_of("--as-of-offsets", "kills:0:3")
    assert offsets.received_until is None and offsets.offsets == {("p.kills", 0): 3}
