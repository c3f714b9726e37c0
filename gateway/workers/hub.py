"""The parent's end of the control channel: one journal, one readiness, one /metrics.

Each worker connects once (Hello) and then reports its activation events, its readiness
and the packages that failed to load; the hub folds the events into the journal
(activations.py), tells every worker whether all of them are ready (a pod is ready when
every worker can answer), and answers a worker's scrape with every other process's
families: the other workers' (asked over their connections), the parent's own (the sync's
metrics), and the counters of workers that exited, so the totals never go down.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.registry import Collector

from gateway.telemetry.merge import Family, counters_only, merge, to_wire
from gateway.workers.activations import ActivationMerge
from gateway.workers.control import (
    Activation,
    Collect,
    Families,
    FullCheck,
    Gather,
    Hello,
    PodReady,
    Ready,
    read_message,
    write_message,
)

__all__ = ["Hub"]

log = logging.getLogger("stageserve.workers")
# A worker busy with a long inline call answers a Collect late; a scrape does not wait longer.
_COLLECT_TIMEOUT_S = 5.0


@dataclass
class _Worker:
    index: int
    pid: int
    writer: asyncio.StreamWriter
    ready: bool = False
    missing: list[str] = field(default_factory=list)
    # The families it last sent: folded into the retired counters when it exits.
    last: list[Family] = field(default_factory=list)


class Hub:
    def __init__(
        self,
        count: int,
        activations: ActivationMerge,
        *,
        own_metrics: Collector | None = None,
        full_check: Callable[[str], None] | None = None,
    ) -> None:
        self.count = count
        self.activations = activations
        self.own_metrics = own_metrics
        self.full_check = full_check
        self.workers: dict[int, _Worker] = {}
        self.shutting_down = False
        self._retired: list[Family] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[list[Family]]] = {}
        self._pod_ready: tuple[bool, list[str]] | None = None
        self.connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One worker's connection, from its Hello until it closes."""
        hello = await read_message(reader)
        if not isinstance(hello, Hello):
            writer.close()
            return
        me = _Worker(hello.worker, hello.pid, writer)
        self.workers[me.index] = me
        self.connected.set()
        self._tell_readiness(force_to=me)
        try:
            while (message := await read_message(reader)) is not None:
                self._handle(me, message)
        finally:
            if self.workers.get(me.index) is me:
                self.worker_gone(me.index)
            writer.close()

    def worker_gone(self, index: int) -> None:
        """A worker's connection closed or its process exited."""
        me = self.workers.pop(index, None)
        if me is None:
            return
        self._retired = merge([self._retired, counters_only(me.last)])
        self.activations.gone(index, shutting_down=self.shutting_down)
        self._tell_readiness()

    def _handle(self, me: _Worker, message: object) -> None:
        if self.workers.get(me.index) is not me:
            # Read after the worker's process was seen to exit (its last bytes): what it
            # served is already accounted as stopped; a late event must not revive it.
            return
        if isinstance(message, Activation):
            self.activations.report(me.index, message.event)
        elif isinstance(message, Ready):
            me.ready, me.missing = message.ready, message.missing
            self._tell_readiness()
        elif isinstance(message, FullCheck):
            if self.full_check is not None:
                self.full_check(message.package_path)
        elif isinstance(message, Gather):
            me.last = message.families
            # In a task: this loop must keep reading, the scrape waits for other workers'
            # answers, and they may be scraping at the same time and waiting for ours.
            task = asyncio.create_task(self._answer_gather(me, message.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(message, Families):
            me.last = message.families
            waiter = self._waiting.pop(message.id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message.families)

    async def _answer_gather(self, me: _Worker, request: int) -> None:
        others = await self._gather(exclude=me.index)
        with contextlib.suppress(ConnectionError):
            write_message(me.writer, Families(request, others))
            await me.writer.drain()

    async def _gather(self, exclude: int) -> list[Family]:
        """Every family but worker `exclude`'s, merged."""
        asked = [w for i, w in sorted(self.workers.items()) if i != exclude]
        answers = await asyncio.gather(*(self._collect(w) for w in asked))
        own = to_wire(self.own_metrics.collect()) if self.own_metrics is not None else []
        return merge([own, self._retired, *answers])

    async def _collect(self, worker: _Worker) -> list[Family]:
        request = next(self._ids)
        waiter: asyncio.Future[list[Family]] = asyncio.get_running_loop().create_future()
        self._waiting[request] = waiter
        try:
            write_message(worker.writer, Collect(request))
            await worker.writer.drain()
            return await asyncio.wait_for(waiter, _COLLECT_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            log.warning("worker %d did not send its metrics; scraped without them", worker.index)
            return counters_only(worker.last)  # never let the totals go down
        finally:
            self._waiting.pop(request, None)

    def _readiness(self) -> tuple[bool, list[str]]:
        missing = []
        for i in range(self.count):
            w = self.workers.get(i)
            if w is None:
                missing.append(f"worker {i}: not running")
            elif not w.ready:
                missing += [f"worker {i}: {m}" for m in w.missing] or [f"worker {i}: not ready"]
        return not missing, missing

    def _tell_readiness(self, force_to: _Worker | None = None) -> None:
        now = self._readiness()
        changed = now != self._pod_ready
        self._pod_ready = now
        for w in self.workers.values() if changed else [force_to] if force_to else []:
            with contextlib.suppress(ConnectionError, RuntimeError):
                write_message(w.writer, PodReady(now[0], now[1]))
