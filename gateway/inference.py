"""Where inference runs: inline on the event loop or on a thread pool, chosen per engine.

Measured on this machine (2 cores, 4 numeric features, 1 row, `benchmarks` in the report of
issue 3): a thread-pool hand-off (`loop.run_in_executor` + wake-up) costs ~60-90 µs, more than
a whole onnxruntime call (~12 µs) or a scikit-learn linear model (~40 µs), so those run inline;
statsmodels builds a DataFrame and runs patsy per call (~1 ms), which would stall every other
request on the loop, so it runs on the pool (where numpy/pandas release the GIL for part of it).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["INLINE_ENGINES", "Inference", "runs_inline"]

# See the module docstring for the numbers behind each choice.
INLINE_ENGINES: dict[str, bool] = {"onnx": True, "sklearn": True, "statsmodels": False}


def runs_inline(engine: str) -> bool:
    """Unknown engines go to the pool: a slow model must never block the event loop."""
    return INLINE_ENGINES.get(engine, False)


class Inference:
    """Owns the thread pool used by engines that do not run inline."""

    def __init__(self, threads: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")

    async def in_pool(self, fn: Any, arg: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, arg)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
