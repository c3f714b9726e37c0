"""Positional requests keep their meaning across a swap (real registry, server and tritonclient).

The issue's silent wrong answer: a model registered with inputs [hp, wt] and then a version
listing them [wt, hp]; a V2 request sending one [rows, 2] tensor answered 23.57 before the swap
and -389.42 (status 200) after. Now the positional order is part of the model's contract:
`assign` refuses a version that moves it, a version may list its inputs in any order as long
as it declares the same positional order, and the gateway reads positional tensors in it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest
import yaml

from registry_sync.package.data import mtcars
from registry_sync.package.save import save_sklearn
from tests.integration.server import ROOT, ServerProcess, wait_until
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow

MODEL = "fuel"
ROW = [110.0, 2.62]  # hp, wt: the first mtcars car


def _package(folder: Path, columns: list[str], *, positional: list[str] | None) -> Path:
    """A LinearRegression of mpg on `columns` (in that order), declaring `positional`."""
    from sklearn.linear_model import LinearRegression

    data = mtcars()
    features = data[columns]
    model = LinearRegression().fit(features, data["mpg"])
    saved = save_sklearn(model, folder, example=features, name=MODEL, export_onnx=True)
    if positional is not None:
        signature = msgspec.structs.replace(saved.manifest.signature, positional_order=positional)
        _rewrite_signature(folder, msgspec.to_builtins(signature))
    else:
        # A model.yaml written before `positional_order` existed.
        data_yaml = yaml.safe_load((folder / "model.yaml").read_text())
        del data_yaml["signature"]["positional_order"]
        (folder / "model.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False))
    return folder


def _rewrite_signature(folder: Path, signature: dict[str, object]) -> None:
    manifest = yaml.safe_load((folder / "model.yaml").read_text())
    manifest["signature"] = signature
    (folder / "model.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def _cli(registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "registry", *args, "--registry", str(registry)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _expected(columns: list[str]) -> float:
    """The model's answer for ROW computed in-process (hp=110, wt=2.62 by name)."""
    from sklearn.linear_model import LinearRegression

    data = mtcars()
    model = LinearRegression().fit(data[columns], data["mpg"])
    row = pd.DataFrame([{"hp": ROW[0], "wt": ROW[1]}])[columns]
    return float(model.predict(row)[0])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, ServerProcess]]:
    registry = init_registry(tmp_path / "registry")
    packages = tmp_path / "packages"
    _package(packages / "v1", ["hp", "wt"], positional=["hp", "wt"])
    assert (
        _cli(registry, "register", MODEL, str(packages / "v1"), "--version", "v1.0.0").returncode
        == 0
    )
    assert _cli(registry, "assign", MODEL, "prod", "--version", "v1.0.0").returncode == 0
    cache = tmp_path / "cache"
    cache.mkdir()
    args = ["--registry", str(registry), "--poll-interval-s", "0.5"]
    with ServerProcess(cache, args=args) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        yield registry, server


def _infer_positional(server: ServerProcess) -> tuple[str, float]:
    """One [1, 2] tensor through the stock tritonclient, as a Triton user would send it."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        tensor = triton.InferInput("input-0", [1, 2], "FP64")
        tensor.set_data_from_numpy(np.array([ROW], dtype=np.float64), binary_data=True)
        result = client.infer(MODEL, [tensor])
        answer = result.get_response()
        return answer["model_version"], float(result.as_numpy("prediction")[0])
    finally:
        client.close()


def _serving(server: ServerProcess, version: str) -> bool:
    return server.get(f"/v2/models/{MODEL}/ready").headers.get("x-model-version") == version


def test_positional_requests_keep_their_meaning_across_versions_that_list_inputs_differently(
    served: tuple[Path, ServerProcess], tmp_path: Path
) -> None:
    registry, server = served
    version, before = _infer_positional(server)
    assert version == "v1.0.0"
    # Same data, same least-squares fit: only the float rounding of the columns' order
    # differs between the two fits and the in-process one (1e-9 is far above it).
    assert before == pytest.approx(_expected(["hp", "wt"]), abs=1e-9)

    # v2 lists its inputs [wt, hp] but keeps the contract's positional order [hp, wt].
    _package(tmp_path / "v2", ["wt", "hp"], positional=["hp", "wt"])
    assert (
        _cli(registry, "register", MODEL, str(tmp_path / "v2"), "--version", "v2.0.0").returncode
        == 0
    )
    assigned = _cli(registry, "assign", MODEL, "prod", "--version", "v2.0.0")
    assert assigned.returncode == 0, assigned.stderr
    wait_until(lambda: _serving(server, "v2.0.0"), 30, "prod to serve v2.0.0")
    version, after = _infer_positional(server)
    assert version == "v2.0.0"
    assert after == pytest.approx(before, abs=1e-9)

    # v3 moves the positional order: refused, naming the change, and prod keeps v2.
    _package(tmp_path / "v3", ["wt", "hp"], positional=["wt", "hp"])
    assert (
        _cli(registry, "register", MODEL, str(tmp_path / "v3"), "--version", "v3.0.0").returncode
        == 0
    )
    refused = _cli(registry, "assign", MODEL, "prod", "--version", "v3.0.0")
    assert refused.returncode == 1
    assert "positional input order changed from [hp, wt] to [wt, hp]" in refused.stderr
    assert _cli(registry, "which", MODEL, "prod", "--json").stdout.count('"v2.0.0"') == 1


def test_old_packages_without_a_declared_order_cannot_be_swapped_into_a_new_order(
    tmp_path: Path,
) -> None:
    # The exact sequence, with model.yaml files from before the field existed.
    registry = init_registry(tmp_path / "registry")
    _package(tmp_path / "a", ["hp", "wt"], positional=None)
    _package(tmp_path / "b", ["wt", "hp"], positional=None)
    assert (
        _cli(registry, "register", MODEL, str(tmp_path / "a"), "--version", "v1.0.0").returncode
        == 0
    )
    assert (
        _cli(registry, "register", MODEL, str(tmp_path / "b"), "--version", "v2.0.0").returncode
        == 0
    )
    assert _cli(registry, "assign", MODEL, "prod", "--version", "v1.0.0").returncode == 0
    refused = _cli(registry, "assign", MODEL, "prod", "--version", "v2.0.0")
    assert refused.returncode == 1
    assert "positional input order changed from [hp, wt] to [wt, hp]" in refused.stderr
    forced = _cli(registry, "assign", MODEL, "prod", "--version", "v2.0.0", "--force")
    assert forced.returncode == 0, forced.stderr
