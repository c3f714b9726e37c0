"""Shadow traffic: a stage's answered requests, predicted again by another stage's version.

The predict path calls `offer()` after the response is sent: two dict lookups, the sample
check (a hash of the request id, only when sampling below 1) and a `deque.append`; when
the queue holds `queue_max` items the request is skipped and counted instead. One worker
task drains the queue on the event loop, one item at a time with a yield between items, so
primary requests interleave with shadow work and, under saturation, the queue (not the
primary) absorbs the difference. Each item: look up the shadow stage's version and pin it
(its in-flight count, in the same loop step, as the predict path does), predict inline or
on the shadow's own thread (shadow_predict.py), validate the output, compare, count,
audit. A failure is counted and logged (at most once a minute per model and kind), never
seen by a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.pool.loaded import LoadedVersion
from gateway.pool.model_pool import ModelPool
from gateway.pool.route_table import Route
from gateway.schema.request_schema import InputBatch
from gateway.shadow.compare import OutputMismatchError
from gateway.shadow.config import ShadowPlan, ShadowPlans, sample_point
from gateway.shadow.metrics import SKIP_REASONS, ShadowMetrics
from gateway.shadow.pairs import PairBook
from gateway.shadow.predict import predict_pinned
from gateway.shadow.stats import WINDOW, PairStats
from gateway.telemetry.audit import AuditWriter

__all__ = ["Shadow"]

log = logging.getLogger("stageserve.shadow")
_LOG_EVERY_S = 60.0
_NO_ROUTES: dict[str, Route] = {}
# Audit status of a shadow prediction, by error kind (None: compared).
_STATUS: dict[str | None, int] = {None: 200, "input_mismatch": 422, "timeout": 504}

# (plan, primary route, batch, primary predictions, primary inference s, request id, principal,
#  the client's request id)
Item = tuple[ShadowPlan, Route, InputBatch, list[Any], float, str, "str | None", "str | None"]


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
        self._queue: deque[Item] = deque()
        self._wake = asyncio.Event()  # not bound to a loop until awaited (Python >= 3.10)
        self._stopping = False
        self._executor: ThreadPoolExecutor | None = None
        # Counter children resolved once: a skip on the request path is one `.inc()`.
        self._skips = {m: {r: metrics.skipped.labels(m, r) for r in SKIP_REASONS} for m in plans}
        self._pairs = PairBook(metrics, window=window)
        self._logged: dict[tuple[str, str], float] = {}
        self._last: tuple[ShadowPlan, LoadedVersion, LoadedVersion, PairStats] | None = None
        metrics.track_queue(lambda: len(self._queue))

    # -- the request path -----------------------------------------------------------------

    def offer(
        self,
        route: Route,
        batch: InputBatch,
        predictions: list[Any],
        inference_s: float,
        rid: str,
        *,
        principal: str | None = None,
        client_rid: str | None = None,
    ) -> None:
        """Queue a shadow prediction of an answered request, or count why not. O(1).

        The sample is chosen by the client's request id when it sent one (the same id is in
        or out on every replica), else by the server's."""
        stages = self.plans.get(route.model)
        if stages is None:
            return
        plan = stages.get(route.stage)
        if plan is None:
            return
        skips = self._skips[route.model]
        if plan.sample < 1.0 and sample_point(client_rid or rid) >= plan.sample:
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
        self._queue.append(
            (plan, route, batch, predictions, inference_s, rid, principal, client_rid)
        )
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
            if queue:  # let waiting primary requests run between shadow items
                await asyncio.sleep(0)
        for item in queue:
            self._skips[item[0].model]["shutdown"].inc()
        queue.clear()

    async def stop(self, task: asyncio.Task[None] | None, timeout_s: float = 10.0) -> None:
        """Stop after the item in progress, then free the thread; a shadow call still running
        after `timeout_s` is abandoned (the process is exiting; it must not hold it up)."""
        self._stopping = True
        self._wake.set()
        finished = True
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout_s)
            except TimeoutError:
                finished = False
                log.warning("a shadow prediction was still running at shutdown; abandoned")
        if self._executor is not None:
            self._executor.shutdown(wait=finished, cancel_futures=True)
            self._executor = None

    def backlog(self) -> int:
        return len(self._queue)

    async def _process(self, item: Item) -> None:
        plan, route, batch, predictions, primary_s, rid, principal, client_rid = item
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
        # predict_pinned unpins it when its call is over (a timed-out thread call: when it ends).
        lv.inflight += 1
        kind, detail, out, shadow_batch, shadow_s = await predict_pinned(
            lv, pair.comparator, batch, self._executor, self.timeout_s
        )
        shadow_predictions: list[Any] | None = None
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
                principal,
                client_rid,
                shadow_predictions if kind is None else None,
            )
            self.audit.submit_shadow(entry, rid, kind)
            while self.audit.is_full():  # records are never dropped; the queue absorbs this
                await asyncio.sleep(0.001)

    # -- statistics -----------------------------------------------------------------------

    def pair(self, plan: ShadowPlan, primary: LoadedVersion, shadow: LoadedVersion) -> PairStats:
        return self._pairs.get(plan, primary, shadow)

    def report(self, model: str) -> dict[str, Any]:
        """`GET /models/{model}/shadow`: the configuration, then every pair, current first."""
        plans = self.plans.get(model, {})
        skips = self._skips.get(model, {})
        return {
            "model": model,
            "config": [plan.describe() for plan in plans.values()],
            "timeout_s": self.timeout_s,
            "queue": {"depth": len(self._queue), "max": self.queue_max},
            "skipped": {reason: int(child.value) for reason, child in skips.items()},
            "pairs": self._pairs.summaries(model, plans, self.pool.routes.get(model, _NO_ROUTES)),
        }

    def _log(self, model: str, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self._logged.get((model, kind))
        if last is None or now - last >= _LOG_EVERY_S:
            self._logged[(model, kind)] = now
            log.warning("shadow %s %s (logged at most once a minute): %s", model, kind, message)
