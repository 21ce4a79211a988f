"""The short form of `make chaos` (bench/chaos.py): the embedded stack as `metasup up` runs
it, a fleet on real prices sent twice, three worker SIGKILLs, a broker SIGKILL restored from
the durable log, a second worker joining and leaving, and every kind of bad input. The
durable log must then equal the pure recomputations: nothing acknowledged or accepted lost,
nothing counted twice, every bad record in `deadletter` with a reason that says what is
wrong. The seed fixes where the faults land; when they land in the workers' life does not
matter, which is the point."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import Plan, run, table

SEED = 20240301
KINDS_OF_BAD_INPUT = 14  # at least, per the issue


async def test_chaos_loses_nothing_counts_nothing_twice_and_rejects_every_bad_record(
    tmp_path: Path,
) -> None:
    outcome = await run(Plan.short(SEED, kills=3), print, tmp_path)
    report = f"\n{table(outcome)}\n{outcome.line()}\n(worker logs and durable log in {tmp_path})"
    assert outcome.caught_up, report
    assert [(r.name, r.live) for r in outcome.rows if r.section == "faults"] == [
        (r.name, r.expected) for r in outcome.rows if r.section == "faults"
    ], report
    assert (outcome.lost, outcome.double) == (0, 0), report
    assert outcome.rejected == outcome.bad, report
    assert len(outcome.bad_rows) >= KINDS_OF_BAD_INPUT, report
