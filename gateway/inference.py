"""Where inference runs: inline on the event loop or on a thread pool, chosen per engine.

Measured on this machine (2 cores, shared; 4 numeric features, 1 row; 16 concurrent callers
on one event loop, 1000 calls):

| engine                          | one call | inline, 16 callers | thread pool, 16 callers |
|---------------------------------|---------:|-------------------:|------------------------:|
| onnx (onnxruntime)              |   ~19 µs |       ~28,000 /s   |        ~6,500-10,500 /s |
| sklearn (LinearRegression, df)  |  ~1.5 ms |          ~600 /s   |                ~530 /s  |
| statsmodels (OLS formula)       |  ~6.5 ms |          ~160 /s   |                ~130 /s  |

A pool hand-off (`run_in_executor` + wake-up) costs ~100-150 µs here, several times an onnx
call, so onnx runs inline. scikit-learn and statsmodels hold the GIL for most of a call (pandas,
patsy, input validation), so the pool buys little throughput (-10-20 %), but inline they would
stall every other request on the loop for 1.5-6.5 ms each (probes, other models' requests), so
they run on the pool. A version whose warm-up calls are all cheaper than the hand-off runs
inline whatever its engine (e.g. a bare-array scikit-learn model).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["HANDOFF_S", "INLINE_ENGINES", "Inference", "runs_inline"]

# See the module docstring for the numbers behind each choice.
INLINE_ENGINES: dict[str, bool] = {"onnx": True, "sklearn": False, "statsmodels": False}
# Below this per-call cost the thread-pool hand-off would cost more than the call itself.
HANDOFF_S = 100e-6


def runs_inline(engine: str, call_s: float | None = None) -> bool:
    """Unknown engines go to the pool: a slow model must never block the event loop."""
    if INLINE_ENGINES.get(engine, False):
        return True
    return call_s is not None and call_s < HANDOFF_S


class Inference:
    """Owns the thread pool used by engines that do not run inline."""

    def __init__(self, threads: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")

    async def in_pool(self, fn: Any, arg: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, arg)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
