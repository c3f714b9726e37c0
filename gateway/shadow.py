"""Shadow traffic: a stage's answered requests, predicted again by another stage's version.

The predict path calls `offer()` after the response is sent: two dict lookups, the sample
check (a hash of the request id, only when sampling below 1) and a `deque.append`; when
the queue holds `queue_max` items the request is skipped and counted instead. One worker
task drains the queue on the event loop, one item at a time with a yield between items, so
primary requests interleave with shadow work and, under saturation, the queue (not the
primary) absorbs the difference. Each item: look up the shadow stage's version and pin it
(its in-flight count, in the same loop step, as the predict path does), predict inline or
on the shadow's own thread (the engine rule of inference.py; its own thread so that a slow
shadow never holds the primary's inference threads), validate the output, compare, count,
audit. A failure is counted and logged (at most once a minute per model and kind), never
seen by a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.audit import AuditWriter
from gateway.errors import GatewayError
from gateway.loaded import LoadedVersion
from gateway.pool import ModelPool
from gateway.request_schema import InputBatch
from gateway.route_table import Route
from gateway.shadow_compare import Comparator, OutputMismatchError
from gateway.shadow_config import ShadowPlan, ShadowPlans, sample_point
from gateway.shadow_metrics import SKIP_REASONS, ShadowMetrics
from gateway.shadow_stats import WINDOW, PairStats

__all__ = ["MAX_PAIRS", "Shadow"]

log = logging.getLogger("stageserve.shadow")
# Old pairs kept per model (their summaries stay readable); the oldest goes first.
MAX_PAIRS = 16
_LOG_EVERY_S = 60.0
_NO_ROUTES: dict[str, Route] = {}
# Audit status of a shadow prediction, by error kind (None: compared).
_STATUS: dict[str | None, int] = {None: 200, "input_mismatch": 422, "timeout": 504}

# (plan, primary route, decoded batch, primary predictions, primary inference s, request id)
Item = tuple[ShadowPlan, Route, InputBatch, list[Any], float, str]


def _unpin(lv: LoadedVersion, _: object) -> None:
    lv.inflight -= 1


class Shadow:
    """The shadow queue, its worker (`run()` as a task, `stop()`), and the pairs' statistics."""

    def __init__(
        self,
        pool: ModelPool,
        metrics: ShadowMetrics,
        audit: AuditWriter,
        plans: ShadowPlans,
        *,
        queue_max: int = 1000,
        timeout_s: float = 1.0,
        window: int = WINDOW,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.audit = audit
        self.plans = plans
        self.queue_max = queue_max
        self.timeout_s = timeout_s
        self.window = window
        self._queue: deque[Item] = deque()
        self._wake = asyncio.Event()  # not bound to a loop until awaited (Python >= 3.10)
        self._stopping = False
        self._executor: ThreadPoolExecutor | None = None
        # Counter children resolved once: a skip on the request path is one `.inc()`.
        self._skips = {m: {r: metrics.skipped.labels(m, r) for r in SKIP_REASONS} for m in plans}
        self._pairs: dict[tuple[str, ...], PairStats] = {}
        self._logged: dict[tuple[str, str], float] = {}
        self._last: tuple[ShadowPlan, LoadedVersion, LoadedVersion, PairStats] | None = None
        metrics.track_queue(lambda: len(self._queue))

    # -- the request path -----------------------------------------------------------------

    def offer(
        self, route: Route, batch: InputBatch, predictions: list[Any], inference_s: float, rid: str
    ) -> None:
        """Queue a shadow prediction of an answered request, or count why not. O(1)."""
        stages = self.plans.get(route.model)
        if stages is None:
            return
        plan = stages.get(route.stage)
        if plan is None:
            return
        skips = self._skips[route.model]
        if plan.sample < 1.0 and sample_point(rid) >= plan.sample:
            skips["not_sampled"].inc()
            return
        target = self.pool.routes.get(route.model, _NO_ROUTES).get(plan.shadow_stage)
        if target is None:
            skips["no_shadow_version"].inc()
            return
        if target.loaded is route.loaded:
            skips["same_version"].inc()
            return
        if len(self._queue) >= self.queue_max:
            skips["queue_full"].inc()
            self.pair(plan, route.loaded, target.loaded).queue_full += 1
            return
        self._queue.append((plan, route, batch, predictions, inference_s, rid))
        self._wake.set()

    # -- the worker -----------------------------------------------------------------------

    async def run(self) -> None:
        """Predict queued items until `stop()`; what is still queued then is counted."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        queue = self._queue
        while not self._stopping:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = queue.popleft()
            try:
                await self._process(item)
            except Exception:  # a bug here must not stop shadowing (nor reach a client)
                log.exception("shadow of %s failed", item[0].model)
                self.metrics.errors.labels(item[0].model, "error").inc()
            await asyncio.sleep(0)  # let waiting primary requests run between shadow items
        for item in queue:
            self._skips[item[0].model]["shutdown"].inc()
        queue.clear()

    async def stop(self, task: asyncio.Task[None] | None) -> None:
        """Stop after the item in progress (a slow one included), then free the thread."""
        self._stopping = True
        self._wake.set()
        if task is not None:
            await task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def backlog(self) -> int:
        return len(self._queue)

    async def _process(self, item: Item) -> None:
        plan, route, batch, predictions, primary_s, rid = item
        target = self.pool.routes.get(plan.model, _NO_ROUTES).get(plan.shadow_stage)
        skips = self._skips[plan.model]
        if target is None:
            skips["no_shadow_version"].inc()
            return
        lv = target.loaded
        if lv is route.loaded:
            skips["same_version"].inc()
            return
        last = self._last
        if last is not None and last[0] is plan and last[1] is route.loaded and last[2] is lv:
            pair = last[3]  # the common case: the same pair as the previous item
        else:
            pair = self.pair(plan, route.loaded, lv)
            self._last = (plan, route.loaded, lv, pair)
        started_at = time.time()
        # Pinned in the same loop step as the lookup: ModelPool._release waits for inflight 0.
        # `_predict` unpins it when its call is over (a timed-out thread call: when it ends).
        lv.inflight += 1
        kind, detail, out, shadow_batch, shadow_s = await self._predict(lv, pair, batch)
        if kind is None:
            try:
                shadow_predictions = lv.schema.predictions(out, batch.rows)
                diffs = pair.comparator.compare(predictions, shadow_predictions)
            except OutputMismatchError as exc:
                kind, detail = "output_mismatch", str(exc)
            except ValueError as exc:
                kind, detail = "invalid_output", str(exc)
            else:
                pair.record(diffs, primary_s, shadow_s)
        if kind is not None:
            pair.errors[kind] += 1
            self.metrics.errors.labels(plan.model, kind).inc()
            self._log(plan.model, kind, f"{lv.version}: {detail}")
        if self.audit.enabled:
            entry = (
                started_at,
                f"{rid}#shadow",
                plan.model,
                plan.shadow_stage,
                lv.version,
                lv.digest,
                _STATUS.get(kind, 500),
                shadow_s,
                batch.rows,
                shadow_batch,
            )
            self.audit.submit_shadow(entry, rid, kind)
            while self.audit.is_full():  # records are never dropped; the queue absorbs this
                await asyncio.sleep(0.001)

    async def _predict(
        self, lv: LoadedVersion, pair: PairStats, batch: InputBatch
    ) -> tuple[str | None, str, Any, InputBatch, float]:
        """(error kind or None, detail, raw output, the shadow's inputs, inference seconds)."""
        unpinned = False
        shadow_batch = batch
        t = time.perf_counter()
        try:
            shadow_batch = pair.comparator.inputs(batch)
            t = time.perf_counter()
            if batch.rows <= lv.inline_max_rows:
                out = lv.predict(shadow_batch)
            else:
                assert self._executor is not None
                future = asyncio.get_running_loop().run_in_executor(
                    self._executor, lv.predict, shadow_batch
                )
                future.add_done_callback(functools.partial(_unpin, lv))
                unpinned = True
                try:
                    out = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
                except TimeoutError:
                    # One slow call at a time: wait for it, so calls never pile up on the
                    # thread; the bounded queue takes (and counts) what comes meanwhile.
                    with contextlib.suppress(Exception):
                        await future
                    late = time.perf_counter() - t
                    return "timeout", f"{late:.3f} s", None, shadow_batch, late
        except GatewayError as exc:
            return "input_mismatch", str(exc), None, shadow_batch, 0.0
        except Exception as exc:
            return "error", f"{type(exc).__name__}: {exc}", None, shadow_batch, 0.0
        finally:
            if not unpinned:
                lv.inflight -= 1
        shadow_s = time.perf_counter() - t
        if shadow_s > self.timeout_s:  # an inline call cannot be interrupted; still late
            return "timeout", f"{shadow_s:.3f} s", None, shadow_batch, shadow_s
        return None, "", out, shadow_batch, shadow_s

    # -- statistics -----------------------------------------------------------------------

    def pair(self, plan: ShadowPlan, primary: LoadedVersion, shadow: LoadedVersion) -> PairStats:
        key = (
            plan.model,
            plan.stage,
            primary.version,
            primary.digest,
            plan.shadow_stage,
            shadow.version,
            shadow.digest,
        )
        stats = self._pairs.get(key)
        if stats is None:
            metrics = self.metrics.pair(plan.model, plan.stage, primary.version, shadow.version)
            comparator = Comparator(primary.schema, shadow.schema)
            stats = self._pairs[key] = PairStats(key, comparator, metrics, window=self.window)
            mine = [k for k in self._pairs if k[0] == plan.model]
            for old in mine[: max(0, len(mine) - MAX_PAIRS)]:
                del self._pairs[old]
        return stats

    def report(self, model: str) -> dict[str, Any]:
        """`GET /models/{model}/shadow`: the configuration, then every pair, current first."""
        plans = self.plans.get(model, {})
        routes = self.pool.routes.get(model, _NO_ROUTES)
        current: list[tuple[str, ...]] = []
        for plan in plans.values():
            p, s = routes.get(plan.stage), routes.get(plan.shadow_stage)
            if p is not None and s is not None:
                a, b = p.loaded, s.loaded
                current.append(
                    (model, plan.stage, a.version, a.digest, plan.shadow_stage, b.version, b.digest)
                )
        pairs = [v for k, v in self._pairs.items() if k[0] == model]
        order = {key: i for i, key in enumerate(current)}
        pairs.sort(key=lambda ps: ps.since, reverse=True)  # newest first, then (stable sort)
        pairs.sort(key=lambda ps: order.get(ps.key, len(order)))  # the current pairs first
        skips = self._skips.get(model)
        return {
            "model": model,
            "config": [plan.describe() for plan in plans.values()],
            "timeout_s": self.timeout_s,
            "queue": {"depth": len(self._queue), "max": self.queue_max},
            "skipped": {reason: int(child.value) for reason, child in (skips or {}).items()},
            "pairs": [ps.summary(current=ps.key in order) for ps in pairs],
        }

    def _log(self, model: str, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self._logged.get((model, kind))
        if last is None or now - last >= _LOG_EVERY_S:
            self._logged[(model, kind)] = now
            log.warning("shadow %s %s (logged at most once a minute): %s", model, kind, message)
