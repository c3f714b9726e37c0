"""What a gateway serving only ONNX models keeps in memory: no pandas (~30-50 MiB
resident), no JWT crypto backend while auth is off (~10 MiB).

pandas is needed to build frames for scikit-learn and statsmodels models and to infer
signatures when saving; a gateway whose versions are all ONNX never imports it. PyJWT and
`cryptography` verify tokens only when `jwks` is set. Observed from outside, in the
server's memory map, after real predictions with the audit on.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package, save_sklearn_package


def _mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _serve_and_predict(tmp_path: Path, package: Path) -> str:
    cache = tmp_path / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", package)])
    audit = tmp_path / "audit.jsonl"
    with ServerProcess(cache, args=["--audit-path", str(audit)]) as server:
        assert server.proc is not None
        wait_until(lambda: _state(server) == "loaded", 60, "cost loaded")
        for form in ({"inputs": example_rows(3)}, {"dataframe_split": _split(example_rows(2))}):
            answer = server.predict("cost", form)
            assert answer.status == 200, answer.body
        return _mapped_libraries(server.proc.pid)


def _state(server: ServerProcess) -> object:
    answer = server.get("/models/cost")
    return answer.body["stages"]["prod"].get("state") if answer.status == 200 else None  # type: ignore[index]


def _split(rows: list[dict[str, float]]) -> dict[str, object]:
    columns = list(rows[0])
    return {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}


def test_a_gateway_serving_onnx_never_loads_pandas(tmp_path: Path) -> None:
    maps = _serve_and_predict(tmp_path, save_onnx_package(tmp_path / "v1"))
    assert "onnxruntime" in maps  # the model is loaded and answering
    assert "/site-packages/pandas/" not in maps
    assert "/site-packages/cryptography/" not in maps  # auth is off


def test_a_gateway_serving_scikit_learn_loads_pandas_for_its_frames(tmp_path: Path) -> None:
    # The other side of the same rule: the sklearn runtime builds named frames.
    maps = _serve_and_predict(tmp_path, save_sklearn_package(tmp_path / "v1"))
    assert "/site-packages/pandas/" in maps
