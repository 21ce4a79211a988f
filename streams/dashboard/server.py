"""The dashboard's HTTP server (SPEC section 9): the page, every panel as JSON, server-sent
events, Prometheus metrics and the operator controls, on aiohttp (installed with Faust).

Everything shown comes from `LiveFleet`; the server only serves it. Every response
carries a Content-Security-Policy of `default-src 'self'`: the page loads nothing from
elsewhere and runs no inline script, so a name holding markup cannot run even if some
code ever rendered it as HTML.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from projections.metrics import (
    CONTENT_TYPE,
    MetricsSnapshot,
    PartitionLag,
    TopicEvents,
    metrics_text,
)
from schemas.envelope import format_utc
from schemas.topics import CATALOGUE, topic_for
from streams.broker.embedded import free_port, port_is_free
from streams.broker.offsets import consumer_lag
from streams.broker.publisher import Publisher
from streams.core.signing import FactVerifier
from streams.dashboard.live import LiveFleet
from streams.dashboard.operator import (
    ACTIONS,
    ControlRefused,
    build_command,
    check_token,
    parse_request,
    signing_key,
)
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

STATIC: Final = Path(__file__).parent / "static"
KEEPALIVE_S: Final = 15.0
SEND_TIMEOUT_S: Final = 15.0
# A scrape answers 503 rather than hang on a broker that does not answer.
BROKER_READ_TIMEOUT_S: Final = 10.0
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
JSON: Final = "application/json"

LIVE = web.AppKey("live", LiveFleet)
SETTINGS = web.AppKey("settings", Settings)
CLOSING = web.AppKey("closing", asyncio.Event)
METRICS_LOCK = web.AppKey("metrics_lock", asyncio.Lock)


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, streamed ones included (a middleware would miss those)."""
    response.headers.update(SECURITY_HEADERS)


def _json_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}), content_type=JSON)


# --- the page and the panels -------------------------------------------------------------


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def state(request: web.Request) -> web.Response:
    return web.Response(body=request.app[LIVE].rendered.state_json, content_type=JSON)


async def panel(request: web.Request) -> web.Response:
    panels = request.app[LIVE].rendered.panels
    name = request.match_info["panel"]
    if name not in panels:
        return _json_error(404, f"no panel {name!r}; panels: {', '.join(panels)}")
    return web.Response(body=panels[name], content_type=JSON)


def sse_frame(event: str, data: bytes) -> bytes:
    """One server-sent event; every line of `data` on its own `data:` line (the client
    joins them with newlines again)."""
    lines = data.rstrip(b"\n").split(b"\n")
    body = b"".join(b"data: " + line + b"\n" for line in lines)
    return f"event: {event}\n".encode() + body + b"\n"


async def event_stream(request: web.Request) -> web.StreamResponse:
    """`state` events with every panel, on connect and after each change; a comment every
    KEEPALIVE_S so proxies and the browser keep the connection open."""
    live, closing = request.app[LIVE], request.app[CLOSING]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    sent = -1
    with contextlib.suppress(ConnectionResetError):
        while not closing.is_set():
            rendered = live.rendered
            if rendered.version != sent:
                sent = rendered.version
                await response.write(sse_frame("state", rendered.state_json))
            elif not await live.changed_since(sent, KEEPALIVE_S):
                await response.write(b": keep-alive\n\n")
    return response


# --- metrics -----------------------------------------------------------------------------


async def metrics(request: web.Request) -> web.Response:
    live, settings = request.app[LIVE], request.app[SETTINGS]
    rates = live.rates()
    async with request.app[METRICS_LOCK]:  # one scrape at a time reads the broker
        try:
            lags = await asyncio.wait_for(
                consumer_lag(
                    live.bootstrap, settings.group_id, [settings.topic(s.name) for s in CATALOGUE]
                ),
                BROKER_READ_TIMEOUT_S,
            )
        except (KafkaError, OSError, TimeoutError) as error:
            return _json_error(503, f"the broker at {live.bootstrap} did not answer ({error})")
    snapshot = MetricsSnapshot(
        topics=[
            TopicEvents(topic=topic, events=n, per_second=rates.get(topic, 0.0))
            for topic, n in live.events.items()
        ],
        consumer_lag=[
            PartitionLag(
                group=settings.group_id,
                topic=lag.topic.removeprefix(live.prefix),
                partition=lag.partition,
                lag=lag.lag,
            )
            for lag in lags
        ],
        deadletter=sum(live.folded.fleet.deadletter.values()),
        pending_reconciliations=live.folded.reconciliations.pending,
        last_decision_at=live.last_decision_at(),
    )
    return web.Response(body=metrics_text(snapshot), headers={"Content-Type": CONTENT_TYPE})


