"""The model pool: loaded versions keyed by (model, version), routed to by (model, stage).

`reconcile(state)` loads and warms up every new version first (in a worker thread, so serving
continues), then swaps the whole route table in one assignment, then releases versions no
route uses once their in-flight requests are done. A version that fails is never routed to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.errors import ModelLoadError
from gateway.pool.loaded import LoadedVersion, Loader
from gateway.pool.route_table import Route, StageStatus
from gateway.telemetry.activation import ActivationListener, notify, utc_now_iso
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.snapshot import DesiredEntry, DesiredState

__all__ = ["ModelPool"]

log = logging.getLogger("stageserve.pool")
_RELEASE_POLL_S = 0.005


class ModelPool:
    def __init__(
        self,
        metrics: GatewayMetrics,
        loader: Loader,
        *,
        retry_failed_load_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self._loader = loader
        self._retry_failed_load_s = retry_failed_load_s
        self._clock = clock
        # model -> stage -> Route; replaced whole, never mutated, so a reader sees one table.
        self.routes: dict[str, dict[str, Route]] = {}
        self.desired: DesiredState | None = None
        self.statuses: dict[tuple[str, str], StageStatus] = {}
        # Bumped whenever routes change (the OpenAPI document is rebuilt from it).
        self.generation = 0
        self._loaded: dict[tuple[str, str], LoadedVersion] = {}
        # Replaced by a reload of the same version (new digest) but maybe still routed to.
        self._retired: list[LoadedVersion] = []
        self._failed: dict[tuple[str, str, str], tuple[float, str, str]] = {}
        self._listeners: list[ActivationListener] = []
        self._refusals_seen: set[str] = set()
        self._releases: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def add_listener(self, listener: ActivationListener) -> None:
        self._listeners.append(listener)

    def wanted_stages(self, model: str) -> list[str]:
        if self.desired is None:
            return []
        return sorted({e.stage for e in self.desired.entries if e.model == model})

    def wanted_models(self) -> dict[str, list[str]]:
        out: dict[str, set[str]] = {}
        for e in self.desired.entries if self.desired else []:
            out.setdefault(e.model, set()).add(e.stage)
        return {m: sorted(s) for m, s in sorted(out.items())}

    def loaded_versions(self) -> list[LoadedVersion]:
        return list(self._loaded.values())

    def has_failures(self) -> bool:
        return any(st.state == "failed" for st in self.statuses.values())

    def ready(self) -> tuple[bool, list[str]]:
        """Every (model, stage) of the desired state has a version to answer with.

        Readiness is about answering, not about being on the newest assignment: every
        replica receives a new assignment at the same moment, so if a slow or failed load
        made pods unready, one bad assignment would take the whole Service out. A stage
        still on its previous version is reported by `pending()` and in /models instead.
        """
        if self.desired is None:
            return False, ["no desired state received yet"]
        missing = [
            f"{m}#{s}: {st.state}" + (f" ({st.error})" if st.error else "")
            for (m, s), st in sorted(self.statuses.items())
            if self.routes.get(m, {}).get(s) is None
        ]
        return not missing, missing

    def pending(self) -> list[str]:
        """Stages that answer, but not (yet) with their assigned version."""
        return [
            f"{m}#{s}: {st.wanted.version} {st.state}" + (f" ({st.error})" if st.error else "")
            for (m, s), st in sorted(self.statuses.items())
            if (route := self.routes.get(m, {}).get(s)) is not None
            and route.loaded.version != st.wanted.version
        ]

    async def reconcile(self, state: DesiredState) -> None:
        async with self._lock:
            await self._reconcile(state)

    async def _reconcile(self, state: DesiredState) -> None:
        self.desired = state
        self._journal_refusals(state)
        wanted = {(e.model, e.stage): e for e in state.entries}
        old_statuses = self.statuses
        self.statuses = {key: old_statuses.get(key) or StageStatus(e) for key, e in wanted.items()}
        for key, e in wanted.items():
            self.statuses[key].wanted = e
        # 1. Load every version not yet in memory (sequentially: bounded memory and CPU).
        to_load: dict[tuple[str, str], DesiredEntry] = {}
        for e in state.entries:
            have = self._loaded.get((e.model, e.version))
            if have is not None and have.digest == e.digest:
                continue
            failed = self._failed.get((e.model, e.version, e.digest))
            if failed is not None and self._clock() - failed[0] < self._retry_failed_load_s:
                continue
            to_load.setdefault((e.model, e.version), e)
        for key, st in self.statuses.items():
            if (key[0], st.wanted.version) in to_load:
                st.state = "loading"
        # 2. Per model: load its new versions, then switch its routes in one assignment, so
        # a slow model never delays another's swap. Models no longer wanted go last.
        models = sorted({m for m, _ in wanted})
        models += sorted(set(self.routes) - set(models))
        for model in models:
            for key, e in to_load.items():
                if key[0] == model:
                    loaded = await self._load(e)
                    if loaded is not None:
                        replaced = self._loaded.get(key)
                        if replaced is not None:  # same version, new digest: retire the old
                            self._retired.append(replaced)
                        self._loaded[key] = loaded
            self._switch(model, {s: e for (m, s), e in wanted.items() if m == model})

    def _journal_refusals(self, state: DesiredState) -> None:
        """Each assignment the sync's trust policy refused goes into the journal once."""
        for refused in state.untrusted:
            if refused.tag in self._refusals_seen:
                continue
            self._refusals_seen.add(refused.tag)
            notify(
                self._listeners,
                refused.model,
                refused.stage,
                refused.version or "",
                "",
                kind="refused",
                message=refused.describe(),
            )

    def _switch(self, model: str, wanted: dict[str, DesiredEntry]) -> None:
        old = self.routes.get(model, {})
        new: dict[str, Route] = {}
        for stage, e in wanted.items():
            st = self.statuses[(model, stage)]
            current = old.get(stage)
            lv = self._loaded.get((model, e.version))
            if lv is not None and lv.digest == e.digest:
                route = current if current is not None and current.loaded is lv else None
                route = route or Route(
                    model, stage, lv, self.metrics.route(model, stage, lv.version)
                )
                st.state, st.error, st.error_at = "loaded", None, None
            else:
                failed = self._failed.get((model, e.version, e.digest))
                st.state = "failed"
                if failed is not None:
                    st.error, st.error_at = failed[1], failed[2]
                route = current  # the previous version keeps serving, if there was one
            if route is not None:
                new[stage] = route
        routes = {m: r for m, r in self.routes.items() if m != model}
        if new:
            routes[model] = new
        self.routes = routes  # the switch: readers see the old table or the new one
        self.generation += 1
        # 3. Tell the world, then release this model's versions that no route uses.
        self._announce({model: old}, {model: new})
        in_use = {id(r.loaded) for r in new.values()}
        for key, lv in list(self._loaded.items()):
            if key[0] == model and id(lv) not in in_use:
                del self._loaded[key]
                self._schedule_release(lv)
        for lv in list(self._retired):
            if lv.model == model and id(lv) not in in_use:
                self._retired.remove(lv)
                self._schedule_release(lv)

    def _schedule_release(self, lv: LoadedVersion) -> None:
        task = asyncio.create_task(self._release(lv))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _load(self, e: DesiredEntry) -> LoadedVersion | None:
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(self._loader, e)
        except ModelLoadError as exc:
            message = exc.reason
        except Exception as exc:  # a loader bug must not stop the reconcile of other models
            log.exception("unexpected error loading %s %s", e.model, e.version)
            message = f"{type(exc).__name__}: {exc}"
        else:
            self.metrics.model_load_duration_seconds.labels(e.model).observe(
                time.perf_counter() - started
            )
            self._failed.pop((e.model, e.version, e.digest), None)
            log.info("loaded %s %s (%s, %s)", e.model, e.version, loaded.engine, e.digest)
            return loaded
        self._failed[(e.model, e.version, e.digest)] = (self._clock(), message, utc_now_iso())
        self.metrics.model_load_failures_total.labels(e.model, e.version).inc()
        log.error("%s %s failed to load: %s", e.model, e.version, message)
        assert self.desired is not None
        for other in self.desired.entries:
            if other.model == e.model and other.version == e.version:
                self._emit(
                    other.model, other.stage, e.version, e.digest, kind="failed", message=message
                )
        return None

    def _announce(self, old: dict[str, dict[str, Route]], new: dict[str, dict[str, Route]]) -> None:
        info = self.metrics.model_info
        keys = {(m, s) for m, st in old.items() for s in st} | {
            (m, s) for m, st in new.items() for s in st
        }
        for model, stage in sorted(keys):
            before = old.get(model, {}).get(stage)
            after = new.get(model, {}).get(stage)
            if before is not None and after is not None and before.loaded is after.loaded:
                continue
            if before is not None:
                info.remove(model, stage, before.loaded.version, before.loaded.digest)
            if after is not None:
                a = after.loaded
                info.labels(model, stage, a.version, a.digest).set(1)
                self.metrics.stage_activations_total.labels(model, stage).inc()
                self._emit(model, stage, a.version, a.digest, kind="activated")
            if before is not None:
                b = before.loaded
                self._emit(model, stage, b.version, b.digest, kind="deactivated")

    def _emit(
        self, model: str, stage: str, version: str, digest: str, *, kind: str, message: str = ""
    ) -> None:
        notify(self._listeners, model, stage, version, digest, kind=kind, message=message)

    async def _release(self, loaded: LoadedVersion) -> None:
        # Requests increment `inflight` in the same event-loop step as their route lookup,
        # so once the table no longer points here the count only goes down.
        while loaded.inflight > 0:
            await asyncio.sleep(_RELEASE_POLL_S)
        loaded.close()
        log.info("released %s %s", loaded.model, loaded.version)

    async def drain(self) -> None:
        """Wait until every version scheduled for release has been released."""
        while self._releases:
            await asyncio.wait(list(self._releases))

    async def close(self) -> None:
        """Release everything (on shutdown, after the server stopped taking requests)."""
        async with self._lock:
            if self._releases:
                await asyncio.wait(list(self._releases), timeout=30)
            for lv in self._loaded.values():
                lv.close()
            self._loaded = {}
            self.routes = {}
