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
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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


def inline_max_rows(engine: str, call_s: float | None = None) -> int:
    """The largest request (in rows) this version answers inline; 0 means always the pool."""
    if engine not in INLINE_ENGINES:
        return 0  # an unknown engine must never block the event loop
    if call_s is not None and call_s > INLINE_BUDGET_S:
        return 0
    return _ALWAYS if engine == "onnx" else INLINE_MAX_ROWS


class Inference:
    """Owns the thread pool used for calls that do not run inline."""

    def __init__(self, threads: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")

    async def in_pool(self, fn: Any, arg: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, arg)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
