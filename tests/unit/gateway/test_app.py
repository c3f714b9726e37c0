"""create_app end to end in process (Litestar's test client, no sockets), both predict lanes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app, gateway_of
from gateway.pool.model_pool import ModelPool
from gateway.settings import Settings
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.snapshot import DesiredState
from tests.unit.gateway.fakes import FakeLoader, entry, state


async def _exchange(fast_lane: bool, calls: list[tuple[str, str, Any]]) -> list[Any]:
    app = create_app(Settings(), loader=FakeLoader(), fast_lane=fast_lane)
    out = []
    async with AsyncTestClient(app) as client:
        pool = gateway_of(app).pool
        await pool.reconcile(state(entry("cost", "prod", "v2"), entry("cost", "staging", "v3")))
        pool.routes["cost"]["staging"].loaded.inline_max_rows = 0  # staging runs on the pool
        for method, path, body in calls:
            resp = await client.request(method, path, json=body)
            body_out = resp.json() if resp.content else None
            out.append((resp.status_code, body_out, resp.headers.get("x-model-version")))
    return out


@pytest.mark.parametrize("fast_lane", [True, False])
def test_both_predict_lanes_answer_the_same(fast_lane: bool) -> None:
    rows = {"inputs": [{"hp": 10.0, "wt": 1.0}]}
    calls = [
        ("POST", "/predict/cost", rows),
        ("POST", "/predict/cost?stage=staging", rows),
        ("POST", "/predict/nope", rows),
        ("GET", "/predict/cost", None),
        ("POST", "/predict/cost/extra", rows),
        ("GET", "/models/cost", None),
        (
            "POST",
            "/v2/models/cost/infer",
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [10.0, 1.0]}]},
        ),
        ("GET", "/v2/models/cost/ready?stage=staging", None),
    ]
    ok, staging, unknown, get, extra, model, v2, ready = asyncio.run(_exchange(fast_lane, calls))
    assert ok[0] == 200
    assert ok[1]["predictions"] == [20.0]  # the fake predicts hp * version number
    assert ok[2] == "v2"
    assert staging[1]["predictions"] == [30.0]
    assert unknown[0] == 404
    assert unknown[1]["error"]["details"]["models"] == {"cost": ["prod", "staging"]}
    assert get[0] == 405
    assert extra[0] == 404
    assert model[0] == 200
    assert model[1]["stages"]["prod"]["version"] == "v2"
    assert (v2[0], v2[1]["outputs"][0]["data"], v2[2]) == (200, [20.0], "v2")
    assert (ready[0], ready[2]) == (200, "v3")  # an empty body; the version in a header


class _FlakySource:
    """Fails once, then yields one state and waits for stop (a real source's shape)."""

    def __init__(self) -> None:
        self.calls = 0

    async def updates(self, stop: asyncio.Event) -> AsyncIterator[DesiredState]:
        self.calls += 1
        if self.calls == 1:
            raise OSError("watch failed")
        yield state(entry("cost", "prod", "v2"))
        await stop.wait()


def test_a_source_that_fails_is_restarted_and_serving_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gateway.app

    monkeypatch.setattr(gateway.app, "_RESTART_S", 0.0)
    source = _FlakySource()

    async def run() -> list[str]:
        stop = asyncio.Event()
        pool = ModelPool(GatewayMetrics(), FakeLoader())
        task = asyncio.create_task(gateway.app._follow(source, pool, stop))
        while "cost" not in pool.routes:  # the pool converges in the background
            await asyncio.sleep(0.01)
        stop.set()
        await task
        return [r.loaded.version for r in pool.routes["cost"].values()]

    assert asyncio.run(run()) == ["v2"]
    assert source.calls == 2
