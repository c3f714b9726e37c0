"""The sync sidecar's /healthz and /metrics, called as a WSGI app (no socket)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from registry_sync.sync.http_server import _app
from registry_sync.sync.loop import SyncLoop
from registry_sync.sync.metrics import SyncMetrics
from registry_sync.sync.setup import build_sync
from tests.registry_packages import init_registry


def _call(app: Any, path: str) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], seen["headers"], body


def _loop(tmp_path: Path) -> SyncLoop:
    registry = init_registry(tmp_path / "registry")
    return SyncLoop(build_sync(str(registry), tmp_path / "cache"), tmp_path / "cache")


def test_a_loop_that_keeps_polling_is_healthy_and_a_stuck_one_is_not(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    started = loop.progress_at
    # The longest legitimate silence: the longest backoff wait (with jitter), then a poll.
    quiet_s = loop.max_backoff_s * (1 + loop.jitter_fraction) + loop.max_poll_s
    assert loop.stalled_for_s(started + quiet_s - 1) == 0
    # (started + quiet_s + 30) - (started + quiet_s) is 30 only to within rounding at the size
    # of a monotonic clock reading (seen: 29.99999999999909); a microsecond is far below a stall.
    assert loop.stalled_for_s(started + quiet_s + 30) == pytest.approx(30, abs=1e-6)


def test_healthz_answers_503_with_the_reason_once_the_loop_is_stuck(tmp_path: Path) -> None:
    state = {"ok": True}

    def health() -> tuple[bool, dict[str, Any]]:
        return state["ok"], {"stalled_s": 0 if state["ok"] else 12.5}

    app = _app(CollectorRegistry(), health)
    status, headers, body = _call(app, "/healthz")
    assert status.startswith("200") and headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == "ok"
    state["ok"] = False
    status, _, body = _call(app, "/healthz")
    assert status.startswith("503")
    assert json.loads(body) == {"status": "stalled", "stalled_s": 12.5}
    assert _call(app, "/nope")[0].startswith("404")


def test_sync_metrics_scrape_has_no_created_series(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    SyncMetrics(registry).record_poll("ok", now_s=1.0, failures=0)
    status, headers, body = _call(_app(registry, lambda: (True, {})), "/metrics")
    assert status.startswith("200")
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    assert "_created" not in text
    samples = {
        (s.name, s.labels.get("result")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("stageserve_sync_polls_total", "ok")] == 1
    assert samples[("stageserve_sync_last_success_timestamp_seconds", None)] == 1.0
