"""The dashboard server against a real broker: the recorded demo desk on the log, the page's
JSON, live pushes, Prometheus metrics and the operator controls (the page itself in a
browser is the next tier's)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from projections.fleet import project_fleet
from projections.log import LogRecord, events, read_broker
from projections.panels import dashboard_state
from projections.reconcile_status import STATUS_TOPICS, reconcile_status
from projections.reports.meta import report_json
from schemas.events import DecisionMade, KillRequested, RunCompleted, SignalEmitted
from streams.broker.durable_log import DurableLog
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.broker.recorder import Recorder
from streams.broker.restore import restore
from streams.dashboard.server import run_dashboard
from streams.fleet.commands import new_key, verify
from streams.runtime.settings import Settings
from tests.conftest import eventually
from tests.integration.stack import Worker, create_topics, metasup, produce, worker_settings
from tests.keys import SUPERVISOR_KEY
from tests.report_log import desk_log

HOSTILE = "<img src=x onerror=alert(1)>"
TOKEN = "test-operator-token-4f1c"


@dataclass
class Dashboard:
    url: str
    http: aiohttp.ClientSession
    said: list[str]

    async def json(self, path: str) -> Any:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()


StartDashboard = Callable[[Settings], Awaitable[Dashboard]]


@pytest.fixture
async def start_dashboard(broker: EmbeddedBroker, prefix: str) -> AsyncIterator[StartDashboard]:
    """Starts `run_dashboard` (what `metasup up` runs) with the given settings; stops it."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    http = aiohttp.ClientSession()

    async def start(settings: Settings) -> Dashboard:
        said: list[str] = []
        task = asyncio.create_task(
            run_dashboard(broker.bootstrap, stop, settings, SUPERVISOR_KEY.verifier, said.append)
        )
        tasks.append(task)
        await eventually(lambda: any(line.startswith("dashboard: ") for line in said), 10)
        [url] = [line.removeprefix("dashboard: ") for line in said if "http" in line]
        assert url.endswith("/"), said
        return Dashboard(url.rstrip("/"), http, said)

    yield start
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    await http.close()


def dashboard_settings(prefix: str, data_dir: Path, **update: object) -> Settings:
    """A worker's settings (the session's supervisor key) with the dashboard on a free port."""
    return worker_settings(prefix, data_dir).model_copy(
        update={"dashboard_port": free_port(), **update}
    )


