"""One shadow prediction of a pinned version, where `shadow_executor` says, with a timeout.

- `process` (`predict_in_process`): the shadow process (process.py) predicts with its own
  copy of the version; the event loop only sends the inputs and reads the answer.
- `thread`: every call on the shadow's own single thread (at `shadow_priority`), so a slow
  shadow never holds the primary's inference threads.
- `inline`: the primary's engine rule (inference.py): small requests to fast versions on the
  event loop, the rest on the shadow thread.

The caller pins the version (`inflight += 1`); this unpins it when the call is over, which
for a timed-out thread call is when the thread ends.
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
from gateway.shadow.child import ShadowCall, ShadowResult
from gateway.shadow.compare import Comparator
from gateway.shadow.process import ShadowProcess, ShadowProcessGoneError
from registry_sync.sync.snapshot import DesiredEntry

__all__ = ["Answer", "Outcome", "predict_in_process", "predict_pinned"]

# (error kind or None, detail, raw output, the shadow's inputs, inference seconds)
Outcome = tuple[str | None, str, Any, InputBatch, float]
# (error kind or None, detail, validated predictions, the shadow's inputs, inference seconds)
Answer = tuple[str | None, str, "list[Any] | None", InputBatch, float]


def _unpin(lv: LoadedVersion, _: object) -> None:
    lv.inflight -= 1


async def predict_pinned(
    lv: LoadedVersion,
    comparator: Comparator,
    batch: InputBatch,
    executor: Executor | None,
    timeout_s: float,
    *,
    inline: bool = True,
) -> Outcome:
    """`inline`: small requests to fast versions on the loop (else always the thread)."""
    unpinned = False
    shadow_batch = batch
    t = time.perf_counter()
    try:
        shadow_batch = comparator.inputs(batch)
        t = time.perf_counter()
        if executor is None or (inline and batch.rows <= lv.inline_max_rows):
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


async def predict_in_process(
    process: ShadowProcess, calls: list[tuple[DesiredEntry, LoadedVersion, Comparator, InputBatch]]
) -> list[Answer]:
    """The shadow process's validated predictions for every call (each `entry` names its
    pinned version), sent as one frame, in order; their seconds are the process's CPU
    seconds, and it applied the timeout to them. Unpins every version when the answers are
    in (or the process is gone)."""
    answers: list[Answer | None] = []
    sent: list[ShadowCall] = []
    failure = ""
    results: list[ShadowResult] = []
    try:
        for entry, _, comparator, batch in calls:
            try:
                shadow_batch = comparator.inputs(batch)
            except GatewayError as exc:
                answers.append(("input_mismatch", str(exc), None, batch, 0.0))
                continue
            answers.append(None)
            sent.append(ShadowCall(entry=entry, batch=shadow_batch))
        if sent:
            try:
                results = await process.predict(sent)
            except ShadowProcessGoneError as exc:
                failure = f"shadow process: {exc}"
    finally:
        for _, lv, _, _ in calls:
            lv.inflight -= 1
    out: list[Answer] = []
    answered = iter(zip(sent, results if not failure else [None] * len(sent), strict=True))
    for early in answers:
        if early is not None:
            out.append(early)
            continue
        call, r = next(answered)
        assert call.batch is not None
        if r is None:
            out.append(("error", failure, None, call.batch, 0.0))
        else:
            out.append((r.kind, r.detail, r.predictions, call.batch, r.shadow_s))
    return out
