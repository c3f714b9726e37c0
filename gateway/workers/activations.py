"""One activation journal for many workers: each activation once, in the parent.

Every worker's pool reports its own swaps; N workers would write each event N times. The
parent folds them into what the server as a whole did: a version starts serving a stage
when the first worker starts serving it with it (`activated`), and stops when the last one
stops (`deactivated`, also when the last worker serving it died). Between the two, during a
swap, some workers answer with the old version and some with the new: both serve. A
`failed` or `refused` event is journaled as often as the worker that reported it most
(every worker failing the same load once is one failed load, as with one process).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import msgspec

from gateway.telemetry.activation import ActivationEvent, utc_now_iso

__all__ = ["ActivationMerge"]

_Serving = tuple[str, str, str, str]  # (model, stage, version, digest)


class ActivationMerge:
    """Feed it each worker's events (`report`) and deaths (`gone`); it tells `listeners`."""

    def __init__(self, listeners: Sequence[Callable[[ActivationEvent], None]]) -> None:
        self._listeners = list(listeners)
        # which workers serve each (model, stage, version, digest)
        self._serving: dict[_Serving, set[int]] = {}
        # per worker incarnation: how many failed/refused events of each kind it reported
        self._reported: dict[int, Counter[tuple[str, ...]]] = {}
        self._emitted: Counter[tuple[str, ...]] = Counter()

    def report(self, worker: int, event: ActivationEvent) -> None:
        key = (event.model, event.stage, event.version, event.digest)
        if event.kind == "activated":
            holders = self._serving.setdefault(key, set())
            if not holders:
                self._emit(event)
            holders.add(worker)
        elif event.kind == "deactivated":
            holders = self._serving.get(key, set())
            if worker in holders:
                holders.discard(worker)
                if not holders:
                    del self._serving[key]
                    self._emit(event)
        else:
            counted = (event.kind, *key)
            mine = self._reported.setdefault(worker, Counter())
            mine[counted] += 1
            if mine[counted] > self._emitted[counted]:
                self._emitted[counted] += 1
                self._emit(event)

    def gone(self, worker: int, *, shutting_down: bool = False) -> None:
        """The worker exited: what only it served stops serving now (not journaled when the
        whole server shuts down, as one process journals nothing then); a new incarnation
        of the worker reports afresh."""
        self._reported.pop(worker, None)
        for key, holders in list(self._serving.items()):
            if worker in holders:
                holders.discard(worker)
                if not holders:
                    del self._serving[key]
                    if shutting_down:
                        continue
                    model, stage, version, digest = key
                    self._emit(
                        ActivationEvent(
                            at=utc_now_iso(),
                            model=model,
                            stage=stage,
                            version=version,
                            digest=digest,
                            kind="deactivated",
                            message="the last worker serving it exited",
                        )
                    )

    def _emit(self, event: ActivationEvent) -> None:
        for listener in self._listeners:
            listener(msgspec.structs.replace(event))