async def produce_log(broker: EmbeddedBroker, prefix: str, records: Iterable[LogRecord]) -> None:
    """The recorded records on their topics and partitions, received at their recorded time."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(
                prefix + r.topic, r.value, partition=r.partition, timestamp_ms=r.timestamp_ms
            )
            for r in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def next_state(lines: aiohttp.StreamReader) -> dict[str, Any]:
    """The next `state` event of a server-sent event stream (keep-alives skipped)."""
    name, data = "", []
    while True:
        line = (await lines.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        elif not line and name == "state" and data:
            return dict(orjson.loads("\n".join(data)))
        elif not line:
            name, data = "", []


async def test_the_desk_live_on_the_page_json_and_metrics(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path, start_dashboard: StartDashboard
) -> None:
    await create_topics(broker, prefix)
    records = desk_log()
    await produce_log(broker, prefix, records)
    desk = list(events(records, verifier=SUPERVISOR_KEY.verifier))
    agents = sorted({e.agent for e in desk if isinstance(e, RunCompleted)})
    assert len(agents) == 10
    dashboard = await start_dashboard(dashboard_settings(prefix, tmp_path))
    assert dashboard.url.startswith("http://127.0.0.1:")
    assert "operator controls are off: set METASUP_DASHBOARD_TOKEN" in dashboard.said[-1]

    async def caught_up() -> bool:
        state = await dashboard.json("/api/state")
        return bool(state["portfolio"]["meta"]["records"] == len(records))

    await eventually(caught_up, timeout_s=20, every_s=0.2)
    rows = (await dashboard.json("/api/agents"))["rows"]
    assert [row["agent"] for row in rows] == agents
    assert all(row["health"]["budget"] is not None for row in rows)
    state = await dashboard.json("/api/state")
    # Read from the broker and folded live, the page shows what the recorded log folded
    # offline shows (the same records, received at the same times).
    offline = dashboard_state(project_fleet(records, SUPERVISOR_KEY.verifier))
    assert state == orjson.loads(report_json(offline))
    for panel in ("portfolio", "curves", "allocation", "kill_list", "lineage", "feed"):
        assert await dashboard.json(f"/api/{panel}") == state[panel]

    # A run of a new agent produced after a subscriber connected reaches it, name intact.
    async with dashboard.http.get(dashboard.url + "/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.headers["Content-Security-Policy"] == "default-src 'self'"
        first = await asyncio.wait_for(next_state(stream.content), 5)
        assert HOSTILE not in {row["agent"] for row in first["agents"]["rows"]}
        clock = max(e.ts for e in desk if isinstance(e, DecisionMade))
        run = RunCompleted.create(
            ts=clock,
            producer="test",
            agent=HOSTILE,
            run_id=uuid.uuid4(),
            started_at=clock - timedelta(seconds=3),
            latency_ms=3000.0,
            cost_usd=0.25,
        )
        produced_at = asyncio.get_running_loop().time()
        await produce(broker, prefix, [run])

        async def pushed() -> dict[str, Any]:
            while True:
                state = await next_state(stream.content)
                rows = {row["agent"]: row for row in state["agents"]["rows"]}
                if HOSTILE in rows:
                    return dict(rows[HOSTILE])

        row = await asyncio.wait_for(pushed(), 5)
        pushed_after = asyncio.get_running_loop().time() - produced_at
    assert row["stats"]["runs"] == 1 and row["stats"]["cost_usd"] == 0.25
    assert pushed_after < 2.0, f"pushed {pushed_after:.2f} s after the event was produced"
    assert HOSTILE in [row["agent"] for row in (await dashboard.json("/api/agents"))["rows"]]

    async with dashboard.http.get(dashboard.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Security-Policy"] == "default-src 'self'"
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    totals = {s.labels["topic"]: s.value for s in families["metasup_events"].samples}
    assert totals["runs"] == sum(1 for r in records if r.topic == "runs") + 1
    assert totals["decisions"] == sum(1 for r in records if r.topic == "decisions")
    [last_decision] = families["metasup_last_decision_timestamp_seconds"].samples
    assert last_decision.value == clock.timestamp()
    status = reconcile_status(events(r for r in records if r.topic in STATUS_TOPICS))
    pending = sum(row.pending for row in status.rows.values())
    [pending_sample] = families["metasup_pending_reconciliations"].samples
    assert pending_sample.value == pending
    [deadletter] = families["metasup_deadletter_events"].samples
    assert deadletter.value == 0

    async with dashboard.http.get(dashboard.url + "/") as response:
        page = await response.text()
        assert response.headers["Content-Security-Policy"] == "default-src 'self'"
    assert '<script src="/static/app.js"' in page
    async with dashboard.http.get(dashboard.url + "/static/app.js") as response:
        assert response.status == 200
        assert response.headers["Content-Security-Policy"] == "default-src 'self'"


async def commands_on_the_log(broker: EmbeddedBroker, prefix: str) -> list[KillRequested]:
    records = await read_broker(broker.bootstrap, [prefix + "commands"])
    return [e for e in events(records) if isinstance(e, KillRequested)]


async def test_operator_controls_need_the_token_and_send_signed_commands(
    broker: EmbeddedBroker,
    prefix: str,
    tmp_path: Path,
    start_dashboard: StartDashboard,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await create_topics(broker, prefix)
    secret = new_key()
    # The operator keyring both the worker and the dashboard read (`metasup keys new` writes
    # it there); it has no key for the dashboard's default actor.
    (tmp_path / "operator-keys.json").write_bytes(orjson.dumps({"ops": secret}))
    settings = dashboard_settings(prefix, tmp_path, dashboard_token=SecretStr(TOKEN))
    worker = Worker(broker, settings)
    worker.start()
    try:
        await operate(broker, prefix, settings, secret, start_dashboard, caplog)
    finally:
        await worker.stop()


async def operate(
    broker: EmbeddedBroker,
    prefix: str,
    settings: Settings,
    secret: str,
    start_dashboard: StartDashboard,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dashboard = await start_dashboard(settings)
    kill = {"target": "llm-flaky", "target_type": "agent", "reason": "runaway losses"}

    async def post(action: str, body: dict[str, Any], token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with dashboard.http.post(
            f"{dashboard.url}/api/commands/{action}", json=body, headers=headers
        ) as response:
            return response.status, await response.json()

    with caplog.at_level(logging.WARNING, logger="streams.dashboard.server"):
        assert (await post("kill", kill, None))[0] == 401
        assert (await post("kill", kill, "not-the-token"))[0] == 401
    refusals = [r.getMessage() for r in caplog.records if "refused kill" in r.getMessage()]
    assert len(refusals) == 2 and all("127.0.0.1" in message for message in refusals)
    assert not any("not-the-token" in r.getMessage() for r in caplog.records)

    status, answer = await post("kill", kill, TOKEN)  # no key for the actor "dashboard"
    assert status == 503 and "metasup keys new --actor dashboard" in answer["error"]
    assert await commands_on_the_log(broker, prefix) == []  # nothing sent so far

    dashboard = await start_dashboard(
        settings.model_copy(update={"dashboard_actor": "ops", "dashboard_port": free_port()})
    )
    status, answer = await post("kill", kill, TOKEN)
    assert status == 202, answer
    until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    pause = {"target": "momentum", "target_type": "strategy_class", "until": until.isoformat()}
    assert (await post("pause", pause, TOKEN))[0] == 202
    assert (await post("pause", kill, TOKEN))[0] == 400  # a pause needs `until`

    sent = await commands_on_the_log(broker, prefix)
    assert [(c.target_type, c.target, c.until) for c in sent] == [
        ("agent", "llm-flaky", None),
        ("strategy_class", "momentum", until),
    ]
    keyring = {"ops": bytes.fromhex(secret)}
    assert all(verify(c, keyring, set(), datetime.now(UTC)) is None for c in sent)
    assert str(sent[0].event_id) == answer["event_id"]

    # The worker's supervisor turns them into signed facts on `kills`; the page shows them.
    async def on_the_kill_list() -> bool:
        kill_list = await dashboard.json("/api/kill_list")
        stopped = [*kill_list["agents"], *kill_list["strategy_classes"]]
        return {(k["entry"]["target"], k["entry"]["until"]) for k in stopped} == {
            ("llm-flaky", None),
            ("momentum", until.isoformat().replace("+00:00", "Z")),
        }

    await eventually(on_the_kill_list, timeout_s=40, every_s=0.5)
    history = (await dashboard.json("/api/kill_list"))["history"]
    assert {row["actor"] for row in history} == {"ops"}
    assert all(row["signature_verified"] for row in history)


async def pending_metric(dashboard: Dashboard) -> float:
    async with dashboard.http.get(dashboard.url + "/metrics") as response:
        assert response.status == 200, await response.text()
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    [sample] = families["metasup_pending_reconciliations"].samples
    return float(sample.value)


def pending_in_status(output: str) -> int:
    """The pending column of `metasup status`'s table, summed."""
    rows = [line.split() for line in output.splitlines()]
    return sum(int(row[3]) for row in rows if len(row) >= 6 and row[1].endswith("h"))


