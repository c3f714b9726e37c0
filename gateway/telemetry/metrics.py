"""The gateway's Prometheus metrics, on a CollectorRegistry owned by the app (never the global).

Hot-path children are resolved once per route (`RouteMetrics`) when a version is routed to,
so a request pays for `.inc()`/`.observe()` only, never for a `.labels()` lookup.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.telemetry.fast_metrics import CounterChild, FastCounter, FastHistogram

__all__ = [
    "LATENCY_BUCKETS_S",
    "MAX_CLIENTS",
    "OTHER_CLIENT",
    "UNKNOWN",
    "GatewayMetrics",
    "RouteMetrics",
]

# 50 µs doubling up to ~6.5 s: a 4-feature onnx request takes well under a millisecond.
LATENCY_BUCKETS_S: tuple[float, ...] = tuple(50e-6 * 2**i for i in range(18))
ROW_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LOAD_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Label value for a model or stage the client named but that does not exist: keeps the label
# set bounded however many names clients make up.
UNKNOWN = "_unknown"
# Distinct `client` labels kept; later clients are counted as OTHER_CLIENT. API keys name
# their principals (a bounded list), JWTs their client id claim (bounded by the issuer).
MAX_CLIENTS = 200
OTHER_CLIENT = "_other"
_P = "stageserve_"


class GatewayMetrics:
    """The gateway's own metrics; one instance per app.

    Other parts register theirs on `self.registry` so `/metrics` shows them too: the sync
    loop's `SyncMetrics` (embedded mode) and shadow traffic's `ShadowMetrics`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # The four metrics every predict request updates are FastCounter/FastHistogram
        # (see fast_metrics.py); the rest change rarely and use prometheus-client directly.
        self.requests_total = FastCounter(
            _P + "requests_total",
            "Predict requests by model, stage, served version and status.",
            ["model", "stage", "version", "status"],
            registry=r,
        )
        self.request_duration_seconds = FastHistogram(
            _P + "request_duration_seconds",
            "Predict request latency, end to end.",
            ["model", "stage", "version"],
            LATENCY_BUCKETS_S,
            registry=r,
        )
        self.inference_duration_seconds = FastHistogram(
            _P + "inference_duration_seconds",
            "Model inference latency of the served version.",
            ["model", "version"],
            LATENCY_BUCKETS_S,
            registry=r,
        )
        self.validation_errors_total = Counter(
            _P + "validation_errors",
            "Rejected predict requests by kind of validation error.",
            ["model", "kind"],
            registry=r,
        )
        self.extra_columns_total = Counter(
            _P + "extra_columns",
            "Requests to MLflow's /invocations whose input columns the signature does not "
            "have were ignored (as MLflow does).",
            ["model"],
            registry=r,
        )
        self.request_rows = FastHistogram(
            _P + "request_rows", "Rows per predict request.", ["model"], ROW_BUCKETS, registry=r
        )
        self.batch_requests = FastHistogram(
            _P + "batch_requests",
            "Requests answered by one batched model call (models with a batching rule).",
            ["model"],
            BATCH_BUCKETS,
            registry=r,
        )
        self.inference_refused_total = Counter(
            _P + "inference_refused",
            "Predict requests refused by a model's limits (pool/admission.py): reason "
            "model_overloaded (503, max_concurrent_inferences) or inference_timeout (504).",
            ["model", "reason"],
            registry=r,
        )
        self.model_info = Gauge(
            _P + "model_info",
            "1 for the version and digest each (model, stage) serves.",
            ["model", "stage", "version", "digest"],
            registry=r,
        )
        self.model_load_duration_seconds = Histogram(
            _P + "model_load_duration_seconds",
            "Time to load and warm up a model version.",
            ["model"],
            buckets=LOAD_BUCKETS_S,
            registry=r,
        )
        self.model_load_failures_total = Counter(
            _P + "model_load_failures",
            "Versions that failed to load or warm up.",
            ["model", "version"],
            registry=r,
        )
        self.heap_reclaims_total = Counter(
            _P + "heap_reclaims",
            "Released versions a reference cycle kept alive in the frozen heap, reclaimed by "
            "one full garbage collection (gc_freeze; each is one pause of the event loop).",
            registry=r,
        )
        self.client_requests_total = FastCounter(
            _P + "client_requests_total",
            "Predict requests by authenticated client and model (auth on only).",
            ["client", "model"],
            registry=r,
        )
        self._clients: set[str] = set()
        self.stage_activations_total = Counter(
            _P + "stage_activations",
            "Times a version started serving a (model, stage): the first load and every swap.",
            ["model", "stage"],
            registry=r,
        )
        self.model_loads_discarded_total = Counter(
            _P + "model_loads_discarded",
            "Loads finished after the registry had moved on (never routed to, released).",
            ["model"],
            registry=r,
        )
        self.inflight_requests = Gauge(
            _P + "inflight_requests",
            "Predict requests being answered right now.",
            registry=r,
        )

    def client_request(self, client: str, model: str) -> None:
        """Count one request of `client` (at most MAX_CLIENTS distinct labels) to `model`
        (a model the desired state knows, or UNKNOWN)."""
        if client not in self._clients:
            if len(self._clients) >= MAX_CLIENTS:
                client = OTHER_CLIENT
            else:
                self._clients.add(client)
        self.client_requests_total.labels(client, model).inc()

    def track_inflight(self, read: Callable[[], float]) -> None:
        """Read the in-flight count at scrape time (no per-request gauge update)."""
        self.inflight_requests.set_function(read)

    def route(self, model: str, stage: str, version: str) -> RouteMetrics:
        return RouteMetrics(self, model, stage, version)


class RouteMetrics:
    """The children one (model, stage, version) route updates on every request."""

    __slots__ = (
        "_by_status",
        "_m",
        "duration",
        "inference",
        "model",
        "ok",
        "rows",
        "stage",
        "version",
    )

    def __init__(self, m: GatewayMetrics, model: str, stage: str, version: str) -> None:
        self._m = m
        self.model, self.stage, self.version = model, stage, version
        self.ok = m.requests_total.labels(model, stage, version, "200")
        self.duration = m.request_duration_seconds.labels(model, stage, version)
        self.inference = m.inference_duration_seconds.labels(model, version)
        self.rows = m.request_rows.labels(model)
        self._by_status: dict[int, CounterChild] = {200: self.ok}

    def status(self, code: int) -> CounterChild:
        child = self._by_status.get(code)
        if child is None:
            child = self._m.requests_total.labels(self.model, self.stage, self.version, str(code))
            self._by_status[code] = child
        return child
