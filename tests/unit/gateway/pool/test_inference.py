"""The inline-or-pool rule chosen from the measurements in gateway/inference.py."""

from __future__ import annotations

from gateway.pool.inference import INLINE_MAX_ROWS, inline_max_rows


def test_onnx_runs_inline_at_any_size_and_unknown_engines_never_do() -> None:
    assert inline_max_rows("onnx", 20e-6) > 10**9
    assert inline_max_rows("tensorflow", 1e-6) == 0


def test_sklearn_and_statsmodels_run_small_requests_inline_unless_a_call_is_slow() -> None:
    assert inline_max_rows("sklearn", 200e-6) == INLINE_MAX_ROWS
    assert inline_max_rows("statsmodels", 400e-6) == INLINE_MAX_ROWS
    assert inline_max_rows("sklearn", 5e-3) == 0
