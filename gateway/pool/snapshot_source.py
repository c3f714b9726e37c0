"""Where desired states come from: the `DesiredStateSource` protocol and the snapshot watcher."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import msgspec
import watchfiles

from registry_sync.sync.snapshot import SNAPSHOT_FILE, DesiredState
from registry_sync.sync.stop import own_stop_event

__all__ = ["DesiredStateSource", "SnapshotFileSource"]

log = logging.getLogger("stageserve.snapshot")


class DesiredStateSource(Protocol):
    """Yields the first desired state, then each new one, until `stop` is set."""

    def updates(self, stop: asyncio.Event) -> AsyncIterator[DesiredState]: ...


class SnapshotFileSource:
    """Sidecar mode: follow `<cache_dir>/snapshot.json`, which `stageserve sync` replaces by
    rename. A malformed snapshot is logged and ignored; the last good one stays in force."""

    def __init__(
        self, cache_dir: str | Path, *, debounce_ms: int = 20, recheck_ms: int = 2000
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.path = self.cache_dir / SNAPSHOT_FILE
        self.debounce_ms = debounce_ms
        # inotify can miss a rename on some filesystems (network volumes): re-stat this often.
        self.recheck_ms = recheck_ms
        self._seen: tuple[int, int, int] | None = None
        self._decoder = msgspec.json.Decoder(DesiredState)

    async def updates(self, stop: asyncio.Event) -> AsyncIterator[DesiredState]:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        state = self._read_if_changed()
        if state is not None:
            yield state
        name = self.path.name
        # awatch sets the event it is given when cancelled: give it one of its own.
        async with own_stop_event(stop) as watch_stop:
            async for _ in watchfiles.awatch(
                self.cache_dir,
                stop_event=watch_stop,
                watch_filter=lambda _change, p: os.path.basename(p) == name,
                debounce=self.debounce_ms,
                step=10,
                rust_timeout=self.recheck_ms,
                yield_on_timeout=True,
                recursive=False,
            ):
                state = self._read_if_changed()
                if state is not None:
                    yield state

    def _read_if_changed(self) -> DesiredState | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._seen:
            return None
        self._seen = key
        try:
            state = self._decoder.decode(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (msgspec.DecodeError, OSError) as exc:
            log.error("ignoring unreadable snapshot %s: %s", self.path, exc)
            return None
        log.info(
            "snapshot %s: %d entries, %d errors, generated %s",
            self.path,
            len(state.entries),
            len(state.errors),
            state.generated_at,
        )
        return state
