"""/models and /readyz tell the registry's assignment, the version serving, and why they differ."""

from __future__ import annotations

import asyncio

import msgspec

from gateway.http.status import model_status
from gateway.pool.model_pool import ModelPool
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.snapshot import ModelSyncError
from tests.unit.gateway.fakes import FakeLoader, entry, state


def _error(model: str, stage: str | None, version: str | None) -> ModelSyncError:
    return ModelSyncError(
        model=model, stage=stage, version=version, message=f"{model}@{version}: bad", at="t"
    )


def _pool_with(*errors: ModelSyncError) -> ModelPool:
    pool = ModelPool(GatewayMetrics(), FakeLoader())
    first = state(entry("cost", "prod", "v1"))
    asyncio.run(pool.reconcile(first))
    # The registry now assigns v2, which the sync cannot materialize: v1 stays desired.
    asyncio.run(pool.reconcile(msgspec.structs.replace(first, errors=list(errors))))
    return pool


def test_a_stage_the_sync_cannot_move_shows_the_assignment_the_server_and_the_reason() -> None:
    pool = _pool_with(_error("cost", "prod", "v2"))
    status = model_status(pool, "cost")
    assert status is not None
    prod = status["stages"]["prod"]
    assert (prod["assigned_version"], prod["version"], prod["assigned_digest"]) == (
        "v2",
        "v1",
        None,
    )
    assert prod["sync_error"]["message"] == "cost@v2: bad"
    assert prod["reason"] == "the sync cannot bring the assigned version here: cost@v2: bad"
    assert pool.ready() == (True, [])
    assert pool.pending() == ["cost#prod: assigned v2, serving v1 (cost@v2: bad)"]


def test_a_stage_in_sync_has_no_reason_and_nothing_pending() -> None:
    pool = _pool_with()
    status = model_status(pool, "cost")
    assert status is not None
    prod = status["stages"]["prod"]
    assert (prod["assigned_version"], prod["version"], prod["reason"]) == ("v1", "v1", None)
    assert prod["assigned_digest"] == prod["digest"]
    assert pool.pending() == []


def test_a_stage_never_materialized_is_listed_with_nothing_serving() -> None:
    pool = _pool_with(_error("fresh", "prod", "v3"))
    status = model_status(pool, "fresh")
    assert status is not None
    fresh = status["stages"]["prod"]
    assert (fresh["assigned_version"], fresh["version"], fresh["state"]) == (
        "v3",
        None,
        "sync_failed",
    )
    assert pool.ready() == (True, [])  # pending, never a reason to take replicas out
    assert pool.pending() == ["fresh#prod: assigned v3, serving nothing (fresh@v3: bad)"]
