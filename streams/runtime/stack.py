"""`metasup up`: the whole stack in one command, and its clean stop.

Embedded mode: start Tansu, restore it from the durable log, record every new
record back into it, run the Faust worker(s), and watch them all. A dead broker
takes the stack down and up again from the durable log (a restarted Tansu is
empty and workers would not notice, BROKER-NOTES defect 5); a dead worker is
restarted and resumes from its committed offsets with idempotent folds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from streams.broker.admin import catalogue_partitions, ensure_topics
from streams.broker.child_process import dies_with_parent
from streams.broker.durable_log import DurableLog
from streams.broker.embedded import EmbeddedBroker, free_port, port_is_free
from streams.broker.recorder import Recorder
from streams.broker.restore import restore
from streams.runtime.settings import Settings

Say = Callable[[str], None]
Extra = Callable[[str, asyncio.Event], Coroutine[Any, Any, None]]

STACK_FILE = "stack.json"


class DataDirInUse(RuntimeError):
    pass


def lock_data_dir(settings: Settings) -> IO[str]:
    """One stack per data dir: two recorders writing one durable log would corrupt it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(settings.data_dir / "stack.lock", "a+")  # noqa: SIM115 (held while running)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirInUse(
            f"another `metasup up` is running with data dir {settings.data_dir}; stop it "
            "first (Ctrl-C), or set METASUP_DATA_DIR to another directory"
        ) from None
    return handle


def stack_file(settings: Settings) -> Path:
    return settings.data_dir / STACK_FILE


def durable_log_path(settings: Settings) -> Path:
    return settings.data_dir / "log.sqlite3"


