"""ModelPool.reconcile: load and warm up first, switch routes at once, release when idle."""

from __future__ import annotations

import asyncio

import msgspec

from gateway.pool.model_pool import ModelPool
from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.metrics import GatewayMetrics
from tests.unit.gateway.fakes import FakeLoader, FakePredictor, entry, state


def _pool(loader: FakeLoader, events: list[ActivationEvent] | None = None) -> ModelPool:
    pool = ModelPool(GatewayMetrics(), loader, retry_failed_load_s=60.0)
    if events is not None:
        pool.add_listener(events.append)
    return pool


def _served(pool: ModelPool, model: str, stage: str) -> str | None:
    route = pool.routes.get(model, {}).get(stage)
    return route.loaded.version if route else None


def test_new_version_is_loaded_before_routes_switch_and_events_follow_the_switch() -> None:
    log: list[str] = []
    pool: ModelPool | None = None

    def before_load(e: object) -> None:
        assert pool is not None
        log.append(f"serving {_served(pool, 'cost', 'prod')}")

    pool = _pool(FakeLoader(log, before_load=before_load))
    pool.add_listener(lambda e: log.append(f"{e.kind} {e.stage} {e.version}"))

    async def run() -> None:
        assert pool is not None
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        await pool.reconcile(state(entry("cost", "prod", "v2")))

    asyncio.run(run())
    assert log == [
        "serving None",
        "load cost v1",
        "activated prod v1",
        "serving v1",  # while v2 loads (in a worker thread), v1 still serves
        "load cost v2",
        "activated prod v2",
        "deactivated prod v1",
    ]
    assert _served(pool, "cost", "prod") == "v2"


def test_old_version_is_released_only_after_its_inflight_requests_finish() -> None:
    loader = FakeLoader()
    pool = _pool(loader)

    async def run() -> FakePredictor:
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        v1 = loader.loaded[("cost", "v1")]
        v1.inflight = 1  # a request is being answered by v1
        await pool.reconcile(state(entry("cost", "prod", "v2")))
        predictor: FakePredictor = v1.predictor
        await asyncio.sleep(0)
        assert not predictor.closed
        assert _served(pool, "cost", "prod") == "v2"
        v1.inflight = 0
        await pool.drain()
        return predictor

    assert asyncio.run(run()).closed


def test_failed_load_keeps_the_previous_version_serving_and_records_the_error() -> None:
    events: list[ActivationEvent] = []
    loader = FakeLoader(broken={"v2"})
    pool = _pool(loader, events)

    async def run() -> None:
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        await pool.reconcile(state(entry("cost", "prod", "v2")))

    asyncio.run(run())
    assert _served(pool, "cost", "prod") == "v1"
    status = pool.statuses[("cost", "prod")]
    assert status.state == "failed"
    assert status.error == "artifact is corrupt"
    assert [(e.kind, e.version) for e in events] == [("activated", "v1"), ("failed", "v2")]
    assert events[-1].message == "artifact is corrupt"
    # Still answering with v1, so still ready; the failed swap is reported as pending.
    assert pool.ready() == (True, [])
    assert pool.pending() == ["cost#prod: v2 failed (artifact is corrupt)"]
    failures = pool.metrics.registry.get_sample_value(
        "stageserve_model_load_failures_total", {"model": "cost", "version": "v2"}
    )
    assert failures == 1


def test_a_failed_version_is_not_retried_until_the_retry_delay_passes() -> None:
    loader = FakeLoader(broken={"v2"})
    pool = _pool(loader)

    async def run() -> None:
        for _ in range(3):
            await pool.reconcile(state(entry("cost", "prod", "v2")))

    asyncio.run(run())
    assert loader.log == ["load cost v2"]
    assert _served(pool, "cost", "prod") is None
    assert pool.statuses[("cost", "prod")].error == "artifact is corrupt"
    # Nothing to answer with: not ready.
    assert pool.ready() == (False, ["cost#prod: failed (artifact is corrupt)"])


def test_two_stages_on_the_same_version_share_one_loaded_instance() -> None:
    loader = FakeLoader()
    pool = _pool(loader)
    asyncio.run(pool.reconcile(state(entry("cost", "prod", "v1"), entry("cost", "staging", "v1"))))
    assert loader.log == ["load cost v1"]
    assert pool.routes["cost"]["prod"].loaded is pool.routes["cost"]["staging"].loaded
    assert pool.ready() == (True, [])


def test_a_stage_removed_from_the_desired_state_is_deactivated_and_released() -> None:
    events: list[ActivationEvent] = []
    loader = FakeLoader()
    pool = _pool(loader, events)

    async def run() -> None:
        await pool.reconcile(state(entry("cost", "prod", "v1"), entry("lin", "prod", "v1")))
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        await pool.drain()

    asyncio.run(run())
    assert "lin" not in pool.routes
    assert [(e.kind, e.model) for e in events][-1] == ("deactivated", "lin")
    assert loader.loaded[("lin", "v1")].predictor.closed
    assert not loader.loaded[("cost", "v1")].predictor.closed
    info = pool.metrics.registry.get_sample_value(
        "stageserve_model_info",
        {"model": "lin", "stage": "prod", "version": "v1", "digest": "sha256:lin-v1"},
    )
    assert info is None


def test_a_listener_that_raises_does_not_stop_the_swap() -> None:
    loader = FakeLoader()
    pool = _pool(loader)

    def broken(event: ActivationEvent) -> None:
        raise RuntimeError("journal disk full")

    pool.add_listener(broken)
    asyncio.run(pool.reconcile(state(entry("cost", "prod", "v1"))))
    assert _served(pool, "cost", "prod") == "v1"


def test_a_failed_version_is_retried_once_the_retry_delay_has_passed() -> None:
    now = [0.0]
    loader = FakeLoader(broken={"v2"})
    pool = ModelPool(GatewayMetrics(), loader, retry_failed_load_s=60.0, clock=lambda: now[0])

    async def run() -> None:
        await pool.reconcile(state(entry("cost", "prod", "v2")))
        assert pool.has_failures()
        loader.broken.clear()  # the disk came back
        now[0] = 61.0
        await pool.reconcile(state(entry("cost", "prod", "v2")))

    asyncio.run(run())
    assert loader.log == ["load cost v2", "load cost v2"]
    assert _served(pool, "cost", "prod") == "v2"
    assert not pool.has_failures()


def test_a_version_reloaded_with_a_new_digest_replaces_and_releases_the_old_instance() -> None:
    loader = FakeLoader()
    pool = _pool(loader)
    first = entry("cost", "prod", "v1")
    rebuilt = msgspec.structs.replace(first, digest="sha256:rebuilt")

    async def run() -> None:
        await pool.reconcile(state(first))
        old = pool.routes["cost"]["prod"].loaded
        await pool.reconcile(state(rebuilt))
        await pool.drain()
        assert old.predictor.closed

    asyncio.run(run())
    assert pool.routes["cost"]["prod"].loaded.digest == "sha256:rebuilt"
    assert loader.log == ["load cost v1", "load cost v1"]
