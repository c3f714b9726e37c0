"""One shadow prediction of a pinned version: inline or on the shadow thread, with a timeout.

The same engine rule as the primary (inference.py): small requests to fast versions run
inline, the rest on a thread: the shadow's own single thread, so a slow shadow never holds
the primary's inference threads. The caller pins the version (`inflight += 1`); this
unpins it when the call is over, which for a timed-out thread call is when the thread ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from concurrent.futures import Executor
from typing import Any

from gateway.errors import GatewayError
from gateway.pool.loaded import LoadedVersion
from gateway.schema.request_schema import InputBatch
from gateway.shadow.compare import Comparator

__all__ = ["Outcome", "predict_pinned"]

# (error kind or None, detail, raw output, the shadow's inputs, inference seconds)
Outcome = tuple[str | None, str, Any, InputBatch, float]


def _unpin(lv: LoadedVersion, _: object) -> None:
    lv.inflight -= 1


async def predict_pinned(
    lv: LoadedVersion,
    comparator: Comparator,
    batch: InputBatch,
    executor: Executor | None,
    timeout_s: float,
) -> Outcome:
    unpinned = False
    shadow_batch = batch
    t = time.perf_counter()
    try:
        shadow_batch = comparator.inputs(batch)
        t = time.perf_counter()
        if batch.rows <= lv.inline_max_rows or executor is None:
            out = lv.predict(shadow_batch)
        else:
            future = asyncio.get_running_loop().run_in_executor(executor, lv.predict, shadow_batch)
            future.add_done_callback(functools.partial(_unpin, lv))
            unpinned = True
            try:
                out = await asyncio.wait_for(asyncio.shield(future), timeout_s)
            except TimeoutError:
                # One slow call at a time: wait for it, so calls never pile up on the thread;
                # the bounded queue takes (and counts) what comes meanwhile.
                with contextlib.suppress(Exception):
                    await future
                late = time.perf_counter() - t
                return "timeout", f"{late:.3f} s", None, shadow_batch, late
    except GatewayError as exc:
        return "input_mismatch", str(exc), None, shadow_batch, 0.0
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}", None, shadow_batch, 0.0
    finally:
        if not unpinned:
            lv.inflight -= 1
    shadow_s = time.perf_counter() - t
    if shadow_s > timeout_s:  # an inline call cannot be interrupted; it still came late
        return "timeout", f"{shadow_s:.3f} s", None, shadow_batch, shadow_s
    return None, "", out, shadow_batch, shadow_s
