"""`create_app(settings)`: the one Litestar app, its lifespan, and the objects it owns."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from litestar import Litestar
from litestar.datastructures import State
from prometheus_client.registry import Collector

from gateway.access import Access, build_access
from gateway.drain import Drain
from gateway.edge.direct import DirectLane
from gateway.history.asof.metrics import AsOfMetrics
from gateway.history.asof.pool import AsOfPool
from gateway.history.asof.resolve import AskTheSync, AsOfResolver, PackageSource
from gateway.history.feedback import Feedback, OutcomeMetrics
from gateway.history.signatures import OutputSignatures
from gateway.history.store import GatewayHistory
from gateway.http.asof_route import AsOfPredict
from gateway.http.direct_lane import PredictLane
from gateway.http.errors import exception_handlers
from gateway.http.fast_lane import V2_MODELS_PREFIX, install_fast_lane
from gateway.http.history_routes import history_routes
from gateway.http.metrics_route import metrics_route
from gateway.http.mlflow_route import Invocations, mlflow_routes
from gateway.http.models_routes import models_routes
from gateway.http.predict_route import PredictRoute
from gateway.http.v2_route import V2_MODELS_ROUTE, V2Infer, v2_routes
from gateway.pool.admission import Gates, with_gates
from gateway.pool.batching import with_batching
from gateway.pool.heap import FrozenHeap
from gateway.pool.inference import Inference
from gateway.pool.loaded import Loader, load_version
from gateway.pool.model_pool import ModelPool
from gateway.pool.snapshot_source import DesiredStateSource, SnapshotFileSource
from gateway.pool.stage_gauge import StageLoadedGauge
from gateway.settings import Settings
from gateway.shadow.child import ChildConfig
from gateway.shadow.config import shadow_plans
from gateway.shadow.metrics import ShadowMetrics
from gateway.shadow.worker import Shadow
from gateway.telemetry.activation import ActivationListener
from gateway.telemetry.audit import AuditWriter
from gateway.telemetry.audit_sinks import AuditCollector
from gateway.telemetry.history_sink import HistoryCollector, HistorySink
from gateway.telemetry.merge import Family
from gateway.telemetry.metrics import GatewayMetrics
from gateway.ui.pages import ConsoleData
from gateway.ui.rates import TrafficSampler
from gateway.ui.routes import ui_router
from registry_sync.runtimes.safe_load import LoadPolicy
from registry_sync.sync.exposition import WithoutCreated
from registry_sync.sync.history import HISTORY_FILE
from registry_sync.sync.settings import history_requests_dir
from registry_sync.sync.snapshot import STATUS_FILE, DesiredEntry, SyncStatus

__all__ = ["Gateway", "Siblings", "create_app", "gateway_of", "load_policy"]

log = logging.getLogger("stageserve.app")
_STOP_TIMEOUT_S = 10.0
_RESTART_S = 5.0


class Siblings(Protocol):
    """The other processes of a `--workers N` server, as one worker's app sees them (the
    parent's control channel, gateway/workers/link.py)."""

    lock_dir: Path
    """Where the workers' shared file locks live (one audit file and stdout, N writers)."""

    async def start(self, pool: ModelPool, metrics: Collector) -> None: ...

    async def stop(self) -> None: ...

    async def metric_families(self) -> list[Family]: ...


@dataclass(frozen=True)
class Gateway:
    """The objects one app owns; `gateway_of(app)` returns it (tests, the CLI, the journal)."""

    settings: Settings
    pool: ModelPool
    metrics: GatewayMetrics
    audit: AuditWriter
    source: DesiredStateSource | None
    drain: Drain
    shadow: Shadow | None = None
    access: Access | None = None
    history: GatewayHistory | None = None
    # The predict routes answered from the connection's protocol (serve_cli gives it to the
    # edge; another ASGI server serves them through the app as usual).
    lane: DirectLane | None = None


