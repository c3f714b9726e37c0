"""The shadow process's answers (child.py) computed in this process, on fake versions: every
failure is an error kind, never an exception; old versions are closed; frames round-trip."""

from __future__ import annotations

import io
import pickle
import time
from typing import Any

import msgspec
import numpy as np

from gateway.errors import InputValidationError
from gateway.shadow.child import (
    HEADER,
    ChildConfig,
    ShadowAnswers,
    ShadowCall,
    ShadowCalls,
    Versions,
    answer,
    serve,
)
from tests.unit.gateway.fakes import FakeLoader, entry

BODY = b'{"inputs": [{"hp": 10.0, "wt": 1.0}, {"hp": 20.0, "wt": 1.0}]}'


def _call(version: str = "v3") -> ShadowCall:
    loader = FakeLoader()
    batch = loader(entry("cost", "dev", version)).schema.decode(BODY)
    return ShadowCall(entry=entry("cost", "dev", version), batch=batch)


def test_a_call_is_answered_with_the_validated_predictions() -> None:
    result = answer(_call(), Versions(FakeLoader()), timeout_s=1.0)
    assert (result.kind, result.predictions) == (None, [30.0, 60.0])


def test_a_version_that_fails_to_load_is_an_error_answer() -> None:
    result = answer(_call(), Versions(FakeLoader(broken={"v3"})), timeout_s=1.0)
    assert result.kind == "error"
    assert "load" in result.detail and "artifact is corrupt" in result.detail


def _versions_predicting(predict: Any) -> Versions:
    loader = FakeLoader()

    def load(e: Any) -> Any:
        lv = loader(e)
        lv.predict = predict
        return lv

    return Versions(load)


def test_model_failures_become_error_kinds() -> None:
    def raises(_: Any) -> Any:
        raise RuntimeError("boom")

    def refuses(_: Any) -> Any:
        raise InputValidationError("$.inputs[0].hp", "not a number", "type")

    def wrong_length(_: Any) -> Any:
        return np.array([1.0, 2.0, 3.0])

    kinds = {
        name: answer(_call(), _versions_predicting(fn), timeout_s=1.0)
        for name, fn in (("raises", raises), ("refuses", refuses), ("short", wrong_length))
    }
    assert (kinds["raises"].kind, kinds["raises"].detail) == ("error", "RuntimeError: boom")
    assert kinds["refuses"].kind == "input_mismatch"
    assert kinds["short"].kind == "invalid_output"
    assert all(r.predictions is None for r in kinds.values())


def test_the_timeout_counts_the_calls_cpu_seconds() -> None:
    def burns(batch: Any) -> Any:
        started = time.process_time()
        while time.process_time() - started < 0.02:  # 20 ms of CPU, however long it takes
            pass
        return batch.matrix[:, 0]

    result = answer(_call(), _versions_predicting(burns), timeout_s=0.005)
    assert result.kind == "timeout"
    assert result.shadow_s >= 0.02


def test_only_the_most_recently_used_versions_stay_loaded() -> None:
    loader = FakeLoader()
    versions = Versions(loader, max_versions=2)
    for version in ("v2", "v3", "v2", "v4"):  # v3 is the least recently used when v4 comes
        answer(_call(version), versions, timeout_s=1.0)
    closed = {v: loader.loaded[("cost", v)].predictor.closed for v in ("v2", "v3", "v4")}
    assert closed == {"v2": False, "v3": True, "v4": False}


def test_serve_answers_each_frame_of_calls_in_order_until_its_input_ends() -> None:
    calls = b""
    for seq, n in ((1, 2), (2, 1)):
        body = pickle.dumps(ShadowCalls(seq=seq, calls=[_call()] * n))
        calls += HEADER.pack(len(body)) + body
    out = io.BytesIO()
    # serve() builds the real loader: the fake package paths do not load, each call is an
    # error answer (the real loads are tests/integration/test_gateway_shadow_process.py's).
    serve(ChildConfig(), io.BytesIO(calls), out)
    frames = out.getvalue()
    results = []
    while frames:
        (size,) = HEADER.unpack(frames[: HEADER.size])
        payload = frames[HEADER.size : HEADER.size + size]
        results.append(msgspec.msgpack.decode(payload, type=ShadowAnswers))
        frames = frames[HEADER.size + size :]
    kinds = [(a.seq, [r.kind for r in a.results]) for a in results]
    assert kinds == [(1, ["error", "error"]), (2, ["error"])]
