"""Shadow traffic's Prometheus metrics, registered on the app's registry with the rest.

Updated only on the event loop (the shadow worker and the predict path), so they are the
lock-free FastCounter/FastHistogram of fast_metrics.py. Pair series carry `stage` (the
primary stage) beside the two versions: the StageserveShadowDivergence alert sums by
(model, stage).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from gateway.telemetry.fast_metrics import FastCounter, FastHistogram

__all__ = [
    "ABS_DIFF_BUCKETS",
    "ERROR_KINDS",
    "REL_DIFF_BUCKETS",
    "SKIP_REASONS",
    "PairMetrics",
    "ShadowMetrics",
]

# 0 (equal), then half decades from 1e-6 to 1e6 in the model's output units: 1 is a bound, the
# alert's default threshold.
ABS_DIFF_BUCKETS: tuple[float, ...] = (
    0.0,
    *(float(f"{10 ** (e / 2):.3g}") for e in range(-12, 13)),
)
REL_DIFF_BUCKETS: tuple[float, ...] = (
    0.0, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
)  # fmt: skip
LATENCY_BUCKETS_S: tuple[float, ...] = tuple(50e-6 * 2**i for i in range(18))
ERROR_KINDS = ("error", "timeout", "invalid_output", "input_mismatch", "output_mismatch")
SKIP_REASONS = ("not_sampled", "no_shadow_version", "same_version", "queue_full", "shutdown")
_P = "stageserve_shadow_"
_PAIR = ("model", "stage", "primary_version", "shadow_version")


class ShadowMetrics:
    """Every shadow metric; created by GatewayMetrics so /metrics always lists them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.abs_diff = FastHistogram(
            _P + "abs_diff",
            "Absolute difference between primary and shadow numeric predictions (per value).",
            _PAIR,
            ABS_DIFF_BUCKETS,
            registry=r,
        )
        self.rel_diff = FastHistogram(
            _P + "rel_diff",
            "Relative difference |s - p| / max(|p|, |s|) of numeric predictions (0 when both 0).",
            _PAIR,
            REL_DIFF_BUCKETS,
            registry=r,
        )
        self.comparisons = FastCounter(
            _P + "comparisons_total",
            "Label (class) predictions compared between primary and shadow.",
            _PAIR,
            registry=r,
        )
        self.agreements = FastCounter(
            _P + "agreements_total",
            "Label (class) predictions on which primary and shadow agree.",
            _PAIR,
            registry=r,
        )
        self.latency = FastHistogram(
            _P + "latency_seconds",
            "Inference latency of the requests compared, primary and shadow (role).",
            (*_PAIR, "role"),
            LATENCY_BUCKETS_S,
            registry=r,
        )
        self.errors = FastCounter(
            _P + "errors_total",
            "Shadow predictions that failed, by kind (never visible to clients).",
            ("model", "kind"),
            registry=r,
        )
        self.skipped = FastCounter(
            _P + "skipped_total",
            "Requests of a shadowed stage not shadowed, by reason.",
            ("model", "reason"),
            registry=r,
        )
        self.queue_depth = Gauge(
            _P + "queue_depth", "Shadow predictions waiting for the shadow worker.", registry=r
        )

    def track_queue(self, read: Callable[[], float]) -> None:
        self.queue_depth.set_function(read)

    def pair(self, model: str, stage: str, primary: str, shadow: str) -> PairMetrics:
        return PairMetrics(self, model, stage, primary, shadow)


class PairMetrics:
    """The children one (model, stage, primary version, shadow version) pair updates."""

    __slots__ = (
        "abs_diff",
        "agreements",
        "comparisons",
        "primary_latency",
        "rel_diff",
        "shadow_latency",
    )

    def __init__(self, m: ShadowMetrics, model: str, stage: str, primary: str, shadow: str):
        labels = (model, stage, primary, shadow)
        self.abs_diff = m.abs_diff.labels(*labels)
        self.rel_diff = m.rel_diff.labels(*labels)
        self.comparisons = m.comparisons.labels(*labels)
        self.agreements = m.agreements.labels(*labels)
        self.primary_latency = m.latency.labels(*labels, "primary")
        self.shadow_latency = m.latency.labels(*labels, "shadow")