def gateway_of(app: Litestar) -> Gateway:
    gw: Gateway = app.state["gateway"]
    return gw


async def _follow(source: DesiredStateSource, pool: ModelPool, stop: asyncio.Event) -> None:
    """Hand every desired state to the pool; a source that fails is restarted, serving goes
    on. The pool converges in the background: a newer state (a rollback) is read at once
    and supersedes a slow load, instead of waiting behind it."""
    while not stop.is_set():
        try:
            async for state in source.updates(stop):
                pool.submit(state)
            return
        except Exception:
            log.exception("desired-state source failed; restarting in %.0f s", _RESTART_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _RESTART_S)


async def _retry_failed(pool: ModelPool, stop: asyncio.Event, interval_s: float) -> None:
    """Re-reconcile the current desired state while a stage is failed: a sidecar rewrites the
    snapshot only when the registry changes, so without this a transient load failure (disk,
    memory) would last until the next assignment."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if not stop.is_set() and pool.desired is not None and pool.has_failures():
            try:
                await pool.reconcile(pool.desired)
            except Exception:
                log.exception("retrying failed loads")


def _shadow(
    settings: Settings, pool: ModelPool, metrics: ShadowMetrics, audit: AuditWriter
) -> Shadow | None:
    plans = shadow_plans(
        settings.shadow,
        sample=settings.shadow_sample,
        sample_by_model=settings.shadow_sample_by_model,
    )
    if not plans:
        return None
    return Shadow(
        pool,
        metrics,
        audit,
        plans,
        queue_max=settings.shadow_queue_max,
        timeout_s=settings.shadow_timeout_s,
        executor=settings.shadow_executor,
        priority=settings.shadow_priority,
        process=ChildConfig(
            allow_non_finite=settings.allow_non_finite,
            max_rows=settings.max_rows,
            unpickle_allow=tuple(settings.unpickle_allow),
            unpickle_trust_signed=settings.unpickle_trust_signed,
            log_level=settings.log_level,
        ),
    )


def _loader(settings: Settings, loader: Loader | None) -> Loader:
    return loader or functools.partial(
        load_version,
        allow_non_finite=settings.allow_non_finite,
        max_rows=settings.max_rows,
        policy=load_policy(settings),
        trust_signed=settings.unpickle_trust_signed,
    )


def _live_loader(
    settings: Settings, metrics: GatewayMetrics, loader: Loader, inference: Inference
) -> Loader:
    """The live pool's loader: versions of models with a `batching` rule get a Batcher, and
    those of models with a limit or a timeout their model's Gate."""
    if settings.batching:
        histogram = metrics.batch_requests
        loader = with_batching(
            loader, settings.batching, inference.in_pool, lambda m: histogram.labels(m).observe
        )
    refused = metrics.inference_refused_total
    gates = Gates(settings, lambda model, reason: refused.labels(model, reason).inc())
    if gates.any:
        loader = with_gates(loader, gates)
    return loader


@contextlib.asynccontextmanager
async def _frozen(pool: ModelPool) -> AsyncIterator[None]:
    """Before the first request: the imports and the app live as long as the process."""
    if pool.heap is not None:
        pool.heap.freeze("startup")
    yield


def _pool(
    settings: Settings,
    metrics: GatewayMetrics,
    loader: Loader,
    activation_listeners: Sequence[ActivationListener],
    on_load_failure: Callable[[DesiredEntry], None] | None = None,
) -> ModelPool:
    pool = ModelPool(
        metrics,
        loader,
        retry_failed_load_s=settings.retry_failed_load_s,
        on_load_failure=on_load_failure,
        heap=FrozenHeap(settings.gc_freeze, on_reclaim=metrics.heap_reclaims_total.inc),
    )
    for listener in activation_listeners:
        pool.add_listener(listener)
    # stageserve_stage_loaded, computed from the pool at scrape time.
    metrics.registry.register(StageLoadedGauge(pool))
    return pool


