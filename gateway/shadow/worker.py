"""Shadow traffic: a stage's answered requests, predicted again by another stage's version.

The predict path calls `offer()` after the response is sent: two dict lookups, the sample
check (a hash of the request id, only when sampling below 1) and a `deque.append`; when
the queue holds `queue_max` items the request is skipped and counted instead. One worker
task drains the queue on the event loop, one item at a time. Each item: look up the shadow
stage's version and pin it (its in-flight count, in the same loop step, as the predict
path does), predict where `executor` says (predict.py: the shadow thread by default, or
the shadow process, at idle OS priority, so under saturation it gets little CPU, the queue
fills and sheds), validate the output, compare, count, audit.
A failure is counted and logged (at most once a minute per model and kind), never seen by
a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from gateway.pool.loaded import LoadedVersion
from gateway.pool.model_pool import ModelPool
from gateway.pool.route_table import Route
from gateway.schema.request_schema import InputBatch
from gateway.settings import ShadowExecutor
from gateway.shadow.child import ChildConfig, ShadowCall
from gateway.shadow.compare import OutputMismatchError
from gateway.shadow.config import ShadowPlan, ShadowPlans, sample_point
from gateway.shadow.metrics import SKIP_REASONS, ShadowMetrics
from gateway.shadow.pairs import PairBook
from gateway.shadow.predict import Answer, predict_in_process, predict_pinned
from gateway.shadow.priority import ShadowPriority, lower_priority
from gateway.shadow.process import ShadowProcess, ShadowProcessGoneError
from gateway.shadow.stats import WINDOW, PairStats
from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.audit import AuditWriter
from registry_sync.sync.snapshot import DesiredEntry

__all__ = ["Shadow"]

log = logging.getLogger("stageserve.shadow")
_LOG_EVERY_S = 60.0
_NO_ROUTES: dict[str, Route] = {}
FRAME_MAX = 64
# Audit status of a shadow prediction, by error kind (None: compared).
_STATUS: dict[str | None, int] = {None: 200, "input_mismatch": 422, "timeout": 504}

# (plan, primary route, batch, primary predictions, primary inference s, request id, principal,
#  the client's request id)
Item = tuple[ShadowPlan, Route, InputBatch, list[Any], float, str, "str | None", "str | None"]
# The previous item's (plan, primary, shadow, pair, shadow entry): the next one likely shares it.
_Last = tuple[ShadowPlan, LoadedVersion, LoadedVersion, PairStats, DesiredEntry]
# An item being predicted: (item, its pinned shadow version, started at, pair, shadow entry)
_Work = tuple[Item, LoadedVersion, float, PairStats, DesiredEntry]


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
        executor: ShadowExecutor = "inline",
        priority: ShadowPriority = "normal",
        process: ChildConfig | None = None,
    ) -> None:
        """`executor`/`priority`: where shadow calls run and at what OS priority (predict.py,
        priority.py); `process`: the shadow process's load rules (executor `process`)."""
        self.pool = pool
        self.metrics = metrics
        self.audit = audit
        self.plans = plans
        self.queue_max = queue_max
        self.timeout_s = timeout_s
        self._queue: deque[Item] = deque()
        self._wake = asyncio.Event()  # not bound to a loop until awaited (Python >= 3.10)
        self._stopping = False
        self.executor = executor
        self.priority = priority
        self._executor: ThreadPoolExecutor | None = None
        self._child: ShadowProcess | None = None
        if executor == "process":
            config = msgspec.structs.replace(
                process or ChildConfig(), timeout_s=timeout_s, priority=priority
            )
            self._child = ShadowProcess(config)
            pool.add_listener(self._on_activation)
        self._preload_due = executor == "process"
        # Items per worker step: the shadow process gets what queued meanwhile in one frame
        # (one write, one read, one pickle of their shared version entry); a thread or the
        # loop takes one at a time.
        self._take = FRAME_MAX if executor == "process" else 1
        self._shadow_stages = {(m, p.shadow_stage) for m, st in plans.items() for p in st.values()}
        # Counter children resolved once: a skip on the request path is one `.inc()`.
        self._skips = {m: {r: metrics.skipped.labels(m, r) for r in SKIP_REASONS} for m in plans}
        self._pairs = PairBook(metrics, window=window)
        self._logged: dict[tuple[str, str], float] = {}
        self._last: _Last | None = None
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
            # Saturated, this is most requests (and an onnx request is ~30 µs of CPU): the
            # worker's last pair, when it is this one, saves building the pair's key.
            last = self._last
            if (
                last is not None
                and last[0] is plan
                and last[1] is route.loaded
                and last[2] is target.loaded
            ):
                last[3].queue_full += 1
                return
            self.pair(plan, route.loaded, target.loaded).queue_full += 1
            return
        self._queue.append(
            (plan, route, batch, predictions, inference_s, rid, principal, client_rid)
        )
        self._wake.set()

    # -- the worker -----------------------------------------------------------------------

    async def run(self) -> None:
        """Predict queued items until `stop()`; what is still queued then is counted."""
        if self._child is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="shadow",
                initializer=lower_priority,
                initargs=(self.priority,),
            )
        queue = self._queue
        while not self._stopping:
            if self._preload_due and self._child is not None:
                self._preload_due = False
                await self._preload(self._child)
                continue
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            items = [queue.popleft() for _ in range(min(len(queue), self._take))]
            try:
                await self._process(items)
            except Exception:  # a bug here must not stop shadowing (nor reach a client)
                log.exception("shadow of %s failed", items[0][0].model)
                self.metrics.errors.labels(items[0][0].model, "error").inc()
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
        if self._child is not None:
            await self._child.stop(timeout_s if finished else 0.0)

    def _on_activation(self, event: ActivationEvent) -> None:
        """A pool listener: a shadow stage got a new version; the shadow process loads it."""
        if event.kind == "activated" and (event.model, event.stage) in self._shadow_stages:
            self._preload_due = True
            self._wake.set()

    async def _preload(self, child: ShadowProcess) -> None:
        """Start the shadow process and load the versions the shadow stages route to now, so
        the first requests are not the ones that wait for a load."""
        try:
            await child.start()
        except OSError as exc:  # each call will try again, and count its failure
            log.error("the shadow process did not start: %s", exc)
            return
        for stages in self.plans.values():
            for plan in stages.values():
                target = self.pool.routes.get(plan.model, _NO_ROUTES).get(plan.shadow_stage)
                if target is None:
                    continue
                try:
                    entry = self._entry(plan, target.loaded)
                    (result,) = await child.predict([ShadowCall(entry=entry, batch=None)])
                except ShadowProcessGoneError as exc:
                    log.error("the shadow process did not start: %s", exc)
                    return
                if result.kind is not None:  # its calls will fail and be counted
                    self._log(plan.model, result.kind, result.detail)

    def backlog(self) -> int:
        return len(self._queue)

    async def _process(self, items: list[Item]) -> None:
        work = [w for w in map(self._prepare, items) if w is not None]
        if not work:
            return
        if self._child is not None:
            calls = [(w[4], w[1], w[3].comparator, w[0][2]) for w in work]
            answers = await predict_in_process(self._child, calls)
        else:
            answers = [await self._predict_here(w[1], w[3], w[0][2]) for w in work]
        for w, answer in zip(work, answers, strict=True):
            self._finish(w, answer)
        while self.audit.is_full():  # records are never dropped; the queue absorbs this
            await asyncio.sleep(0.001)

    def _prepare(self, item: Item) -> _Work | None:
        """The item's shadow version, pinned, with its pair; None when it is skipped."""
        plan, route = item[0], item[1]
        target = self.pool.routes.get(plan.model, _NO_ROUTES).get(plan.shadow_stage)
        skips = self._skips[plan.model]
        if target is None:
            skips["no_shadow_version"].inc()
            return None
        lv = target.loaded
        if lv is route.loaded:
            skips["same_version"].inc()
            return None
        last = self._last
        if last is not None and last[0] is plan and last[1] is route.loaded and last[2] is lv:
            pair, shadow_entry = last[3], last[4]  # the common case: the last item's pair
        else:
            pair = self.pair(plan, route.loaded, lv)
            shadow_entry = self._entry(plan, lv)
            self._last = (plan, route.loaded, lv, pair, shadow_entry)
        # Pinned in the same loop step as the lookup: ModelPool._release waits for inflight 0.
        # The predict functions unpin it when the call is over (a timed-out thread call: when
        # the thread is done with it).
        lv.inflight += 1
        return item, lv, time.time(), pair, shadow_entry

    def _finish(self, work: _Work, answer: Answer) -> None:
        """Compare, count, log and audit one answered item."""
        item, lv, started_at, pair, _ = work
        plan, _, batch, predictions, primary_s, rid, principal, client_rid = item
        kind, detail, shadow_predictions, shadow_batch, shadow_s = answer
        if kind is None and shadow_predictions is not None:
            try:
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

    async def _predict_here(self, lv: LoadedVersion, pair: PairStats, batch: InputBatch) -> Answer:
        """On the loop or the shadow thread (executor `inline` / `thread`), then validated."""
        kind, detail, out, shadow_batch, shadow_s = await predict_pinned(
            lv,
            pair.comparator,
            batch,
            self._executor,
            self.timeout_s,
            inline=self.executor == "inline",
        )
        if kind is not None:
            return kind, detail, None, shadow_batch, shadow_s
        try:
            shadow_predictions = lv.schema.predictions(out, batch.rows)
        except ValueError as exc:
            return "invalid_output", str(exc), None, shadow_batch, shadow_s
        return None, "", shadow_predictions, shadow_batch, shadow_s

    def _entry(self, plan: ShadowPlan, lv: LoadedVersion) -> DesiredEntry:
        """The sync's entry for the shadow version (the shadow process loads it by the same
        rules: `signed_by` decides `unpickle_trust_signed`); unsigned when it left the state."""
        desired = self.pool.desired
        for e in desired.entries if desired is not None else ():
            if (e.model, e.stage, e.version, e.digest) == (
                lv.model,
                plan.shadow_stage,
                lv.version,
                lv.digest,
            ):
                return e
        return DesiredEntry(
            model=lv.model,
            stage=plan.shadow_stage,
            version=lv.version,
            package_path=lv.package_path,
            digest=lv.digest,
        )

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