# --- operator controls -------------------------------------------------------------------


async def command(request: web.Request) -> web.Response:
    settings, live = request.app[SETTINGS], request.app[LIVE]
    action = request.match_info["action"]
    if action not in ACTIONS:
        return _json_error(404, f"no action {action!r}; actions: {', '.join(ACTIONS)}")
    token = settings.dashboard_token
    try:
        try:
            check_token(
                token.get_secret_value() if token is not None else None,
                request.headers.get("Authorization"),
            )
        except ControlRefused:
            log.warning("refused %s from %s: no valid operator token", action, request.remote)
            raise
        now = datetime.now(UTC)
        body = parse_request(action, await request.read(), now)
        actor, secret = signing_key(settings)
    except ControlRefused as refused:
        response = _json_error(refused.status, refused.message)
        if refused.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    signed = build_command(action, body, actor, secret, now)
    publisher = Publisher(live.bootstrap, live.prefix)
    try:
        await asyncio.wait_for(publisher.start(), SEND_TIMEOUT_S)
        await asyncio.wait_for(publisher.publish(signed), SEND_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as error:
        return _json_error(503, f"could not send to the broker at {live.bootstrap} ({error})")
    finally:
        await publisher.stop()
    log.info("sent %s %s for %s", signed.type, signed.event_id, request.remote)
    return web.Response(
        status=202,
        content_type=JSON,
        body=orjson.dumps(
            {
                "sent": signed.type,
                "event_id": str(signed.event_id),
                "topic": topic_for(signed).name,
                "target_type": signed.target_type,
                "target": signed.target,
                "actor": actor,
                "until": format_utc(body.until) if body.until else None,
                "note": "the supervisor verifies it and records the result on `kills`; "
                "a refused command goes to `deadletter`",
            }
        ),
    )


# --- the application ---------------------------------------------------------------------


def make_app(live: LiveFleet, settings: Settings, closing: asyncio.Event) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[LIVE] = live
    app[SETTINGS] = settings
    app[CLOSING] = closing
    app[METRICS_LOCK] = asyncio.Lock()
    app.on_response_prepare.append(_secure)
    app.router.add_get("/", page)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/{panel}", panel)
    app.router.add_get("/events", event_stream)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/commands/{action}", command)
    app.router.add_static("/static/", STATIC)
    return app


def choose_port(host: str, port: int, say: Callable[[str], None]) -> int:
    if port != 0 and port_is_free(port, host):
        return port
    chosen = free_port(host)
    if port != 0:
        say(f"port {port} is taken; the dashboard uses {chosen} (set METASUP_DASHBOARD_PORT)")
    return chosen


async def run_dashboard(
    bootstrap: str,
    stop: asyncio.Event,
    settings: Settings,
    verifier: FactVerifier,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard until `stop` (a `Stack` extra), following the log meanwhile."""
    live = LiveFleet(bootstrap, settings.topic_prefix, verifier)
    closing = asyncio.Event()  # ours: the stack's `stop` is not ours to set
    app = make_app(live, settings, closing)
    runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    host = settings.dashboard_host
    try:
        port = choose_port(host, settings.dashboard_port, say)
        await web.TCPSite(runner, host, port).start()
    except OSError as error:  # the stack runs on without its page, but says so
        say(
            f"dashboard: cannot listen on {host} ({error}); "
            "check METASUP_DASHBOARD_HOST / METASUP_DASHBOARD_PORT"
        )
        await runner.cleanup()
        return
    say(f"dashboard: http://{host}:{port}/")
    if settings.dashboard_token is None:
        say("dashboard operator controls are off: set METASUP_DASHBOARD_TOKEN to turn them on")
    tasks = [
        asyncio.create_task(live.run(closing)),
        asyncio.create_task(live.poll_agent_lags(settings.group_id, closing)),
    ]
    try:
        await stop.wait()
    finally:
        closing.set()
        live.wake()  # event streams see `closing` and end
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
