"""The console's rates and latency percentiles, from the gateway's own counters."""

from __future__ import annotations

import pytest

from gateway.telemetry.metrics import GatewayMetrics
from gateway.ui.rates import TrafficSampler, quantile


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    bounds = (0.001, 0.002, 0.004, float("inf"))
    # 10 observations <= 1 ms, 10 in (1, 2] ms: the median is the top of the first bucket,
    # p75 halfway through the second (Prometheus' linear interpolation).
    assert quantile(0.5, bounds, [10, 10, 0, 0]) == pytest.approx(0.001)
    assert quantile(0.75, bounds, [10, 10, 0, 0]) == pytest.approx(0.0015)
    # The +Inf bucket answers with the largest finite bound.
    assert quantile(0.99, bounds, [0, 0, 1, 99]) == pytest.approx(0.004)
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None


def test_rates_are_over_the_last_minute_once_it_exists_else_since_the_start() -> None:
    now = [1000.0]
    metrics = GatewayMetrics()
    sampler = TrafficSampler(metrics, clock=lambda: now[0])  # reading at 1000 s: all zero
    ok = metrics.route("m", "prod", "v1").ok
    failed = metrics.route("m", "prod", "v1").status(500)
    for _ in range(30):
        ok.inc()
    now[0] = 1010.0
    early = sampler.window()
    # Only 10 s of readings: the rate since the start (30 in 10 s).
    assert early.seconds == 10.0
    assert early.rate(lambda k: k[0] == "m") == pytest.approx(3.0)
    for t in (1040.0, 1070.0, 1100.0):
        now[0] = t
        sampler.window()
    for _ in range(60):
        ok.inc()
    failed.inc(6)
    now[0] = 1130.0
    late = sampler.window()
    # The newest reading at least 60 s old is the one at 1070 s: 66 requests in 60 s.
    assert late.seconds == 60.0
    assert late.rate(lambda k: True) == pytest.approx(66 / 60)
    assert late.rate(lambda k: k[3] != "200") == pytest.approx(0.1)


def test_latency_percentiles_come_from_the_windows_bucket_deltas() -> None:
    now = [0.0]
    metrics = GatewayMetrics()
    sampler = TrafficSampler(metrics, clock=lambda: now[0])
    route = metrics.route("m", "prod", "v1")
    for _ in range(100):
        route.duration.observe(0.0001)  # 100 µs: the (50, 100] µs bucket
    now[0] = 5.0
    window = sampler.window()
    p99 = window.latency_quantile(0.99, ("m", "prod", "v1"))
    assert p99 is not None and 50e-6 < p99 <= 100e-6
    assert window.latency_quantile(0.5, ("other", "prod", "v1")) is None
