"""Adaptive batching: concurrent requests to one version answered by one model call.

A heavy model (a scikit-learn ensemble: ~200-300 µs a call whether it scores 1 row or 64)
spends most of each single-row request in the call's fixed cost. With `batching` set for a
model, each request's validated rows wait here for companions; one model call scores them
all and each caller gets its own slice back, then validates, stamps, audits and counts it as
if it had called alone (the route does that part, unchanged).

When a batch closes (the first of):
- it holds `max_batch_size` rows;
- `max_wait_us` have passed since its first request;
- the event loop went a full turn without adding a request to it: no more requests are on
  their way in, so a lone request (c1) waits one loop turn, not `max_wait_us`. Under load the
  loop keeps adding requests every turn and batches fill (the "adaptive" part: MLServer's
  adaptive batching and Triton's dynamic batcher close on size or time only).

Guarantees: one `Batcher` per loaded version (the pool builds a new one with each version),
so a batch never mixes versions and a swap never touches a batch in progress (its callers
hold the old version's in-flight count). A model call that raises for the batch, or returns
a different number of rows than it was given, is repeated per caller, so one caller's rows
never fail another's request. Batches up to the version's `inline_max_rows` run inline on the
event loop (as an unbatched request of that size would), larger ones on the inference pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np

from gateway.schema.request_schema import InputBatch
from gateway.settings import BatchingRule

__all__ = ["BatchResult", "Batcher", "combine", "with_batching"]

# (the caller's rows of the model's output, seconds the model call took)
BatchResult = tuple[Any, float]
Predict = Callable[[InputBatch], Any]
InPool = Callable[[Predict, InputBatch], Awaitable[Any]]
_Item = tuple[InputBatch, "asyncio.Future[BatchResult]"]


def with_batching(
    loader: Callable[[Any], Any],
    rules: Mapping[str, BatchingRule],
    in_pool: InPool,
    observe: Callable[[str], Callable[[int], None]],
) -> Callable[[Any], Any]:
    """A loader whose versions of the models in `rules` come with their `Batcher` (built
    after the load's warm-up, which may still change how the version predicts)."""

    def load(entry: Any) -> Any:
        loaded = loader(entry)
        rule = rules.get(loaded.model)
        if rule is not None:
            loaded.batcher = Batcher(
                loaded.predict,
                max_rows=rule.max_batch_size,
                max_wait_us=rule.max_wait_us,
                inline_max_rows=lambda: loaded.inline_max_rows,
                in_pool=in_pool,
                observe=observe(loaded.model),
            )
        return loaded

    return load


def combine(batches: list[InputBatch]) -> InputBatch:
    """One batch holding every row of `batches`, in order (they share one signature)."""
    first = batches[0]
    rows = sum(b.rows for b in batches)
    if first.matrix is not None:
        matrix = np.concatenate([b.matrix for b in batches if b.matrix is not None])
        return InputBatch(first.names, rows, matrix, None)
    maps = [b.column_map() for b in batches]
    columns = {name: np.concatenate([m[name] for m in maps]) for name in maps[0]}
    return InputBatch(first.names, rows, None, columns)


class Batcher:
    """Gathers one version's requests; `submit(batch)` is awaited by each caller."""

    __slots__ = (
        "_first_at",
        "_generation",
        "_in_pool",
        "_inline_max_rows",
        "_max_wait_s",
        "_observe",
        "_pending",
        "_predict",
        "_rows",
        "_seen",
        "max_rows",
    )

    def __init__(
        self,
        predict: Predict,
        *,
        max_rows: int,
        max_wait_us: int,
        inline_max_rows: Callable[[], int],
        in_pool: InPool,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self._max_wait_s = max_wait_us / 1e6
        # Read at each close: warm-up sets the version's inline limit after this is built.
        self._inline_max_rows = inline_max_rows
        self._in_pool = in_pool
        # Told the number of requests of every batched call (stageserve_batch_requests).
        self._observe = observe
        self._pending: list[_Item] = []
        self._rows = 0
        self._first_at = 0.0
        self._seen = 0
        # Which open batch a queued `_check` belongs to (one closed by size leaves its check
        # queued; it must not judge the next batch).
        self._generation = 0

    def submit(self, batch: InputBatch) -> asyncio.Future[BatchResult]:
        """Queue `batch`; the future gives its rows of the output and the call's duration."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        self._pending.append((batch, future))
        self._rows += batch.rows
        if self._rows >= self.max_rows:
            self._close()
        elif len(self._pending) == 1:
            self._first_at = loop.time()
            self._seen = 0
            loop.call_soon(self._check, self._generation)
        return future

    def _check(self, generation: int) -> None:
        """Once per loop turn while a batch is open: close it when the turn added nothing or
        its first request has waited long enough."""
        count = len(self._pending)
        if not count or generation != self._generation:
            return
        loop = asyncio.get_running_loop()
        if count == self._seen or loop.time() - self._first_at >= self._max_wait_s:
            self._close()
        else:
            self._seen = count
            loop.call_soon(self._check, generation)

    def _close(self) -> None:
        items, self._pending, rows, self._rows = self._pending, [], self._rows, 0
        self._seen = 0
        self._generation += 1
        if self._observe is not None:
            self._observe(len(items))
        if rows <= self._inline_max_rows():
            self._answer(items, self._call_inline(items))
        else:
            asyncio.get_running_loop().create_task(self._pooled(items))

    def _call_inline(self, items: list[_Item]) -> tuple[Any, float] | None:
        batch = items[0][0] if len(items) == 1 else combine([b for b, _ in items])
        started = time.perf_counter()
        try:
            out = self._predict(batch)
        except Exception:
            return None
        return out, time.perf_counter() - started

    async def _pooled(self, items: list[_Item]) -> None:
        batch = items[0][0] if len(items) == 1 else combine([b for b, _ in items])
        started = time.perf_counter()
        try:
            out = await self._in_pool(self._predict, batch)
        except Exception:
            result = None
        else:
            result = (out, time.perf_counter() - started)
        if result is None or not self._split(items, result):
            for item in items:
                await self._alone_pooled(item)

    def _answer(self, items: list[_Item], result: tuple[Any, float] | None) -> None:
        if result is not None and self._split(items, result):
            return
        # The batch failed (or came back the wrong length): each caller alone, so only the
        # caller whose rows the model cannot score gets the error.
        for batch, future in items:
            started = time.perf_counter()
            try:
                out = self._predict(batch)
            except Exception as exc:
                _settle(future, exc=exc)
            else:
                _settle(future, (out, time.perf_counter() - started))

    async def _alone_pooled(self, item: _Item) -> None:
        batch, future = item
        started = time.perf_counter()
        try:
            out = await self._in_pool(self._predict, batch)
        except Exception as exc:
            _settle(future, exc=exc)
        else:
            _settle(future, (out, time.perf_counter() - started))

    @staticmethod
    def _split(items: list[_Item], result: tuple[Any, float]) -> bool:
        """Hand each caller its rows; False when the output has not one row per input row."""
        out, call_s = result
        if len(items) == 1:
            _settle(items[0][1], result)
            return True
        array = np.asarray(out)
        total = sum(b.rows for b, _ in items)
        if array.ndim == 0 or array.shape[0] != total:
            return False
        start = 0
        for batch, future in items:
            end = start + batch.rows
            _settle(future, (array[start:end], call_s))
            start = end
        return True


def _settle(
    future: asyncio.Future[BatchResult],
    result: BatchResult | None = None,
    *,
    exc: BaseException | None = None,
) -> None:
    if future.done():  # the caller went away (cancelled)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)
