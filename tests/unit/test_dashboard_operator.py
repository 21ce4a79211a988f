"""The dashboard's operator controls and its HTTP surface without a broker: who may send a
command, what a valid request becomes, and the headers every answer carries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.partitioner import DefaultPartitioner
from pydantic import SecretStr

from schemas.events import KillRequested, ReviveRequested
from schemas.topics import topic
from streams.dashboard.live import LiveFleet, agent_partition
from streams.dashboard.operator import (
    CommandRequest,
    ControlRefused,
    build_command,
    check_token,
    parse_request,
    signing_key,
)
from streams.dashboard.server import choose_port, make_app, run_dashboard
from streams.fleet.commands import new_key, verify
from streams.runtime.settings import Settings
from tests.keys import SUPERVISOR_KEY

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def refusal(error: pytest.ExceptionInfo[ControlRefused]) -> tuple[int, str]:
    return error.value.status, error.value.message


def test_controls_are_off_without_a_configured_token_and_say_how_to_enable_them() -> None:
    with pytest.raises(ControlRefused) as refused:
        check_token(None, "Bearer anything")
    status, message = refusal(refused)
    assert status == 403 and "METASUP_DASHBOARD_TOKEN" in message


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer wrong", "Basic s3cret-token", "Bearer s3cret-token2"]
)
def test_anything_but_the_bearer_token_is_unauthorised(header: str | None) -> None:
    with pytest.raises(ControlRefused) as refused:
        check_token("s3cret-token", header)
    assert refusal(refused)[0] == 401
    assert "s3cret-token" not in refusal(refused)[1]


def test_the_bearer_token_passes() -> None:
    check_token("s3cret-token", "Bearer s3cret-token")
    check_token("s3cret-token", "bearer  s3cret-token ")


@pytest.mark.parametrize(
    ("action", "body", "problem"),
    [
        ("kill", b"not json", "bad request body"),
        ("kill", b'{"target": "  "}', "target"),
        ("kill", b'{"target": "a", "target_type": "fleet"}', "target_type"),
        ("pause", b'{"target": "a"}', "pause needs `until`"),
        ("pause", b'{"target": "a", "until": "2026-01-05T11:00:00Z"}', "not in the future"),
        ("pause", b'{"target": "a", "until": "2026-01-06T11:00:00"}', "until"),
        ("kill", b'{"target": "a", "until": "2026-01-06T11:00:00Z"}', "a timed kill is a pause"),
        ("revive", b'{"target": "a", "until": "2026-01-06T11:00:00Z"}', "takes no `until`"),
    ],
)
def test_bad_requests_say_what_is_wrong(action: str, body: bytes, problem: str) -> None:
    with pytest.raises(ControlRefused) as refused:
        parse_request(action, body, NOW)  # type: ignore[arg-type]
    status, message = refusal(refused)
    assert status == 400 and problem in message


def test_a_pause_becomes_a_signed_timed_kill_that_verifies() -> None:
    secret = bytes.fromhex(new_key())
    body = b'{"target": "mean_reversion", "target_type": "strategy_class", "reason": "regime"'
    request = parse_request("pause", body + b', "until": "2026-01-05T16:00:00+02:00"}', NOW)
    command = build_command("pause", request, "ops", secret, NOW)
    assert isinstance(command, KillRequested)
    assert (command.target_type, command.target, command.reason, command.actor) == (
        "strategy_class",
        "mean_reversion",
        "regime",
        "ops",
    )
    assert command.until == NOW + timedelta(hours=2)  # 16:00 at +02:00 is 14:00 UTC
    assert verify(command, {"ops": secret}, set(), NOW) is None
    assert verify(command, {"ops": bytes.fromhex(new_key())}, set(), NOW) is not None


def test_a_revive_is_a_revive() -> None:
    secret = bytes.fromhex(new_key())
    command = build_command("revive", CommandRequest(target="a"), "ops", secret, NOW)
    assert isinstance(command, ReviveRequested) and command.until is None


def test_no_key_for_the_dashboard_actor_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "operator-keys.json").write_bytes(orjson.dumps({"alice": new_key()}))
    settings = Settings(METASUP_DATA_DIR=tmp_path)
    with pytest.raises(ControlRefused) as refused:
        signing_key(settings)
    status, message = refusal(refused)
    assert status == 503 and "metasup keys new --actor dashboard" in message
    actor, secret = signing_key(settings.model_copy(update={"dashboard_actor": "alice"}))
    assert actor == "alice" and len(secret) == 32


def test_an_agents_lag_is_read_where_the_producer_puts_its_records() -> None:
    partitions = topic("agent-input").partitions
    everything = list(range(partitions))
    for agent in ["coinflip", "llm-news", "momentum-24h", "<img src=x onerror=alert(1)>", "é"]:
        expected = DefaultPartitioner()(agent.encode(), everything, everything)
        assert agent_partition(agent) == expected


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    """The app over a fleet that never follows a broker (nothing to read, nothing sent)."""
    live = LiveFleet("127.0.0.1:1", "", SUPERVISOR_KEY.verifier)
    app = make_app(live, Settings(METASUP_DATA_DIR=tmp_path), asyncio.Event())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_every_answer_carries_the_content_security_policy(client: TestClient) -> None:
    for path in ["/", "/api/state", "/api/agents", "/api/nope", "/static/app.js", "/nope"]:
        response = await client.get(path)
        assert response.headers["Content-Security-Policy"] == "default-src 'self'", path
    assert (await client.get("/api/nope")).status == 404
    empty = await (await client.get("/api/state")).json()
    assert empty["agents"]["rows"] == [] and empty["allocation"]["slices"][0]["cash"]


async def test_without_a_configured_token_a_command_is_forbidden(client: TestClient) -> None:
    response = await client.post(
        "/api/commands/kill", json={"target": "a"}, headers={"Authorization": "Bearer x"}
    )
    assert response.status == 403
    assert "METASUP_DASHBOARD_TOKEN" in (await response.json())["error"]
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"


async def test_a_wrong_token_is_refused_before_anything_else(tmp_path: Path) -> None:
    live = LiveFleet("127.0.0.1:1", "", SUPERVISOR_KEY.verifier)
    settings = Settings(METASUP_DATA_DIR=tmp_path).model_copy(
        update={"dashboard_token": SecretStr("right")}
    )
    async with TestClient(TestServer(make_app(live, settings, asyncio.Event()))) as client:
        response = await client.post("/api/commands/kill", data=b"garbage")
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert (await client.post("/api/commands/explode")).status == 404


def test_a_taken_port_gives_a_free_one_and_says_so() -> None:
    said: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        chosen = choose_port("127.0.0.1", busy, said.append)
    assert chosen != busy and said == [
        f"port {busy} is taken; the dashboard uses {chosen} (set METASUP_DASHBOARD_PORT)"
    ]


async def test_an_address_it_cannot_listen_on_is_said_and_the_stack_goes_on(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    settings = Settings(METASUP_DATA_DIR=tmp_path).model_copy(
        update={"dashboard_host": "no-such-host.invalid"}
    )
    stop = asyncio.Event()
    await asyncio.wait_for(
        run_dashboard("127.0.0.1:1", stop, settings, SUPERVISOR_KEY.verifier, said.append), 10
    )
    [line] = said
    assert line.startswith("dashboard: cannot listen on no-such-host.invalid")
    assert "METASUP_DASHBOARD_HOST" in line