def load_policy(settings: Settings) -> LoadPolicy:
    """What model files may name when they load: the allowlist, widened only on purpose."""
    if settings.unpickle_allow:
        log.warning(
            "model files may also name globals from %s (unpickle_allow): code there may run "
            "while a model loads",
            ", ".join(settings.unpickle_allow),
        )
    if settings.unpickle_trust_signed:
        log.warning(
            "versions whose assignment is signed by an allowed signer load without the "
            "allowlist (unpickle_trust_signed): their model files may run code"
        )
    return LoadPolicy(extra=tuple(settings.unpickle_allow))


def _audit(
    settings: Settings,
    metrics: GatewayMetrics,
    sink: HistorySink | None,
    siblings: Siblings | None = None,
) -> AuditWriter:
    audit = AuditWriter(
        settings.audit_path,
        stdout=settings.audit_stdout,
        max_bytes=settings.audit_max_bytes,
        backups=settings.audit_backups,
        include_inputs=settings.audit_include_inputs,
        include_predictions=settings.audit_include_predictions,
        queue_max=settings.audit_queue_max,
        failure_mode=settings.audit_failure_mode,
        extra_sinks=[sink.audit_sink()] if sink is not None else (),
        lock_dir=siblings.lock_dir if siblings is not None else None,
    )
    metrics.registry.register(AuditCollector(audit.health))
    return audit


def _console(
    settings: Settings,
    pool: ModelPool,
    metrics: GatewayMetrics,
    shadow: Shadow | None,
    sync_status_path: Path | None,
    *,
    outcomes: GatewayHistory,
) -> ConsoleData:
    return ConsoleData(
        pool,
        TrafficSampler(metrics),
        shadow=shadow,
        # Written by the sync beside its status file (same cache folder, both modes).
        history_path=sync_status_path.parent / HISTORY_FILE if sync_status_path else None,
        journal_path=Path(settings.journal_path) if settings.journal_path else None,
        outcomes=outcomes,
    )


@dataclass
class _History:
    """What answers questions about the past: the PostgreSQL sink (if any), the store, the
    outcome service, the as-of pool."""

    sink: HistorySink | None
    store: GatewayHistory
    feedback: Feedback
    asof_pool: AsOfPool

    def start(self) -> None:
        if self.sink is not None:
            self.sink.start()

    def close(self) -> None:
        self.asof_pool.close()
        self.store.close()

    def health(self) -> dict[str, Any] | None:
        if self.sink is not None:
            return self.sink.health()
        return {"store": "files"} if self.store.reader is not None else None

    async def stop_sink(self) -> None:
        """After the audit writer stopped: its last records are spooled by then."""
        if self.sink is not None:
            await self.sink.stop()


def _sink(
    settings: Settings, metrics: GatewayMetrics, pool: ModelPool, siblings: Siblings | None
) -> HistorySink | None:
    sink = HistorySink.from_settings(settings)
    if sink is not None:
        metrics.registry.register(HistoryCollector(sink.shipper.snapshot))
        if siblings is None:  # --workers N: the parent ships the one merged journal
            pool.add_listener(sink.journal_listener)
    return sink


def _linked(siblings: Siblings | None, pool: ModelPool, metrics: GatewayMetrics) -> list[Any]:
    """The lifespan of the link to the other workers (none alone): around everything else,
    so the pool's first activations reach the parent and the last audit flush comes before
    the link closes."""
    if siblings is None:
        return []

    @contextlib.asynccontextmanager
    async def linked(_: Litestar) -> AsyncIterator[None]:
        await siblings.start(pool, WithoutCreated(metrics.registry))
        try:
            yield
        finally:
            await siblings.stop()

    return [linked]


