"""As-of requests' own metrics: kept apart from the live ones, so historical traffic and
loads never blur what the serving versions do."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.telemetry.fast_metrics import CounterChild, FastCounter, FastHistogram
from gateway.telemetry.metrics import LATENCY_BUCKETS_S, LOAD_BUCKETS_S, ROW_BUCKETS, RouteMetrics

__all__ = ["AsOfMetrics", "AsOfRouteMetrics"]

_P = "stageserve_asof_"


class AsOfMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests_total = FastCounter(
            _P + "requests_total",
            "As-of predict requests by model, basis and status.",
            ["model", "basis", "status"],
            registry=registry,
        )
        self.duration = FastHistogram(
            _P + "request_duration_seconds",
            "As-of predict latency, end to end (a cold load included).",
            ["model", "basis"],
            LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.inference = FastHistogram(
            _P + "inference_duration_seconds",
            "Inference latency of past versions.",
            ["model", "version"],
            LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.rows = FastHistogram(
            _P + "request_rows",
            "Rows per as-of request.",
            ["model"],
            ROW_BUCKETS,
            registry=registry,
        )
        self.loads = Counter(
            _P + "loads",
            "Past versions loaded into the as-of pool (result: ok, failed).",
            ["model", "result"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            _P + "load_duration_seconds",
            "Time to fetch, verify, load and warm up a past version.",
            ["model"],
            buckets=LOAD_BUCKETS_S,
            registry=registry,
        )
        self.evictions = Counter(
            _P + "evictions", "Past versions evicted from the as-of pool.", registry=registry
        )
        self.versions = Gauge(
            _P + "pool_versions", "Past versions loaded in the as-of pool.", registry=registry
        )
        self.bytes = Gauge(
            _P + "pool_bytes",
            "Estimated memory of the as-of pool's versions.",
            registry=registry,
        )


class AsOfRouteMetrics(RouteMetrics):
    """What the predict path updates for one as-of answer, on the as-of metrics."""

    def __init__(self, m: AsOfMetrics, model: str, basis: str, version: str) -> None:
        self._asof = m
        self.model, self.stage, self.version = model, basis, version
        self.ok = m.requests_total.labels(model, basis, "200")
        self.duration = m.duration.labels(model, basis)
        self.inference = m.inference.labels(model, version)
        self.rows = m.rows.labels(model)
        self._by_status = {200: self.ok}

    def status(self, code: int) -> CounterChild:
        child = self._by_status.get(code)
        if child is None:
            child = self._asof.requests_total.labels(self.model, self.stage, str(code))
            self._by_status[code] = child
        return child
