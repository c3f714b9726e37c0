"""The parent of a `--workers N` server: binds, syncs, journals, starts and stops the workers.

- The port: N listening sockets with SO_REUSEPORT, one per worker, bound here before anything
  starts (a busy port is one clear error) and kept for the server's life, so a worker that
  is restarted gets the same socket back.
- Embedded mode (`--registry`): the one registry sync of the server runs here and writes
  `<cache>/snapshot.json` (and `sync-status.json`), which every worker follows: the sidecar
  layout inside one process tree. Workers get settings without the registry (no
  credentials) and ask here for a package repair when one fails to load.
- The activation journal is written here alone (activations.py folds the workers' events).
- Signals: SIGTERM is passed to every worker, which fails readiness, serves `drain_s`, then
  stops (gateway/drain.py); a second SIGTERM, or SIGINT, stops them at once. The parent
  exits 0 once every worker has stopped cleanly.
- A worker that dies unexpectedly is logged and started again (after 1 s, doubling to 30 s
  while it keeps dying young); the server is unready until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from gateway.embedded_sync import sync_loop_for
from gateway.server import bind
from gateway.settings import Settings
from gateway.telemetry.activation import ActivationListener
from gateway.telemetry.history_sink import HistorySink, spool_folder
from gateway.telemetry.journal import ActivationJournal
from gateway.workers.activations import ActivationMerge
from gateway.workers.hub import Hub
from gateway.workers.worker import WorkerSpec
from registry_sync.registry.git import redact_url
from registry_sync.sync.exposition import WithoutCreated
from registry_sync.sync.loop import SyncLoop
from registry_sync.sync.past import RegistryPastPackages, serve_requests
from registry_sync.sync.settings import history_requests_dir

__all__ = ["supervise"]

log = logging.getLogger("stageserve.workers")
_BACKLOG = 2048  # uvicorn's default
_RESTART_S = 1.0
_RESTART_MAX_S = 30.0
# A worker that ran this long before dying was not crash-looping: restart it after 1 s.
_HEALTHY_RUN_S = 30.0


def supervise(settings: Settings, count: int, cache_dir: Path) -> int:
    """Run the server with `count` worker processes until SIGTERM/SIGINT; the exit status."""
    return asyncio.run(_Supervisor(settings, count, cache_dir).run())


class _Supervisor:
    def __init__(self, settings: Settings, count: int, cache_dir: Path) -> None:
        self.settings = settings
        self.count = count
        self.cache_dir = cache_dir
        self.stopping = asyncio.Event()
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.exit_codes: dict[int, int] = {}
        self.sockets: list[socket.socket] = []

    async def run(self) -> int:
        settings = self.settings
        self.sockets = _listen(settings.host, settings.port, self.count)
        runtime = Path(tempfile.mkdtemp(prefix="stageserve-"))
        journal = ActivationJournal(Path(settings.journal_path)) if settings.journal_path else None
        # PostgreSQL: the one merged journal is shipped from here (the workers ship audit).
        sink = _journal_sink(settings)
        listeners: list[ActivationListener] = [journal] if journal is not None else []
        if sink is not None:
            listeners.append(sink.journal_listener)
            sink.start()
        sync_loop = None
        registry = CollectorRegistry()
        if settings.registry:
            sync_loop = sync_loop_for(settings, self.cache_dir, registry)
        hub = Hub(
            self.count,
            ActivationMerge(listeners),
            own_metrics=WithoutCreated(registry),
            full_check=sync_loop.request_full_check if sync_loop is not None else None,
        )
        self.hub = hub
        control = runtime / "control.sock"
        server = await asyncio.start_unix_server(hub.serve, path=str(control))
        stop_sync = asyncio.Event()
        syncing = asyncio.create_task(_sync(sync_loop, stop_sync, settings)) if sync_loop else None
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, self._signal, sig)
        log.info(
            "serving on http://%s:%d with %d workers (%s)",
            settings.host,
            self.sockets[0].getsockname()[1],
            self.count,
            f"registry {redact_url(settings.registry)}"
            if settings.registry
            else f"cache {self.cache_dir}",
        )
        try:
            specs = [self._spec(i, control, runtime) for i in range(self.count)]
            await asyncio.gather(*(self._keep(spec) for spec in specs))
        finally:
            stop_sync.set()
            if syncing is not None:
                await syncing
            server.close()
            if journal is not None:
                journal.close()
            if sink is not None:
                await sink.stop()
            for sock in self.sockets:
                sock.close()
            shutil.rmtree(runtime, ignore_errors=True)
        failed = {i: c for i, c in self.exit_codes.items() if c != 0}
        if failed:
            log.error("workers exited with %s", failed)
        return 1 if failed else 0

    def _spec(self, index: int, control: Path, runtime: Path) -> bytes:
        settings = msgspec.structs.replace(
            self.settings,
            # The worker follows the snapshot; the registry (and its credentials) stay here.
            registry=None,
            cache_dir=str(self.cache_dir),
            workers=1,
            # One spool per worker: each ships its own records (a spool has one writer).
            spool_dir=str(spool_folder(self.settings) / f"worker-{index}")
            if self.settings.postgres_url
            else self.settings.spool_dir,
        )
        spec = WorkerSpec(
            index=index,
            count=self.count,
            fd=self.sockets[index].fileno(),
            control=str(control),
            lock_dir=str(runtime),
            cache_dir=str(self.cache_dir),
            embedded=self.settings.registry is not None,
            settings=settings,
        )
        return msgspec.json.encode(spec)

    async def _keep(self, spec: bytes) -> None:
        """Run worker `index` until the server stops; start it again whenever it dies."""
        index = msgspec.json.decode(spec, type=WorkerSpec).index
        delay = _RESTART_S
        while not self.stopping.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.workers.worker",
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(self.sockets[index].fileno(),),
            )
            self.procs[index] = proc
            assert proc.stdin is not None
            proc.stdin.write(spec)
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
            proc.stdin.close()
            code = await proc.wait()
            self.procs.pop(index, None)
            self.hub.worker_gone(index)
            if self.stopping.is_set():
                self.exit_codes[index] = code
                return
            lived = time.monotonic() - started
            delay = _RESTART_S if lived > _HEALTHY_RUN_S else min(delay * 2, _RESTART_MAX_S)
            log.error(
                "worker %d (pid %d) exited with %d after %.1f s; starting it again in %.0f s",
                index,
                proc.pid,
                code,
                lived,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    def _signal(self, sig: int) -> None:
        first = not self.stopping.is_set()
        self.stopping.set()
        self.hub.shutting_down = True
        if first and sig == signal.SIGTERM:
            log.info("SIGTERM: every worker fails readiness, drains, then stops")
        for proc in list(self.procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)


def _listen(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port. A plain bind first: a port another server
    holds is refused (one clear error) even if that server also set SO_REUSEPORT."""
    probe = bind(host, port)
    port = probe.getsockname()[1]
    probe.close()
    sockets = [bind(host, port, reuse_port=True) for _ in range(count)]
    for sock in sockets:
        sock.listen(_BACKLOG)
    return sockets


def _journal_sink(settings: Settings) -> HistorySink | None:
    if not settings.postgres_url:
        return None
    return HistorySink(
        msgspec.structs.replace(settings, spool_dir=str(spool_folder(settings) / "parent"))
    )


async def _sync(loop: SyncLoop, stop: asyncio.Event, settings: Settings) -> None:
    """The embedded sync: polls, writes the snapshot the workers follow, and answers their
    requests for past versions' packages (`?as_of=`), as the sidecar does; never stops
    silently."""
    answering = None
    opener = getattr(loop.sync.reader, "registry", None)
    if opener is not None:
        past = RegistryPastPackages(opener, loop.cache_dir, gc_grace_s=settings.gc_grace_s)
        requests = history_requests_dir(settings, loop.cache_dir)
        answering = asyncio.create_task(serve_requests(past, requests, stop), name="history")
    while not stop.is_set():
        try:
            async for state in loop.updates(stop):
                log.info(
                    "snapshot: %s",
                    ", ".join(f"{e.model}#{e.stage}={e.version}" for e in state.entries)
                    or "nothing",
                )
        except Exception as exc:
            log.exception("sync loop stopped; starting it again")
            loop.record_loop_failure(f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), loop.next_delay_s())
    if answering is not None:
        await answering