def _history(
    settings: Settings,
    *,
    pool: ModelPool,
    loader: Loader,
    metrics: GatewayMetrics,
    audit: AuditWriter,
    access: Access | None,
    sink: HistorySink | None,
    predict: PredictRoute,
    past_packages: PackageSource | None,
) -> _History:
    """The history store, the outcome service, and `?as_of=` on every predict route (its
    pool of past versions, whose packages come from the registry in embedded mode and from
    the sync in sidecar mode)."""
    store = GatewayHistory.from_settings(
        settings, [sink.spools["outcomes"]] if sink is not None else ()
    )

    async def settle() -> None:
        # A request answered a moment ago: its record is being flushed (and shipped).
        await audit.settled()
        if sink is not None:
            await sink.settled()

    feedback = Feedback(
        store,
        OutputSignatures(pool),
        OutcomeMetrics(metrics.registry),
        access=access,
        wanted_models=pool.wanted_models,
        settle=settle,
    )
    asof_metrics = AsOfMetrics(metrics.registry)
    asof_pool = AsOfPool(
        pool,
        loader,
        asof_metrics,
        max_versions=settings.asof_max_versions,
        max_bytes=settings.asof_max_bytes,
    )
    if past_packages is None and settings.registry is None and settings.cache_dir is not None:
        requests = history_requests_dir(settings, Path(settings.cache_dir))
        past_packages = AskTheSync(requests, settings.asof_timeout_s)
    resolver = AsOfResolver(store, past_packages, asof_pool)
    predict.as_of = AsOfPredict(predict, resolver, asof_metrics)
    return _History(sink, store, feedback, asof_pool)


async def _stopped(task: asyncio.Task[None]) -> None:
    """Wait for the desired-state follower to stop (cancelled after _STOP_TIMEOUT_S)."""
    try:
        await asyncio.wait_for(task, _STOP_TIMEOUT_S)
    except (TimeoutError, asyncio.CancelledError):
        log.warning("desired-state source did not stop in time; cancelled")
    except Exception:
        log.exception("desired-state source failed")


def _status_path(settings: Settings, given: Path | None) -> Path | None:
    if given is None and settings.cache_dir is not None:
        return Path(settings.cache_dir) / STATUS_FILE
    return given


def _predict_routes(
    settings: Settings,
    pool: ModelPool,
    metrics: GatewayMetrics,
    audit: AuditWriter,
    *,
    inference: Inference,
    shadow: Shadow | None,
    access: Access | None,
) -> tuple[PredictRoute, V2Infer, Invocations, PredictLane]:
    """The predict route, the two other protocols' infer routes that go through it, and the
    direct lane that answers all three from the connection (gateway/edge/direct.py)."""
    predict = PredictRoute(
        pool,
        metrics,
        audit,
        inference,
        default_stage=settings.default_stage,
        max_body_bytes=settings.max_body_bytes,
        retry_after_s=settings.retry_after_s,
        shadow=shadow,
        access=access,
    )
    invocations = Invocations(pool, predict, metrics, default_model=settings.default_model)
    v2_infer = V2Infer(predict)
    return predict, v2_infer, invocations, PredictLane(predict, v2_infer, invocations)


