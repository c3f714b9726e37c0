"""FastCounter / FastHistogram expose what prometheus-client's own types would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.fast_metrics import FastCounter, FastHistogram


def test_counters_and_histograms_read_back_through_the_text_format() -> None:
    registry = CollectorRegistry()
    counter = FastCounter("x_requests_total", "Requests.", ["model", "status"], registry)
    hist = FastHistogram("x_seconds", "Latency.", ["model"], [0.001, 0.01], registry)
    ok = counter.labels("cost", "200")
    for _ in range(3):
        ok.inc()
    counter.labels("cost", "422").inc()
    child = hist.labels("cost")
    for value in (0.0005, 0.001, 0.005, 2.0):
        child.observe(value)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for s in families["x_requests"].samples
    }
    assert samples[("x_requests_total", (("model", "cost"), ("status", "200")))] == 3
    assert samples[("x_requests_total", (("model", "cost"), ("status", "422")))] == 1
    buckets = {s.labels["le"]: s.value for s in families["x_seconds"].samples if "le" in s.labels}
    assert buckets == {"0.001": 2, "0.01": 3, "+Inf": 4}
    assert registry.get_sample_value("x_seconds_count", {"model": "cost"}) == 4
    assert registry.get_sample_value("x_seconds_sum", {"model": "cost"}) == 2.0065
