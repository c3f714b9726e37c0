"""The as-of pool: past versions loaded on demand, kept apart from the live pool, bounded.

A version the live pool serves right now (same model, version and digest) is used from there
and costs nothing. Others are loaded (verified by digest and warmed up like any version, on
one thread of their own, one at a time, so a cold load never takes more than one core from the
live versions) and kept in LRU order within `max_versions` and `max_bytes`. A version still
answering a request is never closed: eviction skips it until it is idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.history.asof.metrics import AsOfMetrics
from gateway.pool.loaded import LoadedVersion, Loader
from gateway.pool.model_pool import ModelPool
from registry_sync.sync.snapshot import DesiredEntry

__all__ = ["AsOfPool"]

log = logging.getLogger("stageserve.asof")
Key = tuple[str, str, str]  # model, version, digest
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class AsOfPool:
    def __init__(
        self,
        live: ModelPool,
        loader: Loader,
        metrics: AsOfMetrics,
        *,
        max_versions: int = 4,
        max_bytes: int = 1 << 30,
    ) -> None:
        self.live = live
        self.loader = loader
        self.metrics = metrics
        self.max_versions = max_versions
        self.max_bytes = max_bytes
        self._loaded: OrderedDict[Key, tuple[LoadedVersion, int]] = OrderedDict()
        self._loading: dict[Key, asyncio.Future[LoadedVersion]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asof-load")
        metrics.versions.set_function(lambda: len(self._loaded))
        metrics.bytes.set_function(self.bytes_used)

    def bytes_used(self) -> int:
        return sum(size for _, size in self._loaded.values())

    def cached(self, model: str, version: str, digest: str | None) -> LoadedVersion | None:
        """The version if it is in memory (live routes first): no await, so a caller that
        pins it (`inflight += 1`) in the same step is safe from release and eviction."""
        for route in self.live.routes.get(model, {}).values():
            lv = route.loaded
            if lv.version == version and (digest is None or lv.digest == digest):
                return lv
        for (m, v, d), (lv, _) in self._loaded.items():
            if m == model and v == version and (digest is None or d == digest):
                self._loaded.move_to_end((m, v, d))
                return lv
        return None

    async def run(self, fn: Any, *args: Any) -> Any:
        """Blocking work of as-of requests (fetching packages) on the pool's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load(self, model: str, version: str, digest: str, package_path: str) -> LoadedVersion:
        """Load (once, however many requests ask at the same time) and keep it; raises the
        loader's ModelLoadError."""
        key = (model, version, digest)
        while True:
            found = self.cached(model, version, digest)
            if found is not None:
                return found
            waiting = self._loading.get(key)
            if waiting is None:
                break
            # Another request is loading it; look again once it is done (it may even have
            # been evicted by then).
            await asyncio.shield(waiting)
        future: asyncio.Future[LoadedVersion] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        entry = DesiredEntry(
            model=model, stage="", version=version, package_path=package_path, digest=digest
        )
        started = time.perf_counter()
        try:
            loaded: tuple[LoadedVersion, int] = await self.run(self._measured_load, entry)
            lv, size = loaded
        except Exception as exc:
            self.metrics.loads.labels(model, "failed").inc()
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._loading[key]
        self.metrics.loads.labels(model, "ok").inc()
        self.metrics.load_seconds.labels(model).observe(time.perf_counter() - started)
        log.info("as-of pool: loaded %s %s (%s, ~%d MB)", model, version, digest, size >> 20)
        # No await from here to the caller's pin (inflight += 1): it cannot be evicted first.
        self._loaded[key] = (lv, size)
        self._evict(keep=key)
        future.set_result(lv)
        return lv

    def _measured_load(self, entry: DesiredEntry) -> tuple[LoadedVersion, int]:
        # Loads run one at a time on this thread, so the growth of the resident set is this
        # version's (roughly: live requests allocate meanwhile); never less than its files.
        before = _resident_bytes()
        lv = self.loader(entry)
        grown = _resident_bytes() - before
        files = sum(f.size_bytes for f in lv.manifest.files)
        return lv, max(grown, files)

    def _evict(self, keep: Key) -> None:
        while len(self._loaded) > self.max_versions or self.bytes_used() > self.max_bytes:
            victim = next(
                (k for k, (lv, _) in self._loaded.items() if k != keep and lv.inflight == 0), None
            )
            if victim is None:
                return  # everything else is answering a request: evict on a later load
            lv, _ = self._loaded.pop(victim)
            lv.close()
            self.metrics.evictions.inc()
            log.info("as-of pool: evicted %s %s", lv.model, lv.version)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for lv, _ in self._loaded.values():
            lv.close()
        self._loaded.clear()
