"""Metrics of several processes as one: counters add up, gauges follow their rule."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from gateway.app import create_app
from gateway.settings import load_settings
from gateway.telemetry.merge import GAUGE_MERGE, MergedCollector, merge, to_wire
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.exposition import WithoutCreated
from registry_sync.sync.metrics import SyncMetrics


def _process(requests: float, inflight: float, loaded: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    c = Counter("stageserve_requests", "r", ["model"], registry=registry)
    c.labels("m").inc(requests)
    Gauge("stageserve_inflight_requests", "i", registry=registry).set(inflight)
    Gauge("stageserve_stage_loaded", "l", ["model"], registry=registry).labels("m").set(loaded)
    Gauge("stageserve_model_info", "i", ["version"], registry=registry).labels("v1").set(1)
    return registry


def test_counters_add_up_and_gauges_follow_their_rule() -> None:
    a = to_wire(WithoutCreated(_process(3, 2, 1)).collect())
    b = to_wire(WithoutCreated(_process(4, 5, 0)).collect())
    merged = {f.name: {s.name: s.value for s in f.samples} for f in merge([a, b])}
    assert merged["stageserve_requests"]["stageserve_requests_total"] == 7
    assert merged["stageserve_inflight_requests"]["stageserve_inflight_requests"] == 7
    # loaded only while every worker serves the assigned version
    assert merged["stageserve_stage_loaded"]["stageserve_stage_loaded"] == 0
    # a version serves when any worker serves it (1, never 2)
    assert merged["stageserve_model_info"]["stageserve_model_info"] == 1


def test_the_exposition_of_a_merge_is_prometheus_text_with_the_totals() -> None:
    local = WithoutCreated(_process(3, 0, 1))
    text = generate_latest(MergedCollector(local, to_wire(_process(4, 0, 1).collect())))
    assert b'stageserve_requests_total{model="m"} 7.0' in text
    only = MergedCollector(local, []).restricted_registry(["stageserve_inflight_requests"])
    assert [f.name for f in only.collect()] == ["stageserve_inflight_requests"]


def test_every_gauge_the_gateway_exposes_says_how_processes_merge(tmp_path: Path) -> None:
    """A new gauge must choose: summed over workers, or their max, or their min."""
    settings = load_settings({"cache_dir": str(tmp_path), "audit_path": str(tmp_path / "a")})
    metrics = GatewayMetrics()
    SyncMetrics(metrics.registry)
    create_app(settings, metrics=metrics)
    gauges = {f.name for f in metrics.registry.collect() if f.type == "gauge"}
    assert gauges, "no gauge found: the test looks at the wrong registry"
    assert gauges - set(GAUGE_MERGE) == set()