@dataclass
class WorkerProcess:
    index: int
    bootstrap: str
    settings: Settings
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def web_port(self) -> int:
        return self.settings.web_port + self.index

    def start(self) -> None:
        self.started_at = time.monotonic()
        env = {
            **os.environ,
            "METASUP_BROKER": f"kafka://{self.bootstrap}",
            "METASUP_TOPIC_PREFIX": self.settings.topic_prefix,
            "METASUP_APP_ID": self.settings.app_id,
            "METASUP_DATA_DIR": str(self.settings.data_dir),
            "METASUP_SCHEDULES": "on" if self.settings.schedules else "off",
            "METASUP_SCHEDULE_CHECK_S": str(self.settings.schedule_check_s),
            "METASUP_SUPERVISOR_KEY_FILE": str(self.settings.supervisor_key_path()),
            "METASUP_SUPERVISOR_PUBLIC_KEY_FILE": str(self.settings.supervisor_public_key_path()),
        }
        log_path = self.settings.data_dir / f"worker-{self.index}.log"
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "faust",
                    "-A",
                    "streams.runtime.app",
                    "worker",
                    "-l",
                    "info",
                    "--web-port",
                    str(self.web_port),
                    "--web-bind",
                    self.settings.web_host,
                    "--web-host",
                    self.settings.web_host,
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=dies_with_parent(),
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`. Waits without blocking the loop: the
        worker's last produce acks are released by the recorder running on this loop."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        self.process = None


@dataclass
class Stack:
    settings: Settings
    workers: int = 1
    say: Say = print
    extras: list[Extra] = field(default_factory=list)
    broker: EmbeddedBroker | None = None
    durable_log: DurableLog | None = None
    recorder: Recorder | None = None
    bootstrap: str = ""
    worker_processes: list[WorkerProcess] = field(default_factory=list)
    _recorder_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _recorder_task: asyncio.Task[None] | None = None

    def choose_port(self) -> int:
        port = self.settings.broker_port
        if port == 0:
            return free_port()
        if not port_is_free(port):
            chosen = free_port()
            self.say(
                f"port {port} is taken; the embedded broker uses {chosen} instead "
                "(set METASUP_BROKER_PORT to choose)"
            )
            return chosen
        return port

    async def start_broker(self, port: int) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self.broker is None:  # a restart reuses it, and so keeps its public port
            self.broker = EmbeddedBroker(
                port=port, log_path=self.settings.data_dir / "tansu.log", stack_only=True
            )
        started = time.monotonic()
        await self.broker.start()
        self.bootstrap = self.broker.bootstrap
        self.say(f"embedded Kafka broker (Tansu) on {self.bootstrap}")
        if self.durable_log is None:
            self.durable_log = DurableLog(durable_log_path(self.settings))
        stored = sum(self.durable_log.counts().values())
        if stored:
            self.say(f"restoring {stored:,} records from {self.durable_log.path} ...")
            report = await restore(self.bootstrap, self.durable_log, progress=self._progress())
            self.say(
                f"restored {report.records:,} records in {report.topics} topics "
                f"({report.compacted_away:,} old changelog entries compacted away) "
                f"in {time.monotonic() - started:.1f} s"
            )
        created = await ensure_topics(
            self.bootstrap, catalogue_partitions(self.settings.topic_prefix)
        )
        if created:
            self.say(f"created {len(created)} topics")
        self.recorder = Recorder(self.bootstrap, self.durable_log, groups=[self.settings.group_id])
        await self.recorder.start()
        # From now on a producer is acknowledged only once its records are durable.
        if self.broker is not None and self.broker.proxy is not None:
            self.broker.proxy.set_ack_gate(self.recorder.wait_durable)
            self.broker.proxy.stack_only = False  # restored and recorded: clients may write
        self._recorder_stop = asyncio.Event()
        self._recorder_task = asyncio.create_task(self.recorder.run(self._recorder_stop))

    def _progress(self) -> Callable[[int, int], None]:
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 1.0 or done == total:
                last[0] = now
                self.say(f"  restore {done:,}/{total:,}")

        return report

    async def stop_broker(self) -> None:
        if self._recorder_task is not None:
            self._recorder_stop.set()
            with contextlib.suppress(Exception):
                await self._recorder_task
            self._recorder_task = None
        if self.recorder is not None:
            if self.broker is not None and self.broker.alive():
                await self.recorder.drain()
            await self.recorder.stop()
            self.recorder = None
        if self.broker is not None:
            await self.broker.close()

    def start_workers(self) -> None:
        self.worker_processes = [
            WorkerProcess(index, self.bootstrap, self.settings) for index in range(self.workers)
        ]
        for worker in self.worker_processes:
            worker.start()
            self.say(
                f"faust worker {worker.index + 1} started "
                f"(web http://{self.settings.web_host}:{worker.web_port}, "
                f"log {self.settings.data_dir}/worker-{worker.index}.log)"
            )

    async def stop_workers(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.worker_processes))

    def write_stack_file(self) -> None:
        stack_file(self.settings).write_bytes(
            orjson.dumps(
                {
                    "bootstrap": self.bootstrap,
                    "pid": os.getpid(),
                    "web": [
                        f"http://{self.settings.web_host}:{w.web_port}"
                        for w in self.worker_processes
                    ],
                }
            )
        )

    async def run(self, stop: asyncio.Event) -> None:
        with lock_data_dir(self.settings):
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        if self.settings.embedded:
            await self.start_broker(self.choose_port())
        else:
            self.bootstrap = self.settings.bootstrap_servers()
            created = await ensure_topics(
                self.bootstrap, catalogue_partitions(self.settings.topic_prefix)
            )
            self.say(f"using Kafka at {self.bootstrap}; created {len(created)} missing topics")
        self.start_workers()
        self.write_stack_file()
        extra_tasks = [asyncio.create_task(extra(self.bootstrap, stop)) for extra in self.extras]
        self.say("stack is up; Ctrl-C stops it cleanly")
        try:
            await self.watch(stop)
        finally:
            for task in extra_tasks:
                task.cancel()
            await asyncio.gather(*extra_tasks, return_exceptions=True)
            self.say("stopping workers ...")
            await self.stop_workers()
            if self.settings.embedded:
                self.say("copying the last records to the durable log ...")
                await self.stop_broker()
                if self.durable_log is not None:
                    total = sum(self.durable_log.counts().values())
                    self.say(f"durable log holds {total:,} records; stopped cleanly")
                    self.durable_log.close()
            with contextlib.suppress(FileNotFoundError):
                stack_file(self.settings).unlink()

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            if stop.is_set():
                return
            if self.broker is not None and not self.broker.alive():
                await self.recover_from_broker_death()
            for worker in self.worker_processes:
                if not worker.alive() and time.monotonic() - worker.started_at > 5:
                    self.say(
                        f"faust worker {worker.index + 1} exited; restarting it "
                        f"(see {self.settings.data_dir}/worker-{worker.index}.log)"
                    )
                    worker.start()

    async def abandon_recorder(self) -> None:
        """Stop copying from a dead broker; what was copied is already durable."""
        if self.broker is not None and self.broker.proxy is not None:
            self.broker.proxy.set_ack_gate(None)
        if self._recorder_task is not None:
            self._recorder_task.cancel()
            await asyncio.wait({self._recorder_task}, timeout=5)
            self._recorder_task = None
        if self.recorder is not None:
            # aiokafka's stop() can wait on the dead broker for a long time and shields
            # itself from cancellation: let it finish in the background.
            stopping = asyncio.ensure_future(self.recorder.stop())
            await asyncio.wait({stopping}, timeout=5)
            self.recorder = None

    async def recover_from_broker_death(self) -> None:
        assert self.broker is not None
        port = self.broker.port
        self.say("the embedded broker died: restarting the stack from the durable log")
        if self.broker.proxy is not None:
            self.broker.proxy.stack_only = True  # no client writes until restored
        await self.stop_workers()
        await self.abandon_recorder()
        self.broker.stop()
        for attempt in range(1, 31):
            try:
                await self.start_broker(port)
                break
            except Exception as error:  # keep trying: the log is safe on disk meanwhile
                self.say(f"restart attempt {attempt} failed ({error}); retrying in 1 s")
                self.broker.stop()  # a half-restored broker must not keep serving clients
                await asyncio.sleep(1)
        else:
            raise RuntimeError(f"could not restart the embedded broker on port {port}")
        self.start_workers()
        self.write_stack_file()


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
