"""The adaptive batcher: one model call for concurrent requests, each caller its own rows."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from gateway.pool.batching import Batcher, BatchResult, combine
from gateway.schema.request_schema import InputBatch

NAMES = ("hp", "wt")
# Requests per batched call, as the batchers report them (cleared by each test).
SIZES: list[int] = []


@pytest.fixture(autouse=True)
def _clear_sizes() -> None:
    SIZES.clear()


def rows(*values: float) -> InputBatch:
    """One row per value: hp = value, wt = 10 * value."""
    matrix = np.array([[v, 10 * v] for v in values], dtype=np.float64)
    return InputBatch(NAMES, len(values), matrix, None)


class Model:
    """Predicts hp + wt per row; refuses any batch holding a row with hp < 0."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, batch: InputBatch) -> np.ndarray:
        assert batch.matrix is not None
        self.calls.append(batch.rows)
        if (batch.matrix[:, 0] < 0).any():
            raise ValueError("negative hp")
        return batch.matrix[:, 0] + batch.matrix[:, 1]


async def _in_pool(fn: Any, arg: Any) -> Any:
    return await asyncio.to_thread(fn, arg)


def batcher(
    model: Any, *, max_rows: int = 64, inline: int = 64, wait_us: int = 60_000_000
) -> Batcher:
    return Batcher(
        model,
        max_rows=max_rows,
        max_wait_us=wait_us,
        inline_max_rows=lambda: inline,
        in_pool=_in_pool,
        observe=SIZES.append,
    )


async def _gather(b: Batcher, batches: list[InputBatch]) -> list[BatchResult | BaseException]:
    futures = [b.submit(batch) for batch in batches]
    return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)


def test_concurrent_requests_share_one_call_and_each_gets_its_own_rows() -> None:
    model = Model()
    b = batcher(model)
    results = asyncio.run(_gather(b, [rows(1), rows(2, 3), rows(4)]))
    assert model.calls == [4]
    outs = [np.asarray(r[0]).tolist() for r in results]  # type: ignore[index]
    assert outs == [[11.0], [22.0, 33.0], [44.0]]
    assert SIZES == [3]


def test_a_lone_request_does_not_wait_for_max_wait() -> None:
    # max_wait is a minute: the batch closes after one loop turn that added nothing.
    model = Model()
    b = batcher(model)

    async def one() -> BatchResult:
        return await asyncio.wait_for(b.submit(rows(5)), 5)

    out, _ = asyncio.run(one())
    assert np.asarray(out).tolist() == [55.0]


def test_a_batch_closes_as_soon_as_it_holds_max_rows() -> None:
    model = Model()
    b = batcher(model, max_rows=3)

    async def fill() -> list[bool]:
        first = b.submit(rows(1, 2))
        second = b.submit(rows(3))  # 3 rows: closed and answered inside submit
        done = [first.done(), second.done()]
        await asyncio.gather(first, second)
        return done

    assert asyncio.run(fill()) == [True, True]
    assert model.calls == [3]


def test_one_callers_bad_rows_never_fail_the_others() -> None:
    model = Model()
    b = batcher(model)
    results = asyncio.run(_gather(b, [rows(1), rows(-1), rows(2)]))
    assert isinstance(results[1], ValueError)
    assert np.asarray(results[0][0]).tolist() == [11.0]  # type: ignore[index]
    assert np.asarray(results[2][0]).tolist() == [22.0]  # type: ignore[index]
    # The batch failed once, then each caller was scored alone.
    assert model.calls == [3, 1, 1, 1]


def test_an_output_of_the_wrong_length_is_scored_per_caller() -> None:
    def first_row_only(batch: InputBatch) -> np.ndarray:
        assert batch.matrix is not None
        return batch.matrix[:1, 0]

    b = batcher(first_row_only)
    results = asyncio.run(_gather(b, [rows(1), rows(2)]))
    assert [np.asarray(r[0]).tolist() for r in results] == [[1.0], [2.0]]  # type: ignore[index]


def test_batches_larger_than_the_inline_limit_run_on_the_pool_and_still_split() -> None:
    model = Model()
    b = batcher(model, inline=1)
    results = asyncio.run(_gather(b, [rows(1), rows(-2), rows(3)]))
    assert isinstance(results[1], ValueError)
    assert np.asarray(results[2][0]).tolist() == [33.0]  # type: ignore[index]


def test_batches_never_mix_two_batchers_versions() -> None:
    old, new = Model(), Model()
    b_old, b_new = batcher(old), batcher(new)

    async def both() -> None:
        await asyncio.gather(b_old.submit(rows(1)), b_new.submit(rows(2)), b_old.submit(rows(3)))

    asyncio.run(both())
    assert old.calls == [2]
    assert new.calls == [1]


def test_combine_keeps_named_columns_in_row_order() -> None:
    a = InputBatch(("x",), 1, None, {"x": np.array(["a"], dtype=object)})
    c = InputBatch(("x",), 2, None, {"x": np.array(["b", "c"], dtype=object)})
    assert combine([a, c]).column_map()["x"].tolist() == ["a", "b", "c"]


@pytest.mark.parametrize("count", [2, 10])
def test_max_wait_bounds_a_batch_that_keeps_growing(count: int) -> None:
    # wait 0: every turn's check closes the batch, even while requests keep arriving.
    model = Model()
    b = batcher(model, wait_us=0)

    async def trickle() -> None:
        futures = []
        for i in range(count):
            futures.append(b.submit(rows(float(i + 1))))
            await asyncio.sleep(0)
        await asyncio.gather(*futures)

    asyncio.run(trickle())
    assert sum(model.calls) == count
    assert max(model.calls) < count
