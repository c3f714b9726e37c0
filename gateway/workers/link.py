"""A worker's end of the control channel: what the app of one worker tells and asks the parent.

The app calls it from its lifespan (`start`/`stop`), as an activation listener, from a
failed load (embedded: the parent's sync repairs the package), from /metrics (every other
process's families) and from /readyz (through the pool's `peers_unready`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client.registry import Collector

from gateway.pool.model_pool import ModelPool
from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.merge import Family, to_wire
from gateway.workers.control import (
    Activation,
    Collect,
    Families,
    FullCheck,
    Gather,
    Hello,
    Message,
    PodReady,
    Ready,
    read_message,
    write_message,
)
from registry_sync.sync.snapshot import DesiredEntry

__all__ = ["ParentLink"]

log = logging.getLogger("stageserve.workers")
_READY_CHECK_S = 0.1
_GATHER_TIMEOUT_S = 10.0


class ParentLink:
    def __init__(self, control: Path, worker: int, lock_dir: Path) -> None:
        self.control = control
        self.worker = worker
        # Where the workers' shared locks live (one audit file, one stdout, many writers).
        self.lock_dir = lock_dir
        # Called when the parent is gone (its end closed): the worker stops.
        self.on_parent_gone: Callable[[], None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._early: list[Message] = []
        self._pod: tuple[bool, list[str]] = (False, ["waiting for the other workers"])
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[list[Family]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: ModelPool | None = None
        self._metrics: Collector | None = None
        self._stopping = False

    async def start(self, pool: ModelPool, metrics: Collector) -> None:
        """Connect, say hello, send what was reported before, and watch readiness."""
        self._pool, self._metrics = pool, metrics
        pool.peers_unready = self.unready
        reader, writer = await asyncio.open_unix_connection(str(self.control))
        self._writer = writer
        write_message(writer, Hello(self.worker, os.getpid()))
        for message in self._early:
            write_message(writer, message)
        self._early.clear()
        self._tasks = [
            asyncio.create_task(self._read(reader), name="control-read"),
            asyncio.create_task(self._watch_readiness(pool), name="control-ready"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
            self._writer.close()

    # -- told to the parent ------------------------------------------------------------------

    def activation(self, event: ActivationEvent) -> None:
        """An activation listener: the parent keeps the one journal."""
        self._send(Activation(event))

    def full_check(self, entry: DesiredEntry) -> None:
        self._send(FullCheck(entry.package_path))

    def _send(self, message: Message) -> None:
        if self._writer is None:
            self._early.append(message)
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            write_message(self._writer, message)

    # -- asked of the parent -----------------------------------------------------------------

    def unready(self) -> list[str]:
        """What keeps the server (every worker) from being ready; [] when it is."""
        ready, missing = self._pod
        return [] if ready else missing

    async def metric_families(self) -> list[Family]:
        """Every other process's metric families, merged (for /metrics)."""
        if self._writer is None:
            return []
        request = next(self._ids)
        waiter: asyncio.Future[list[Family]] = asyncio.get_running_loop().create_future()
        self._waiting[request] = waiter
        try:
            assert self._metrics is not None
            write_message(self._writer, Gather(request, to_wire(self._metrics.collect())))
            return await asyncio.wait_for(waiter, _GATHER_TIMEOUT_S)
        finally:
            self._waiting.pop(request, None)

    # -- the connection ----------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while (message := await read_message(reader)) is not None:
            if isinstance(message, Collect):
                assert self._metrics is not None
                families = to_wire(self._metrics.collect())
                self._send(Families(message.id, families))
            elif isinstance(message, Families):
                waiter = self._waiting.pop(message.id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message.families)
            elif isinstance(message, PodReady):
                self._pod = (message.ready, message.missing)
        if not self._stopping:
            log.error("worker %d: the parent process is gone; stopping", self.worker)
            if self.on_parent_gone is not None:
                self.on_parent_gone()

    async def _watch_readiness(self, pool: ModelPool) -> None:
        told: tuple[bool, list[str]] | None = None
        while True:
            now = pool.own_ready()
            if now != told:
                told = now
                self._send(Ready(now[0], now[1]))
            await asyncio.sleep(_READY_CHECK_S)
