"""The model pool: loaded versions keyed by (model, version), routed to by (model, stage).

`reconcile(state)` (or `submit(state)`, which does not wait) makes `state` the newest desired
state at once, then brings each model to it: its new versions are loaded and warmed up first
(in worker threads, so serving continues), then its routes switch in one assignment, then
versions no route uses are released once their in-flight requests are done. A version that
fails is never routed to.

Each model converges on its own (one model's slow load never delays another's swap), one
step at a time, and always toward the newest desired state: a load the registry has since
superseded is abandoned (its thread finishes in the background and the result is released,
never routed to), so a rollback never waits behind a slow load.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from gateway.errors import ModelLoadError
from gateway.pool.heap import FrozenHeap
from gateway.pool.loaded import LoadedVersion, Loader
from gateway.pool.route_table import Route, StageStatus
from gateway.telemetry.activation import ActivationListener, notify, utc_now_iso
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.snapshot import DesiredEntry, DesiredState, ModelSyncError

__all__ = ["ModelPool"]

log = logging.getLogger("stageserve.pool")
_RELEASE_POLL_S = 0.005
_CLOSE_TIMEOUT_S = 30.0
# After a release, how long until the version must be gone (heap.py): a shadow item or an
# as-of request that still held it has finished by then.
_RELEASED_CHECK_S = 10.0

# (model, version, digest): one loadable thing.
LoadKey = tuple[str, str, str]


def _key(e: DesiredEntry) -> LoadKey:
    return (e.model, e.version, e.digest)


class ModelPool:
    def __init__(
        self,
        metrics: GatewayMetrics,
        loader: Loader,
        *,
        retry_failed_load_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_load_failure: Callable[[DesiredEntry], None] | None = None,
        heap: FrozenHeap | None = None,
    ) -> None:
        self.metrics = metrics
        # Frozen after every switch that brought versions in (heap.py); None: never.
        self.heap = heap
        self._loader = loader
        self._retry_failed_load_s = retry_failed_load_s
        self._clock = clock
        # Told about every failed load (embedded mode: the sync re-verifies the package).
        self._on_load_failure = on_load_failure
        # model -> stage -> Route; replaced whole, never mutated, so a reader sees one table.
        self.routes: dict[str, dict[str, Route]] = {}
        self.desired: DesiredState | None = None
        self.statuses: dict[tuple[str, str], StageStatus] = {}
        # Bumped whenever routes change (the OpenAPI document is rebuilt from it).
        self.generation = 0
        self._loaded: dict[tuple[str, str], LoadedVersion] = {}
        # Replaced by a reload of the same version (new digest) but maybe still routed to.
        self._retired: list[LoadedVersion] = []
        # key -> (clock time, message, ISO time, generated_at of the desired state then)
        self._failed: dict[LoadKey, tuple[float, str, str, str]] = {}
        self._listeners: list[ActivationListener] = []
        self._refusals_seen: set[str] = set()
        self._releases: set[asyncio.Task[None]] = set()
        # Loads running in worker threads, and finished loads nobody was waiting for.
        self._loading: dict[LoadKey, asyncio.Task[LoadedVersion | None]] = {}
        self._waiting_on: dict[LoadKey, int] = {}
        self._parked: dict[LoadKey, LoadedVersion] = {}
        # model -> the task bringing it to the desired state (at most one per model).
        self._convergers: dict[str, asyncio.Task[None]] = {}
        # With --workers N: what the other workers still miss (a pod is ready when all are).
        self.peers_unready: Callable[[], list[str]] | None = None
        # Futures resolved when a new desired state arrives (a waiting load re-checks).
        self._desired_waiters: set[asyncio.Future[None]] = set()

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
        ready, missing = self.own_ready()
        if ready and self.peers_unready is not None:
            missing = self.peers_unready()
        return not missing, missing

    def own_ready(self) -> tuple[bool, list[str]]:
        """`ready()` of this process alone (the other workers' pools aside)."""
        if self.desired is None:
            return False, ["no desired state received yet"]
        missing = [
            f"{m}#{s}: {st.state}" + (f" ({st.error})" if st.error else "")
            for (m, s), st in sorted(self.statuses.items())
            if self.routes.get(m, {}).get(s) is None
        ]
        return not missing, missing

    def pending(self) -> list[str]:
        """Stages not (yet) answering with the version the registry assigns them: still
        loading or failed to load (the previous version answers), or the sync could not
        bring the assigned version here (the last good one answers, if any)."""
        found: dict[tuple[str, str], str] = {}
        for (m, s), st in self.statuses.items():
            route = self.routes.get(m, {}).get(s)
            if route is not None and route.loaded.version != st.wanted.version:
                error = f" ({st.error})" if st.error else ""
                found[(m, s)] = f"{m}#{s}: {st.wanted.version} {st.state}{error}"
        for (m, s), err in self.stage_sync_errors().items():
            route = self.routes.get(m, {}).get(s)
            serving = route.loaded.version if route is not None else "nothing"
            assigned = err.version or "unknown"
            found[(m, s)] = f"{m}#{s}: assigned {assigned}, serving {serving} ({err.message})"
        return [found[key] for key in sorted(found)]

    def stage_sync_errors(self) -> dict[tuple[str, str], ModelSyncError]:
        """Per (model, stage), why the sync could not bring the registry's assignment here
        (the desired state then holds the last good version, or nothing)."""
        if self.desired is None:
            return {}
        return {(e.model, e.stage): e for e in self.desired.errors if e.stage is not None}

    # -- desired state -----------------------------------------------------------------------

    async def reconcile(self, state: DesiredState) -> None:
        """Make `state` the desired state and wait until every model has converged to it (or
        to a newer one)."""
        self.submit(state)
        await self.settled()

    def submit(self, state: DesiredState) -> None:
        """Make `state` the desired state now; each model converges in its own task."""
        self._set_desired(state)
        for model in sorted({e.model for e in state.entries} | set(self.routes)):
            task = self._convergers.get(model)
            # A running task re-reads the desired state before each step: it will see this.
            if task is None or task.done():
                task = asyncio.create_task(self._converge(model), name=f"converge {model}")
                task.add_done_callback(self._converged)
                self._convergers[model] = task

    async def settled(self) -> None:
        """Wait until no model is converging."""
        while running := [t for t in self._convergers.values() if not t.done()]:
            await asyncio.wait(running)

    @staticmethod
    def _converged(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The next desired state (or the retry timer) tries that model again.
            log.error("%s failed", task.get_name(), exc_info=exc)

    def _set_desired(self, state: DesiredState) -> None:
        self.desired = state
        self._journal_refusals(state)
        wanted = {(e.model, e.stage): e for e in state.entries}
        old_statuses = self.statuses
        self.statuses = {key: old_statuses.get(key) or StageStatus(e) for key, e in wanted.items()}
        for key, e in wanted.items():
            self.statuses[key].wanted = e
        for waiter in self._desired_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._desired_waiters.clear()

    def _wanted(self, model: str) -> dict[str, DesiredEntry]:
        entries = self.desired.entries if self.desired is not None else []
        return {e.stage: e for e in entries if e.model == model}

    def _is_wanted(self, key: LoadKey) -> bool:
        entries = self.desired.entries if self.desired is not None else []
        return any(_key(e) == key for e in entries)

    async def _converge(self, model: str) -> None:
        """Bring one model to the newest desired state: load what it lacks, then switch.

        One task per model at a time (`submit`); between its awaits and its switch nothing
        else runs, so a desired state that arrives during a load is always seen here."""
        while True:
            wanted = self._wanted(model)
            to_load = self._to_load(wanted)
            for st in (self.statuses[(model, s)] for s in wanted):
                if _key(st.wanted) in to_load:
                    st.state = "loading"
            superseded = False
            done: list[LoadedVersion] = []
            for e in to_load.values():
                loaded = await self._load_unless_superseded(e)
                if loaded is _SUPERSEDED:
                    superseded = True
                    break
                if isinstance(loaded, LoadedVersion):
                    done.append(loaded)
            for lv in done:  # a load the registry superseded meanwhile is never routed to
                if self._is_wanted((lv.model, lv.version, lv.digest)):
                    self._adopt(lv)
                else:
                    self._discard(lv)
            if superseded or self._wanted(model) != wanted:
                continue  # the registry moved on while we loaded: start from the newest
            self._switch(model, wanted)
            self._discard_unwanted(model)
            if done and self.heap is not None:
                self.heap.freeze(f"{model} switched")
            return

    def _to_load(self, wanted: dict[str, DesiredEntry]) -> dict[LoadKey, DesiredEntry]:
        """The wanted versions not in memory and not failed too recently."""
        generated_at = self.desired.generated_at if self.desired is not None else ""
        to_load: dict[LoadKey, DesiredEntry] = {}
        for e in wanted.values():
            have = self._loaded.get((e.model, e.version))
            if have is not None and have.digest == e.digest:
                continue
            failed = self._failed.get(_key(e))
            # Retried after the delay, or at once when a new desired state arrives (e.g.
            # the sync repaired the package in the cache).
            if (
                failed is not None
                and self._clock() - failed[0] < self._retry_failed_load_s
                and failed[3] == generated_at
            ):
                continue
            to_load.setdefault(_key(e), e)
        return to_load

    async def _load_unless_superseded(self, e: DesiredEntry) -> LoadedVersion | _Superseded | None:
        """The loaded version (None if it failed), or _SUPERSEDED when the newest desired state
        no longer wants it before it finished (the load then goes on in the background)."""
        key = _key(e)
        parked = self._parked.pop(key, None)
        if parked is not None:
            return parked
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(e), name=f"load {e.model} {e.version}")
            self._loading[key] = task
            task.add_done_callback(functools.partial(self._load_finished, key))
        self._waiting_on[key] = self._waiting_on.get(key, 0) + 1
        try:
            while not task.done():
                changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._desired_waiters.add(changed)
                try:
                    waits: set[asyncio.Future[Any]] = {task, changed}
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self._desired_waiters.discard(changed)
                if not task.done() and not self._is_wanted(key):
                    log.info("%s %s: superseded while loading, not waiting for it", *key[:2])
                    return _SUPERSEDED
        finally:
            self._waiting_on[key] -= 1
        return task.result()

    def _load_finished(self, key: LoadKey, task: asyncio.Task[LoadedVersion | None]) -> None:
        """A load finished; if nobody waits for it any more, keep it only if still wanted."""
        self._loading.pop(key, None)
        if self._waiting_on.get(key, 0) > 0 or task.cancelled():
            return
        loaded = task.result()
        if loaded is None:
            return
        if self._is_wanted(key):
            self._parked[key] = loaded  # a converge that wants it will pick it up
        else:
            self._discard(loaded)

    def _adopt(self, loaded: LoadedVersion) -> None:
        key = (loaded.model, loaded.version)
        replaced = self._loaded.get(key)
        if replaced is not None and replaced is not loaded:  # same version, new digest
            self._retired.append(replaced)
        self._loaded[key] = loaded

    def _discard_unwanted(self, model: str) -> None:
        for key, lv in list(self._parked.items()):
            if key[0] == model and not self._is_wanted(key):
                del self._parked[key]
                self._discard(lv)

    def _discard(self, loaded: LoadedVersion) -> None:
        """A load the registry superseded: never routed to, released."""
        log.info("discarded %s %s: the registry moved on while it loaded", loaded.model,
                 loaded.version)  # fmt: skip
        self.metrics.model_loads_discarded_total.labels(loaded.model).inc()
        self._schedule_release(loaded)

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
        generated_at = self.desired.generated_at if self.desired is not None else ""
        self._failed[_key(e)] = (self._clock(), message, utc_now_iso(), generated_at)
        self.metrics.model_load_failures_total.labels(e.model, e.version).inc()
        log.error("%s %s failed to load: %s", e.model, e.version, message)
        if self._on_load_failure is not None:
            try:
                self._on_load_failure(e)
            except Exception:  # a hook that fails must not change what serves
                log.exception("load-failure hook failed")
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
        if self.heap is not None:
            what = f"{loaded.model} {loaded.version}"
            ref = weakref.ref(loaded)
            del loaded
            asyncio.get_running_loop().call_later(_RELEASED_CHECK_S, self.heap.released, ref, what)

    async def drain(self) -> None:
        """Wait until every version scheduled for release has been released."""
        while self._releases:
            await asyncio.wait(list(self._releases))

    async def close(self) -> None:
        """Release everything (on shutdown, after the server stopped taking requests)."""
        for task in self._convergers.values():
            task.cancel()
        for task in self._convergers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Loads still running in worker threads cannot be interrupted: let them finish.
        if self._loading:
            await asyncio.wait(list(self._loading.values()), timeout=_CLOSE_TIMEOUT_S)
        if self._releases:
            await asyncio.wait(list(self._releases), timeout=_CLOSE_TIMEOUT_S)
        for lv in [*self._loaded.values(), *self._parked.values()]:
            lv.close()
        self._loaded, self._parked = {}, {}
        self.routes = {}


class _Superseded:
    """What `_load_unless_superseded` returns for a load the registry no longer wants."""


_SUPERSEDED = _Superseded()
