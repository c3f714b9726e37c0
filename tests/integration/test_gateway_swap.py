"""Swaps under load through a real server: no failed request, every answer stamped correctly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.load import LoadStream
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package, save_sklearn_package

ROW = example_rows(1)[0]


def _corrupt(package: Path) -> Path:
    artifact = next(p for p in package.iterdir() if p.suffix in (".onnx", ".pkl", ".skops"))
    artifact.write_bytes(artifact.read_bytes()[:-16] + b"\0" * 16)
    return package


def _stage(server: ServerProcess, model: str, stage: str) -> dict[str, object]:
    answer = server.get(f"/models/{model}")
    return answer.body["stages"][stage] if answer.status == 200 else {}  # type: ignore[no-any-return]


def test_swap_in_the_middle_of_a_request_stream_fails_no_request(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    v1 = entry("cost", "prod", "v1.0.0", save_onnx_package(tmp_path / "v1"))
    v2 = entry("cost", "prod", "v2.0.0", save_onnx_package(tmp_path / "v2", offset=100))
    write_state(cache, [v1])
    with ServerProcess(cache) as server:
        wait_until(lambda: _stage(server, "cost", "prod").get("state") == "loaded", 60, "v1")
        reference = server.predict("cost", {"inputs": [ROW]}).body["predictions"][0]
        with LoadStream(server.port, "/predict/cost", {"inputs": [ROW]}, clients=4) as stream:
            wait_until(lambda: len(stream.answers) >= 40, 30, "answers from v1")
            write_state(cache, [v2])
            wait_until(
                lambda: any(a.version == "v2.0.0" for a in stream.answers), 60, "answers from v2"
            )
            first_v2 = min(a.received_at for a in stream.answers if a.version == "v2.0.0")
            wait_until(lambda: len(stream.answered_since(first_v2)) >= 40, 30, "more v2")
        answers = stream.stop()
    assert [a.error for a in answers if a.status != 200] == []
    by_version = {"v1.0.0": reference, "v2.0.0": reference + 100}
    for a in answers:
        assert a.body is not None
        assert a.body["version"] == a.version
        assert a.body["predictions"][0] == pytest.approx(by_version[a.version])  # type: ignore[index]
    # Once a v2 answer came back, every request sent afterwards is answered by v2.
    assert {a.version for a in answers if a.sent_at > first_v2} == {"v2.0.0"}
    assert {a.version for a in answers} == {"v1.0.0", "v2.0.0"}


def test_a_version_that_fails_to_load_keeps_the_previous_one_serving(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    v1 = entry("lin", "prod", "v1.0.0", save_sklearn_package(tmp_path / "v1", name="lin"))
    bad = save_sklearn_package(tmp_path / "v2", name="lin", offset=100)
    v2 = entry("lin", "prod", "v2.0.0", _corrupt(bad))
    write_state(cache, [v1])
    with ServerProcess(cache) as server:
        wait_until(lambda: _stage(server, "lin", "prod").get("state") == "loaded", 60, "v1")
        with LoadStream(server.port, "/predict/lin", {"inputs": [ROW]}, clients=2) as stream:
            wait_until(lambda: len(stream.answers) >= 10, 30, "answers from v1")
            write_state(cache, [v2])
            wait_until(
                lambda: _stage(server, "lin", "prod").get("state") == "failed", 60, "v2 failing"
            )
            failed_at = time.monotonic()
            wait_until(lambda: len(stream.answered_since(failed_at)) >= 10, 30, "more answers")
        answers = stream.stop()
        status = _stage(server, "lin", "prod")
        ready = server.get("/readyz")
    assert [a.error for a in answers if a.status != 200] == []
    assert {a.version for a in answers} == {"v1.0.0"}
    assert status["version"] == "v1.0.0"
    assert status["assigned_version"] == "v2.0.0"
    assert "sha256" in str(status["last_error"])
    # v1 still answers, so the replica stays in the Service; the failed swap is reported.
    assert ready.status == 200
    assert ready.body["pending"] == [f"lin#prod: v2.0.0 failed ({status['last_error']})"]
