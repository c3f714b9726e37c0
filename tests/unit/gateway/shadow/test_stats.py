"""Per-pair statistics: exact means over the whole life, quantiles over a bounded window."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gateway.schema.request_schema import RequestSchema
from gateway.shadow.compare import Comparator, Differences
from gateway.shadow.metrics import ShadowMetrics
from gateway.shadow.stats import PairStats, Ring
from tests.unit.gateway.fakes import SIGNATURE


def test_a_ring_keeps_the_last_values_whatever_the_chunk_sizes() -> None:
    ring = Ring(5)
    seen: list[float] = []
    for chunk in ([1.0], [2.0, 3.0, 4.0], [5.0, 6.0], list(range(7, 20)), [20.0]):
        ring.extend([float(v) for v in chunk])
        seen += chunk
        assert sorted(ring.window().tolist()) == sorted(seen[-5:])
    ring.add(21.0)
    assert sorted(ring.window().tolist()) == [17.0, 18.0, 19.0, 20.0, 21.0]
    assert ring.count == 21


def _pair(window: int = 10_000) -> tuple[PairStats, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    schema = RequestSchema(SIGNATURE)
    key = ("cost", "prod", "v1", "sha256:1", "dev", "v2", "sha256:2")
    pair = PairStats(
        key, Comparator(schema, schema), metrics.pair("cost", "prod", "v1", "v2"), window=window
    )
    return pair, registry


def test_the_summary_has_exact_means_and_window_quantiles() -> None:
    pair, registry = _pair(window=100)
    rng = np.random.default_rng(1)
    chunks = [rng.exponential(size=int(n)) for n in rng.integers(1, 9, size=40)]
    for i, chunk in enumerate(chunks):
        pair.record(
            Differences(chunk.tolist(), (chunk / 10).tolist(), 0, 0),
            0.001 * (i + 1),
            0.002 * (i + 1),
        )
    everything = np.concatenate(chunks)
    summary = pair.summary(current=True)
    assert summary["requests"] == 40
    assert summary["values"] == len(everything)
    assert summary["abs_diff"]["mean"] == pytest.approx(everything.mean())
    assert summary["abs_diff"]["max"] == pytest.approx(everything.max())
    p50, p99 = np.quantile(everything[-100:], [0.5, 0.99])
    assert summary["abs_diff"]["p50"] == pytest.approx(p50)
    assert summary["abs_diff"]["p99"] == pytest.approx(p99)
    assert summary["rel_diff"]["mean"] == pytest.approx(everything.mean() / 10)
    assert summary["latency_ms"]["shadow"]["p50"] == pytest.approx(2 * 20.5)
    assert summary["labels"] is None
    labels = {"model": "cost", "stage": "prod", "primary_version": "v1", "shadow_version": "v2"}
    count = registry.get_sample_value("stageserve_shadow_abs_diff_count", labels)
    assert count == len(everything)


def test_label_agreement_is_summarised_and_counted() -> None:
    pair, registry = _pair()
    empty: list[float] = []
    pair.record(Differences(empty, empty, 4, 3), 0.001, 0.001)
    pair.record(Differences(empty, empty, 4, 4), 0.001, 0.001)
    summary = pair.summary(current=False)
    assert summary["labels"] == {"compared": 8, "agreements": 7, "agreement_rate": 7 / 8}
    assert summary["abs_diff"] is None and summary["current"] is False
    labels = {"model": "cost", "stage": "prod", "primary_version": "v1", "shadow_version": "v2"}
    assert registry.get_sample_value("stageserve_shadow_agreements_total", labels) == 7
