"""The frozen heap (gateway/pool/heap.py): swaps freeze what loaded, and released versions
of real models are still freed, so freezing never turns a swap into a memory leak."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.pool.batching import with_batching
from gateway.pool.heap import FrozenHeap
from gateway.pool.loaded import LoadedVersion, load_version
from gateway.pool.model_pool import ModelPool
from gateway.settings import BatchingRule
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.package.read import read_package
from registry_sync.sync.snapshot import DesiredEntry, DesiredState
from tests.models import save_onnx_package, save_sklearn_package


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (the rest of the suite runs after)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _entry(model: str, version: str, folder: Path) -> DesiredEntry:
    return DesiredEntry(
        model=model,
        stage="prod",
        version=version,
        package_path=str(folder),
        digest=read_package(folder).digest,
    )


def _state(*entries: DesiredEntry) -> DesiredState:
    return DesiredState(
        generated_at="2026-01-01T00:00:00Z", registry="tests", entries=list(entries)
    )


async def _in_pool(predict: Any, batch: Any) -> Any:
    return predict(batch)


def _swap_and_release(
    pool: ModelPool, first: DesiredEntry, second: DesiredEntry
) -> tuple[weakref.ref[LoadedVersion], weakref.ref[Any]]:
    """Serve `first`, swap to `second`, wait for `first`'s release; weak references to the
    released version and to its model."""

    async def run() -> tuple[weakref.ref[LoadedVersion], weakref.ref[Any]]:
        await pool.reconcile(_state(first))
        lv = pool.routes[first.model]["prod"].loaded
        refs = weakref.ref(lv), weakref.ref(lv.predictor)
        del lv
        await pool.reconcile(_state(second))
        await pool.drain()
        return refs

    return asyncio.run(run())


@pytest.mark.parametrize("engine", ["onnx", "sklearn", "sklearn, batched"])
def test_a_released_version_is_freed_while_the_heap_is_frozen(tmp_path: Path, engine: str) -> None:
    save = save_onnx_package if engine == "onnx" else save_sklearn_package
    v1 = _entry("cost", "v1", save(tmp_path / "v1"))
    v2 = _entry("cost", "v2", save(tmp_path / "v2", offset=1.0))
    loader: Any = load_version
    if engine.endswith("batched"):  # the batcher refers back to its version
        rules = {"cost": BatchingRule(max_batch_size=8, max_wait_us=100)}
        loader = with_batching(load_version, rules, _in_pool, lambda model: lambda rows: None)
    heap = FrozenHeap(True)
    pool = ModelPool(GatewayMetrics(), loader, heap=heap)

    version, model = _swap_and_release(pool, v1, v2)

    assert heap.freezes == 2  # one per switch that brought a version in
    assert gc.get_freeze_count() > 0
    # Freed by reference counting alone: a frozen cycle would keep both (and the model's
    # memory) for the life of the process.
    assert version() is None
    assert model() is None
    assert pool.routes["cost"]["prod"].loaded.version == "v2"


def test_a_version_a_cycle_still_holds_is_reclaimed_and_counted() -> None:
    reclaimed: list[int] = []
    heap = FrozenHeap(True, on_reclaim=lambda: reclaimed.append(1))

    class Model:
        pass

    model = Model()
    cycle = [model]
    cycle.append(cycle)  # type: ignore[arg-type]  # what a runtime may keep internally
    heap.freeze("loaded")
    ref = weakref.ref(model)
    del model, cycle
    assert ref() is not None  # frozen: no collection will look at it

    heap.released(ref, "cost v1")

    assert ref() is None
    assert reclaimed == [1]
    assert gc.get_freeze_count() > 0  # frozen again afterwards


def test_off_means_nothing_is_frozen_and_nothing_reclaimed() -> None:
    heap = FrozenHeap(False)

    class Model:
        pass

    model = Model()
    heap.freeze("startup")
    ref = weakref.ref(model)
    heap.released(ref, "cost v1")

    assert gc.get_freeze_count() == 0
    assert heap.reclaims == 0
    assert ref() is model
