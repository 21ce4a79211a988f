"""`metasup whatif` on the demo desk's recorded log (90 days of real BTC prices, ten agents,
read from the durable log): the policy in force changes nothing, the literal rules of old
kill more agents earlier (and exactly when the whole pipeline, reconciliation included,
re-run from the source events under them kills them), the output is the same bytes twice,
--from/--to hold, and a bad policy file is refused with what is wrong."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from projections.pipeline import InMemoryPipeline
from projections.whatif import plan, split_log, what_if
from schemas.codec import decode_event
from schemas.envelope import Event, format_utc
from schemas.events import AgentKilled, PolicyUpdated, StrategyKilled
from schemas.policy import Policy
from streams.broker.durable_log import DurableLog, StoredRecord
from streams.broker.embedded import free_port
from streams.cli.main import main
from streams.cli.whatif import as_json, run_what_if
from streams.demo.fleet import FLEET
from streams.demo.fleet import desk_policy as desk_fleet_policy
from streams.demo.replay import replay_desk
from streams.reconcile.csv_source import DEMO_CSV, price_events
from tests.keys import SUPERVISOR_KEY
from tests.report_log import desk_log


@cache
def desk_events() -> tuple[Event, ...]:
    return tuple(decode_event(record.value) for record in desk_log())


def desk_policy() -> Policy:
    """The policy the desk ran under (recorded at its start)."""
    recorded = next(e for e in desk_events() if isinstance(e, PolicyUpdated))
    return Policy.model_validate(recorded.model_dump(include=set(Policy.model_fields)))


def literal_rules() -> Policy:
    """The rules of old: no evidence before a verdict."""
    policy = desk_policy()
    thresholds = policy.thresholds.model_copy(
        update={"kill_min_trades": 0, "kill_min_runs": 0, "promote_min_trades": 0}
    )
    return policy.model_copy(update={"thresholds": thresholds})


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """`metasup whatif` over the desk's log, read from the durable log (no broker
    answers); returns (exit code, stdout, stderr)."""
    data = tmp_path / "data"
    data.mkdir()
    durable_log = DurableLog(data / "log.sqlite3")
    durable_log.set_topics(dict.fromkeys({r.topic for r in desk_log()}, 1))
    durable_log.append(
        StoredRecord(r.topic, r.partition, r.offset, r.timestamp_ms, None, r.value)
        for r in desk_log()
    )
    durable_log.close()
    monkeypatch.setenv("METASUP_DATA_DIR", str(data))
    monkeypatch.setenv("METASUP_BROKER", f"kafka://127.0.0.1:{free_port()}")
    monkeypatch.setenv("METASUP_SUPERVISOR_PUBLIC_KEY_FILE", str(SUPERVISOR_KEY.public))

    def run(policy: Policy | bytes, *argv: str) -> tuple[int, str, str]:
        path = tmp_path / "policy.json"
        path.write_bytes(policy if isinstance(policy, bytes) else policy.model_dump_json().encode())
        code = main(["whatif", "--policy", str(path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_policy_in_force_as_the_file_shows_no_difference(cli: Any) -> None:
    code, out, err = cli(desk_policy(), "--format", "json")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["baseline"] == result["what_if"]
    assert result["policy_changes"] == []
    assert {c["killed"] for c in result["changes"].values()} <= {"same", ""}
    assert {c["promoted"] for c in result["changes"].values()} <= {"same", ""}
    # The log was made by the in-memory pipeline, in the order a what-if feeds: its
    # baseline repeats every recorded kill and promotion, fact for fact.
    agreement = result["agreement"]
    assert agreement["recorded_kills"] > 0 and agreement["recorded_promotions"] > 0
    assert agreement["reproduced_kills"] == agreement["recorded_kills"]
    assert agreement["reproduced_promotions"] == agreement["recorded_promotions"]
    assert result["recorded"]["deployed_pnl_bps"] == result["baseline"]["deployed_pnl_bps"]

    code, table, _ = cli(desk_policy())
    assert code == 0
    assert "No difference: under this policy the rules decide exactly as" in table
    assert f"reproduces {agreement['recorded_kills']} of {agreement['recorded_kills']}" in table


def first_verdict_kills(events: list[Event]) -> dict[str, tuple[datetime, str]]:
    """Each agent's first kill with no end, its own or its class's: (when, source)."""
    first: dict[str, tuple[datetime, str]] = {}
    for event in events:
        if isinstance(event, AgentKilled) and event.until is None:
            first.setdefault(event.target, (event.ts, event.source))
        if isinstance(event, StrategyKilled) and event.until is None:
            for agent in FLEET:
                if agent.strategy_class == event.target:
                    first.setdefault(agent.name, (event.ts, event.source))
    return first


def test_the_old_literal_rules_kill_more_agents_earlier_as_the_whole_pipeline_would(
    cli: Any,
) -> None:
    code, out, err = cli(literal_rules(), "--format", "json")
    assert code == 0, err
    result = orjson.loads(out)
    moved = [c["killed"].split(" by ")[0] for c in result["changes"].values()]
    assert moved.count("earlier") + moved.count("new") >= len(FLEET) // 2, moved
    assert "later" not in moved and "never" not in moved
    assert result["what_if"]["kills"] > result["baseline"]["kills"]

    # Independently: the whole pipeline, reconciliation included, fed the desk's source
    # events (as the desk sent them) under the literal rules from the start.
    prices = list(price_events(DEMO_CSV, producer="metasup.demo", source="bitfinex"))
    sent = replay_desk(prices, desk_fleet_policy(prices[0].ts)).sources
    pipeline = InMemoryPipeline()
    literal = PolicyUpdated.create(ts=prices[0].ts, **literal_rules().model_dump())
    pipeline.feed([literal, *(e for e in sent if not isinstance(e, PolicyUpdated))])
    expected = first_verdict_kills([routed.event for routed in pipeline.emitted])
    found = {
        agent: (datetime.fromisoformat(o["killed"]["at"]), o["killed"]["source"])
        for agent, o in result["what_if"]["agents"].items()
        if o["killed"] is not None
    }
    assert found == expected


def test_the_json_is_the_same_bytes_twice_and_the_table_reads_the_changes(
    cli: Any, tmp_path: Path
) -> None:
    outputs = []
    for name in ("first.json", "second.json"):
        code, _, err = cli(literal_rules(), "--format", "json", "--out", str(tmp_path / name))
        assert code == 0, err
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    assert b"earlier by" in outputs[0]

    code, table, err = cli(literal_rules())
    assert code == 0
    assert "thresholds.kill_min_trades" in table and "10 -> 0" in table
    assert "The what-if changes: kills 7 earlier, 1 new;" in table
    assert "read the log from the durable log" in err and "events/s" in err


def test_from_and_to_bound_what_the_file_decides(cli: Any) -> None:
    log = split_log(desk_events())
    # From day 11 the literal rules still have verdicts to bring forward (later, every agent
    # alive has ten trades anyway); two agents were killed before it.
    start = log.start + timedelta(days=11)
    end = log.start + timedelta(days=40)
    code, out, err = cli(
        literal_rules(), "--format", "json", "--from", format_utc(start), "--to", format_utc(end)
    )
    assert code == 0, err
    result = orjson.loads(out)
    assert (result["start"], result["end"]) == (format_utc(start), format_utc(end))
    killed_before = 0
    for agent, change in result["changes"].items():
        baseline = result["baseline"]["agents"][agent]["killed"]
        what_if = result["what_if"]["agents"][agent]["killed"]
        for killed in (baseline, what_if):
            assert killed is None or datetime.fromisoformat(killed["at"]) <= end
        if baseline is not None and datetime.fromisoformat(baseline["at"]) < start:
            assert change["killed"] == "same", agent  # decided before the file applied
            killed_before += 1
        if what_if is not None and what_if != baseline:
            assert datetime.fromisoformat(what_if["at"]) >= start, agent
    assert killed_before == 2
    assert any(c["killed"] not in ("same", "") for c in result["changes"].values())


def test_the_forked_run_gives_what_one_process_gives() -> None:
    log = split_log(desk_events())
    assert as_json(run_what_if(plan(log, literal_rules()))) == as_json(
        what_if(log, literal_rules())
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b'{"thresholds": {"kill_pnl_bps": 50}}', "thresholds.kill_pnl_bps: Input should be"),
        (b'{"thresholds": {"kil_pnl_bps": -50}}', "did you mean 'kill_pnl_bps'?"),
    ],
)
def test_an_invalid_policy_file_is_refused_with_what_is_wrong(
    cli: Any, document: bytes, message: str
) -> None:
    code, out, err = cli(document)
    assert code == 2
    assert out == ""
    assert "policy.json" in err and message in err


def test_a_time_without_a_timezone_is_refused(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(desk_policy(), "--from", "2019-05-01T00:00")
    assert exit_.value.code == 2
    assert "'2019-05-01T00:00' needs a timezone, e.g. 2024-03-01T00:00Z" in capsys.readouterr().err