def create_app(
    settings: Settings,
    *,
    state_source: DesiredStateSource | None = None,
    metrics: GatewayMetrics | None = None,
    loader: Loader | None = None,
    activation_listeners: Sequence[ActivationListener] = (),
    fast_lane: bool = True,
    sync_status_path: Path | None = None,
    sync_status: Callable[[], SyncStatus | None] | None = None,
    on_load_failure: Callable[[DesiredEntry], None] | None = None,
    past_packages: PackageSource | None = None,
    siblings: Siblings | None = None,
) -> Litestar:
    """Build the app. `state_source` defaults to the snapshot in `settings.cache_dir`;
    `metrics` lets a caller register more collectors (sync metrics) on the same registry;
    `fast_lane=False` sends predict requests through Litestar's router too (see fast_lane.py);
    `sync_status_path` is the sync loop's status file (default `<cache_dir>/sync-status.json`),
    shown in /models so a registry outage is visible there; `sync_status`, when given (the
    embedded sync loop's own record), is shown instead of the file; `on_load_failure` is
    told of every version that fails to load (embedded: the sync re-verifies its package);
    `siblings`: the other processes of a `--workers N` server (one journal, one readiness,
    one /metrics, shared locks for the audit file)."""
    metrics = metrics or GatewayMetrics()
    loader = _loader(settings, loader)
    inference = Inference(settings.inference_threads)
    live_loader = _live_loader(settings, metrics, loader, inference)
    pool = _pool(settings, metrics, live_loader, activation_listeners, on_load_failure)
    if state_source is None and settings.cache_dir is not None:
        state_source = SnapshotFileSource(settings.cache_dir)
    sink = _sink(settings, metrics, pool, siblings)
    audit = _audit(settings, metrics, sink, siblings)
    access = build_access(settings)
    # Always registered (shadow on or off), so dashboards and alerts find the series.
    shadow = _shadow(settings, pool, ShadowMetrics(metrics.registry), audit)
    predict, v2_infer, invocations, lane = _predict_routes(
        settings, pool, metrics, audit, inference=inference, shadow=shadow, access=access
    )
    drain = Drain()
    history = _history(
        settings,
        pool=pool,
        loader=loader,
        metrics=metrics,
        audit=audit,
        access=access,
        sink=sink,
        predict=predict,
        past_packages=past_packages,
    )
    gateway = Gateway(
        settings, pool, metrics, audit, state_source, drain, shadow, access, history.store, lane
    )
    sync_status_path = _status_path(settings, sync_status_path)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        audit.open()
        history.start()
        flusher = asyncio.create_task(audit.run(), name="audit-flush") if audit.enabled else None
        shadowing = asyncio.create_task(shadow.run(), name="shadow") if shadow else None
        stop = asyncio.Event()
        task = None
        retry = asyncio.create_task(
            _retry_failed(pool, stop, settings.retry_failed_load_s), name="retry-failed"
        )
        if state_source is not None:
            task = asyncio.create_task(_follow(state_source, pool, stop), name="follow-state")
        reloading = None
        if access is not None:
            reloading = asyncio.create_task(access.run(stop), name="reload-credentials")
        try:
            yield
        finally:
            stop.set()
            await retry
            if reloading is not None:
                await reloading
            if task is not None:
                await _stopped(task)
            if shadow is not None:  # before the pool: a shadow call may hold a version
                await shadow.stop(shadowing)
            await pool.close()
            inference.close()
            history.close()
            # Last: every answered request has queued its record by now.
            await audit.stop(flusher)
            await history.stop_sink()

    app = Litestar(
        route_handlers=[
            predict.handler(),
            *v2_routes(pool, predict, v2_infer),
            *mlflow_routes(pool, invocations),
            *models_routes(
                pool,
                default_stage=settings.default_stage,
                drain=drain,
                sync_status_path=sync_status_path,
                shadow=shadow,
                access=access,
                audit=audit,
                sync_status=sync_status,
                history=history.health,
            ),
            metrics_route(metrics, others=siblings.metric_families if siblings else None),
            ui_router(
                _console(settings, pool, metrics, shadow, sync_status_path, outcomes=history.store),
                access=access,
            ),
            metrics_route(metrics, access, siblings.metric_families if siblings else None),
            *history_routes(
                pool,
                history.store,
                history.feedback,
                access=access,
                max_body_bytes=settings.max_body_bytes,
                max_items=settings.feedback_max_items,
            ),
        ],
        lifespan=[*_linked(siblings, pool, metrics), _frozen(pool), lifespan],
        exception_handlers=exception_handlers(),
        openapi_config=None,
        # Logging is configured once by the CLI (JSON lines); the app adds no handlers.
        logging_config=None,
        state=State({"gateway": gateway}),
    )
    if fast_lane:
        install_fast_lane(app, predict, {V2_MODELS_PREFIX: V2_MODELS_ROUTE})
    return app
