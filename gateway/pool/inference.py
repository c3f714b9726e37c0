"""Where inference runs: inline on the event loop or on a thread pool, per engine and size.

Measured on this machine (2 shared cores; 4 numeric features, 1 row; one event loop with 16
concurrent callers; `tests/models.py` models; runtimes as of commit 1d26f7e):

| engine (model)                 | one call | inline, 16 callers | thread pool, 16 callers |
|--------------------------------|---------:|-------------------:|------------------------:|
| onnx (LinearRegression export) | 19-21 µs |  24,900-32,500 /s  |        9,700-11,600 /s  |
| sklearn (LinearRegression)     |  ~210 µs |   4,460-4,490 /s   |        2,830-3,410 /s   |
| sklearn (GradientBoosting)     | 490-600 µs|  2,040-2,120 /s   |        1,510-1,530 /s   |
| statsmodels (OLS formula)      | 310-420 µs|  2,330-2,510 /s   |        1,470-1,660 /s   |

A pool hand-off (`run_in_executor` + wake-up) costs 120-220 µs here, as much as a whole
scikit-learn call, and scikit-learn / statsmodels hold the GIL for most of a small call
(input validation, pandas), so for small requests the pool only adds cost: inline is 30-50 %
faster for every engine. The pool is for what would stall the loop: a version whose warm-up
call costs more than `INLINE_BUDGET_S`, or a request with more than `INLINE_MAX_ROWS` rows
on an engine other than onnx (numpy releases the GIL on big arrays, so those overlap).

`Inference.run` is where every route's model call goes: its version's batch (batching.py),
inline or the pool, through its model's gate (admission.py) when it has a limit or a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import InferenceTimeoutError

if TYPE_CHECKING:
    from gateway.pool.admission import Gate
    from gateway.pool.loaded import LoadedVersion
    from gateway.schema.request_schema import InputBatch

__all__ = [
    "INLINE_BUDGET_S",
    "INLINE_ENGINES",
    "INLINE_MAX_ROWS",
    "Inference",
    "inline_max_rows",
]

# Engines measured faster inline (see the table above); anything else always uses the pool.
INLINE_ENGINES = frozenset({"onnx", "sklearn", "statsmodels"})
# A version whose (fastest) warm-up call takes longer than this runs on the pool.
INLINE_BUDGET_S = 1e-3
# Above this many rows a non-onnx request runs on the pool; onnx stays inline (10k rows of a
# small graph is still ~1 ms, and onnxruntime releases the GIL itself).
INLINE_MAX_ROWS = 64
_ALWAYS = 1 << 62
_T = TypeVar("_T")


def inline_max_rows(engine: str, call_s: float | None = None) -> int:
    """The largest request (in rows) this version answers inline; 0 means always the pool."""
    if engine not in INLINE_ENGINES:
        return 0  # an unknown engine must never block the event loop
    if call_s is not None and call_s > INLINE_BUDGET_S:
        return 0
    return _ALWAYS if engine == "onnx" else INLINE_MAX_ROWS


class Inference:
    """Owns the thread pool used for calls that do not run inline, and runs each request's
    model call where it belongs: its version's batch, inline, or the pool; through its
    model's gate (admission.py) when the model has a limit or a timeout."""

    def __init__(self, threads: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")

    async def in_pool(self, fn: Any, arg: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, arg)

    async def run(self, lv: LoadedVersion, batch: InputBatch) -> tuple[Any, float]:
        """The model's output for `batch` and the seconds the model call took. Raises
        OverloadedError / InferenceTimeoutError (the gate's), or what the model raised."""
        gate = lv.gate
        if gate is not None:
            return await self._gated(gate, lv, batch)
        if lv.batcher is not None and batch.rows < lv.batcher.max_rows:
            # Adaptive batching (pool/batching.py): this request's rows of one call shared
            # with concurrent requests to the same version.
            return await lv.batcher.submit(batch)
        t = time.perf_counter()
        if batch.rows <= lv.inline_max_rows:
            out = lv.predict(batch)
        else:
            out = await self.in_pool(lv.predict, batch)
        return out, time.perf_counter() - t

    async def _gated(self, gate: Gate, lv: LoadedVersion, batch: InputBatch) -> tuple[Any, float]:
        gate.enter()
        # A clock of its own, not loop.time(): uvloop's advances once per loop turn, in ms.
        deadline = time.perf_counter() + gate.timeout_s
        held = True
        try:
            if lv.batcher is not None and batch.rows < lv.batcher.max_rows:
                return await _until(lv.batcher.submit(batch), deadline, gate)
            if batch.rows <= lv.inline_max_rows:
                # One loop turn, counted: the requests already read reach the gate before
                # this one runs the model (see admission.py).
                await asyncio.sleep(0)
                if time.perf_counter() > deadline:
                    raise gate.timed_out()
                t = time.perf_counter()
                out = lv.predict(batch)
                return out, time.perf_counter() - t
            t = time.perf_counter()
            work = self._executor.submit(lv.predict, batch)
            try:
                out = await _until(asyncio.wrap_future(work), deadline, gate)
            except InferenceTimeoutError:
                # Cancelled if it had not started; if it runs on, its slot stays taken until
                # it ends (timed-out work never exceeds the limit on the threads).
                held = False
                work.add_done_callback(_leave_when_done(asyncio.get_running_loop(), gate))
                raise
            return out, time.perf_counter() - t
        finally:
            if held:
                gate.leave()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _leave_when_done(loop: asyncio.AbstractEventLoop, gate: Gate) -> Callable[[Future[Any]], None]:
    """A done-callback (run on the inference thread) freeing the gate's slot on the loop."""

    def leave(_: Future[Any]) -> None:
        # RuntimeError: the loop is closed (the server has stopped), nothing to free.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(gate.leave)

    return leave


async def _until(future: asyncio.Future[_T], deadline: float, gate: Gate) -> _T:
    """`await future`, or the gate's InferenceTimeoutError at `deadline` (perf_counter; inf:
    none) with `future` cancelled."""
    if deadline == math.inf:
        return await future
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        future.cancel()

    timer = asyncio.get_running_loop().call_later(deadline - time.perf_counter(), expire)
    try:
        return await future
    except asyncio.CancelledError:
        if expired:
            raise gate.timed_out() from None
        raise
    finally:
        timer.cancel()
