"""When to sync: poll with jitter, wake early on a local registry change, back off on failure.

The same loop drives the embedded mode (the gateway consumes `updates()`, a
DesiredStateSource) and the sidecar (`stageserve sync`, which only writes the cache). Each
changed desired state is written atomically to `<cache>/snapshot.json`;
`<cache>/sync-status.json` records every attempt. Nothing stops the loop but its stop event:
a failure of the loop itself is logged, counted, recorded in the status, and the loop goes on
after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from registry_sync.errors import RegistryError
from registry_sync.sync.history import HistoryRecorder
from registry_sync.sync.metrics import SyncMetrics
from registry_sync.sync.registry_sync import RegistrySync, utc_now_iso
from registry_sync.sync.snapshot import (
    SNAPSHOT_FILE,
    STATUS_FILE,
    DesiredState,
    SyncStatus,
    write_snapshot,
    write_status,
)
from registry_sync.sync.stop import own_stop_event

__all__ = ["SyncLoop"]

log = logging.getLogger(__name__)


@dataclass
class SyncLoop:
    sync: RegistrySync
    cache_dir: Path
    poll_interval_s: float = 10.0
    # Each wait is poll_interval_s * (1 ± jitter_fraction): replicas do not poll in lockstep.
    jitter_fraction: float = 0.1
    max_backoff_s: float = 300.0
    # A local registry's git directory: a change there wakes the loop at once.
    watch_path: Path | None = None
    metrics: SyncMetrics | None = None
    # Keeps <cache>/registry-history.json current for the console (None: not kept).
    history: HistoryRecorder | None = None
    # Longest a poll may run (a first clone, a large artifact) before the loop counts as stuck.
    max_poll_s: float = 600.0
    failures: int = 0
    last_success_at: str | None = None
    # The last state yielded, and the last one written to snapshot.json (they differ while
    # the snapshot cannot be written, e.g. on a full disk: embedded mode still follows).
    last_state: DesiredState | None = None
    written_state: DesiredState | None = None
    loop_failures: int = 0
    last_loop_failure: str | None = None
    last_loop_failure_at: str | None = None
    # What the last attempt recorded (embedded mode shows it without reading the file).
    status: SyncStatus | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # time.monotonic() when a poll last started or ended: the liveness heartbeat.
    progress_at: float = field(default_factory=time.monotonic)

    async def updates(self, stop: asyncio.Event) -> AsyncIterator[DesiredState]:
        """Yield the first desired state, then every one that differs from the previous."""
        # The watcher gets its own stop event: watchfiles sets the one it is given when it is
        # cancelled, and `stop` belongs to our caller.
        async with own_stop_event(stop) as watch_stop:
            watcher = None
            if self.watch_path is not None:
                watcher = asyncio.create_task(self._watch(self.watch_path, watch_stop))
            try:
                while not stop.is_set():
                    state = await self._attempt()
                    if state is not None:
                        self.last_state = state
                        yield state
                    await self._wait(self.next_delay_s(), stop)
            finally:
                if watcher is not None:
                    watch_stop.set()
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher

    async def _attempt(self) -> DesiredState | None:
        """One poll and its snapshot write; returns the state to yield, if it changed.

        Never raises (but for cancellation): whatever fails here is a loop failure.
        """
        try:
            state = await self.poll()
            if state is None:
                return None
            repaired = self.sync.materializer.take_repaired()
            if repaired:
                log.info(
                    "repaired %s: publishing the snapshot again", ", ".join(map(str, repaired))
                )
            changed = _differs(state, self.last_state) or bool(repaired)
            if changed or _differs(state, self.written_state):
                try:
                    await asyncio.to_thread(write_snapshot, state, self.cache_dir / SNAPSHOT_FILE)
                    self.written_state = state
                except OSError as exc:
                    self.record_loop_failure(f"cannot write {SNAPSHOT_FILE}: {exc}")
            return state if changed else None
        except Exception as exc:
            log.exception("sync loop failed")
            self.record_loop_failure(f"{type(exc).__name__}: {exc}")
            return None

    def record_loop_failure(self, message: str) -> None:
        """Log, count and record a failure of the loop itself; the next wait backs off."""
        self.loop_failures += 1
        self.failures += 1
        self.last_loop_failure = message
        self.last_loop_failure_at = utc_now_iso()
        log.error("sync loop failure (%d so far): %s", self.loop_failures, message)
        if self.metrics is not None:
            self.metrics.loop_failures.inc()
        self._record("error", self.last_loop_failure_at, message, [])

    def request_full_check(self, package_path: str) -> None:
        """Re-hash a cached package before its next reuse and repair it from the registry if
        it no longer verifies; wakes the loop (embedded mode: the gateway failed to load it)."""
        self.sync.materializer.request_full_check(package_path)
        self._changed.set()

    async def poll(self) -> DesiredState | None:
        """One attempt; returns None when the registry could not be read."""
        self._changed.clear()
        attempt_at = utc_now_iso()
        self.progress_at = time.monotonic()
        try:
            state = await asyncio.to_thread(self.sync.run_once)
        except RegistryError as exc:
            self.progress_at = time.monotonic()
            self.failures += 1
            log.error("registry sync failed (%d in a row): %s", self.failures, exc)
            self._record("error", attempt_at, str(exc), [])
            return None
        except Exception as exc:  # a bug or an OS error: the loop's own failure, not fatal
            self.progress_at = time.monotonic()
            log.exception("registry sync failed unexpectedly")
            self.record_loop_failure(f"{type(exc).__name__}: {exc}")
            return None
        self.progress_at = time.monotonic()
        self.failures = 0
        self.last_success_at = attempt_at
        result = "partial" if state.errors else "ok"
        message = "; ".join(e.message for e in state.errors)
        self._record(result, attempt_at, message, state)
        if self.history is not None:
            try:
                await asyncio.to_thread(
                    self.history.record, state.generated_at, state.errors, state.untrusted
                )
            except Exception as exc:  # the console's history is informative: never fatal
                log.exception("cannot record the registry history")
                self.record_loop_failure(f"registry history: {type(exc).__name__}: {exc}")
        return state

    def stalled_for_s(self, now: float | None = None) -> float:
        """Seconds past the longest the loop can go without starting or ending a poll (the
        longest wait, with jitter, plus `max_poll_s`); 0 while it is alive. A registry outage
        is not a stall: the loop keeps polling, with backoff."""
        now = time.monotonic() if now is None else now
        longest_wait_s = max(self.poll_interval_s, self.max_backoff_s) * (1 + self.jitter_fraction)
        return max(0.0, now - self.progress_at - longest_wait_s - self.max_poll_s)

    def next_delay_s(self) -> float:
        base = self.poll_interval_s
        if self.failures:
            base = min(self.max_backoff_s, self.poll_interval_s * 2 ** (self.failures - 1))
        spread = base * self.jitter_fraction
        return max(0.05, base + random.uniform(-spread, spread))

    def _record(
        self, result: str, attempt_at: str, message: str, state: DesiredState | list[object]
    ) -> None:
        if self.metrics is not None:
            self.metrics.record_poll(result, now_s=time.time(), failures=self.failures)
            if isinstance(state, DesiredState):
                self.metrics.record_model_errors(state.errors)
                self.metrics.record_untrusted(state)
        status = SyncStatus(
            registry=self.sync.reader.display_location,
            last_attempt_at=attempt_at,
            last_success_at=self.last_success_at,
            result=result,
            message=message,
            consecutive_failures=self.failures,
            loop_failures=self.loop_failures,
            last_loop_failure=self.last_loop_failure,
            last_loop_failure_at=self.last_loop_failure_at,
        )
        self.status = status
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            write_status(status, self.cache_dir / STATUS_FILE)
        except OSError as exc:  # the status file is informative; never stop syncing for it
            log.warning("cannot write sync status: %s", exc)

    async def _wait(self, delay_s: float, stop: asyncio.Event) -> None:
        stop_wait = asyncio.create_task(stop.wait())
        change_wait = asyncio.create_task(self._changed.wait())
        try:
            await asyncio.wait(
                {stop_wait, change_wait}, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (stop_wait, change_wait):
                task.cancel()

    async def _watch(self, path: Path, stop: asyncio.Event) -> None:
        # Tags and commits land under refs/ and in packed-refs; a short debounce groups the
        # several files one `git tag` writes into one wake-up. watchfiles' default filter
        # drops everything under .git, so pass our own.
        try:
            async for _ in watchfiles.awatch(
                path,
                stop_event=stop,
                watch_filter=_is_ref_change,
                debounce=150,
                step=25,
                recursive=True,
            ):
                self._changed.set()
        except (OSError, RuntimeError) as exc:
            log.warning(
                "cannot watch %s (%s); polling every %.1fs only", path, exc, self.poll_interval_s
            )


def _is_ref_change(change: watchfiles.Change, path: str) -> bool:
    if path.endswith(".lock"):
        return False
    return "/refs/" in path or path.endswith("/packed-refs") or path.endswith("/HEAD")


def _differs(state: DesiredState, previous: DesiredState | None) -> bool:
    # Error times change on every poll; only what is served or what failed matters.
    return (
        previous is None
        or state.entries != previous.entries
        or _messages(state) != _messages(previous)
        or state.untrusted != previous.untrusted
    )


def _messages(state: DesiredState) -> list[tuple[str, str | None, str | None, str]]:
    return [(e.model, e.stage, e.version, e.message) for e in state.errors]