async def test_the_follower_rides_a_broker_restart_and_counts_pending_as_records_come(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path, start_dashboard: StartDashboard
) -> None:
    await create_topics(broker, prefix)
    records = desk_log()
    await produce_log(broker, prefix, records)
    durable_log = DurableLog(tmp_path / "log.sqlite3")
    recorder = Recorder(broker.bootstrap, durable_log)
    await recorder.start()
    await recorder.drain()
    await recorder.stop()
    settings = dashboard_settings(prefix, tmp_path)
    dashboard = await start_dashboard(settings)

    async def records_shown() -> int:
        return int((await dashboard.json("/api/state"))["portfolio"]["meta"]["records"])

    async def records_shown_is(count: int) -> bool:
        return await records_shown() == count

    await eventually(lambda: records_shown_is(len(records)), timeout_s=20, every_s=0.2)
    assert await pending_metric(dashboard) == 0  # every desk signal is priced (`metasup status`)

    # The broker restarted under the running dashboard and restored from the durable log:
    # every record back at its offset, the follower must neither lose nor double any.
    broker.stop()
    await broker.start()
    # Its topics there but still empty for a while, as while a restore runs: the follower
    # fetches from where it was on partitions not that long yet.
    await create_topics(broker, prefix)
    await asyncio.sleep(2)
    assert (await restore(broker.bootstrap, durable_log)).records == len(records)
    desk = list(events(records, verifier=SUPERVISOR_KEY.verifier))
    clock = max(e.ts for e in desk if isinstance(e, SignalEmitted)) + timedelta(minutes=5)
    signals = [
        SignalEmitted.create(
            ts=clock,
            producer="test",
            agent="llm-late",
            run_id=uuid.uuid4(),
            symbol=symbol,
            direction="LONG",
            confidence=0.6,
        )
        for symbol in ("BTC", "ETH")
    ]
    await produce(broker, prefix, signals)

    await eventually(lambda: records_shown_is(len(records) + 2), timeout_s=30, every_s=0.2)
    await asyncio.sleep(2)  # a follower reading some partition again would have by now
    assert await records_shown() == len(records) + 2

    code, output = await metasup(settings, broker, "status")
    assert code == 0, output
    pending = pending_in_status(output)
    assert pending >= 2, output  # each new signal waits on at least one horizon
    assert await pending_metric(dashboard) == pending
