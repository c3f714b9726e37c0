"""Admission (pool/admission.py through Inference.run): a model's limit refuses at once, its
timeout answers 504, and timed-out work keeps its slot until it really ends.

The versions here are stand-ins (a predict function and the attributes Inference.run reads):
the real server path is tests/integration/test_gateway_overload.py."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from gateway.errors import InferenceTimeoutError, OverloadedError
from gateway.pool.admission import Gate, Gates
from gateway.pool.inference import Inference
from gateway.schema.request_schema import InputBatch
from gateway.settings import load_settings

ROW = InputBatch(("x",), 1, np.array([[1.0]]), None)


class Refusals(list[tuple[str, str]]):
    def __call__(self, model: str, reason: str) -> None:
        self.append((model, reason))


def version(
    predict: Any, *, limit: int = 0, timeout_s: float = 0.0, inline: int = 64
) -> tuple[Any, Refusals]:
    refusals = Refusals()
    gate = Gate("m", max_concurrent=limit, timeout_s=timeout_s, on_refused=refusals)
    lv = SimpleNamespace(gate=gate, batcher=None, inline_max_rows=inline, predict=predict)
    return lv, refusals


class Blocking:
    """A model call that runs until `release` is set (on an inference thread)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def __call__(self, batch: InputBatch) -> list[float]:
        self.calls += 1
        self.started.set()
        assert self.release.wait(10)
        return [2.0]


async def _wait_for(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_past_the_limit_a_request_is_refused_at_once_and_counted() -> None:
    model = Blocking()
    lv, refusals = version(model, limit=1, inline=0)  # inline=0: every call on the pool
    inference = Inference(2)

    async def scenario() -> None:
        first = asyncio.ensure_future(inference.run(lv, ROW))
        await asyncio.to_thread(model.started.wait, 10)
        with pytest.raises(OverloadedError) as refused:
            await inference.run(lv, ROW)
        assert refused.value.code == "model_overloaded"
        assert refused.value.details == {"model": "m", "max_concurrent": 1}
        model.release.set()
        out, _ = await first
        assert out == [2.0]
        out, _ = await inference.run(lv, ROW)  # the slot is free again
        assert out == [2.0]

    asyncio.run(scenario())
    inference.close()
    assert refusals == [("m", "model_overloaded")]
    assert model.calls == 2  # the refused request never reached the model


def test_requests_read_in_the_same_loop_turn_reach_the_limit_before_any_runs_inline() -> None:
    # Inline calls never await: without the counted loop turn they would never overlap and
    # the limit would never refuse anything (the overload queue is the event loop's).
    calls: list[int] = []
    lv, refusals = version(lambda b: calls.append(1) or [1.0], limit=2)
    inference = Inference(1)

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            *(inference.run(lv, ROW) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == ["tuple"] * 2 + ["OverloadedError"] * 3
    assert len(calls) == 2
    assert refusals == [("m", "model_overloaded")] * 3
    assert lv.gate.inflight == 0


def test_a_pooled_call_past_its_timeout_is_answered_504_and_keeps_its_slot_until_it_ends() -> None:
    model = Blocking()
    lv, refusals = version(model, limit=1, timeout_s=0.05, inline=0)
    inference = Inference(1)

    async def scenario() -> None:
        with pytest.raises(InferenceTimeoutError) as late:
            await inference.run(lv, ROW)
        assert late.value.code == "inference_timeout"
        # Still running on the thread: the limit still counts it.
        with pytest.raises(OverloadedError):
            await inference.run(lv, ROW)
        model.release.set()
        await _wait_for(lambda: lv.gate.inflight == 0)
        out, _ = await inference.run(lv, ROW)
        assert out == [2.0]

    asyncio.run(scenario())
    inference.close()
    assert refusals == [("m", "inference_timeout"), ("m", "model_overloaded")]


def test_an_inline_request_whose_turn_comes_after_its_deadline_never_runs_the_model() -> None:
    calls: list[int] = []
    # A nanosecond: the loop turn every gated inline request waits is longer than that.
    lv, refusals = version(lambda b: calls.append(1) or [1.0], timeout_s=1e-9)

    async def scenario() -> None:
        with pytest.raises(InferenceTimeoutError):
            await Inference(1).run(lv, ROW)

    asyncio.run(scenario())
    assert calls == []
    assert refusals == [("m", "inference_timeout")]
    assert lv.gate.inflight == 0


def test_a_model_rule_overrides_the_defaults_and_a_model_without_limits_has_no_gate() -> None:
    settings = load_settings(
        environ={
            "STAGESERVE_CACHE_DIR": "/tmp/unused",
            "STAGESERVE_MAX_CONCURRENT_INFERENCES": "8",
            "STAGESERVE_INFERENCE_LIMITS": (
                '{"slow": {"timeout_s": 2.5}, "free": {"max_concurrent": 0}}'
            ),
        }
    )
    gates = Gates(settings, Refusals())
    slow, free, other = gates.of("slow"), gates.of("free"), gates.of("other")
    assert slow is not None and (slow.max_concurrent, slow.timeout_s) == (8, 2.5)
    assert free is None  # its own limit of 0 (none) over the default, and no timeout
    assert other is not None and other.max_concurrent == 8
    assert gates.of("slow") is slow  # one gate per model, shared by its versions
    assert Gates(load_settings(environ={"STAGESERVE_CACHE_DIR": "/x"}), Refusals()).any is False


@pytest.mark.parametrize(
    "env",
    [
        {"STAGESERVE_MAX_CONCURRENT_INFERENCES": "-1"},
        {"STAGESERVE_INFERENCE_TIMEOUT_S": "-0.5"},
        {"STAGESERVE_INFERENCE_LIMITS": '{"m": {"timeout_s": -1}}'},
        {"STAGESERVE_INFERENCE_LIMITS": '{"m": {"max_concurent": 1}}'},  # a typo: refused
    ],
)
def test_negative_or_misspelled_limits_are_refused_at_startup(env: dict[str, str]) -> None:
    from registry_sync.errors import SettingsError

    with pytest.raises(SettingsError):
        load_settings(environ={"STAGESERVE_CACHE_DIR": "/x", **env})
