"""Short garbage collections: what lives for the process is frozen out of CPython's GC.

A full (generation 2) collection traverses every container object the process holds and
every reference they hold: with numpy, onnxruntime, Litestar and uvicorn imported that is
~200 k objects, measured at 100-160 ms on the loop thread, during which nothing is
answered. Request traffic triggers one every few seconds (objects that outlive two young
collections, such as audit entries waiting for their flush, count toward the next full
one), so at 20k requests/s the single-row p99 at 16 connections was 139 ms with the audit
on (1.1 ms with it off): the collections, not the requests (benchmarks/RESULTS.md, issue 17).

`gc.freeze()` moves every object tracked so far to a permanent generation that collections
skip. So the gateway freezes once its imports and app are built (before it serves) and
again after every switch that brought new versions in (their runtime's modules are imported
at their first load, and the model objects live as long as the version): later collections
see only what is younger, a few milliseconds. Each freeze first collects what is not frozen
yet, so garbage of the load is freed rather than kept forever.

What freezing costs: a frozen object in a reference cycle is never reclaimed by the
collector (reference counting still frees everything else at once). Versions are the
objects that come and go, so a released version breaks its own cycles
(`LoadedVersion.close`), and `released()` checks that it is really gone; one that is
still alive (a runtime keeps a cycle of its own) is reclaimed by unfreezing, collecting
everything once (one full pause, on a release only) and freezing again, and counted
(`stageserve_heap_reclaims_total`). Off (`gc_freeze: false`): CPython's defaults.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["FrozenHeap"]

log = logging.getLogger("stageserve.heap")


class FrozenHeap:
    """`freeze()` at startup and after switches; `released(obj)` after a version's release."""

    def __init__(self, enabled: bool = True, *, on_reclaim: Callable[[], None] | None = None):
        self.enabled = enabled
        self._on_reclaim = on_reclaim
        self.freezes = 0
        self.reclaims = 0

    def freeze(self, reason: str) -> None:
        """Collect what is not frozen yet, then freeze everything that is left."""
        if not self.enabled:
            return
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.freezes += 1
        log.debug(
            "heap frozen (%s): %d objects, %.1f ms",
            reason,
            gc.get_freeze_count(),
            (time.perf_counter() - started) * 1000,
        )

    def released(self, ref: weakref.ref[Any], what: str) -> None:
        """After the last reference to a released version was dropped: if `ref` still
        resolves, the version is held by a cycle among frozen objects: reclaim it."""
        if not self.enabled or ref() is None:
            return
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.reclaims += 1
        if self._on_reclaim is not None:
            self._on_reclaim()
        log.info(
            "%s was held by a reference cycle after its release; reclaimed with one full "
            "collection (%.1f ms)%s",
            what,
            (time.perf_counter() - started) * 1000,
            "" if ref() is None else ", but something still refers to it",
        )
