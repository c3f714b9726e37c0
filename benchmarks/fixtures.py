"""The benchmarked models: trained once, saved as packages, registered in a real git registry.

Two models on 4 numeric mtcars features (hp, wt, disp, qsec): `linear` (LinearRegression) and
`gbr` (GradientBoostingRegressor, 10 trees of depth 2), both saved as scikit-learn packages
with their verified ONNX export, so stageserve serves them through onnxruntime. `gbr_pickle`
is the same GBR without an export (stageserve's sklearn engine), the like-for-like engine
comparison with the peers that serve the pickle. The registry is a real git repository
written with `registry_sync.registry.writer`; `stageserve sync --once` materializes it into
the cache that `stageserve serve --cache` follows, as in a sidecar deployment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_sync.package.data import mtcars
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.models import NUMERIC_FEATURES, save_sklearn_package
from tests.registry_packages import init_registry

__all__ = [
    "FEATURES",
    "MODELS",
    "Fixtures",
    "body_for",
    "build_fixtures",
    "feature_rows",
]

ROOT = Path(__file__).resolve().parents[1]
FEATURES: tuple[str, ...] = NUMERIC_FEATURES[:4]
# name -> (gbr?, export_onnx?)
MODELS: dict[str, tuple[bool, bool]] = {
    "linear": (False, True),
    "gbr": (True, True),
    "gbr_pickle": (True, False),
}
STAGE = "prod"
VERSION = "v1.0.0"


@dataclass(frozen=True)
class Fixtures:
    work: Path
    registry: Path
    cache: Path
    packages: dict[str, Path]
    onnx_files: dict[str, Path]  # the verified exports, for the minimal baselines


def feature_rows(n: int) -> list[list[float]]:
    """n mtcars rows (after the 32nd, from the first again) as lists of FEATURES values."""
    frame = mtcars()
    table = [[float(v) for v in row] for row in frame[list(FEATURES)].itertuples(index=False)]
    return [table[i % len(table)] for i in range(n)]


# stageserve's body formats a batch can come in (the 100-row scenarios of run.py)
BATCH_FORMATS = ("rows", "columns", "dataframe_split", "v2")


def body_for(kind: str, rows: int, model: str, fmt: str = "rows") -> bytes:
    """The request body each kind of server expects, for `rows` rows; stageserve's in any of
    BATCH_FORMATS (`v2` goes to the V2 infer path)."""
    values = feature_rows(rows)
    payload: Any
    if kind == "stageserve" and fmt != "rows":
        columns = {f: [row[j] for row in values] for j, f in enumerate(FEATURES)}
        if fmt == "columns":
            payload = {"inputs": columns}
        elif fmt == "dataframe_split":
            payload = {"dataframe_split": {"columns": list(FEATURES), "data": values}}
        else:
            payload = {
                "inputs": [
                    {"name": f, "shape": [rows], "datatype": "FP64", "data": columns[f]}
                    for f in FEATURES
                ]
            }
    elif kind == "mlflow":
        payload = {"dataframe_split": {"columns": list(FEATURES), "data": values}}
    elif kind == "mlserver":
        flat = [v for row in values for v in row]
        payload = {
            "inputs": [
                {
                    "name": "predict",
                    "shape": [rows, len(FEATURES)],
                    "datatype": "FP64",
                    "data": flat,
                }
            ]
        }
    else:  # stageserve and the minimal baselines: one object per row
        payload = {"inputs": [dict(zip(FEATURES, row, strict=True)) for row in values]}
    return json.dumps(payload, separators=(",", ":")).encode()


def build_fixtures(work: Path) -> Fixtures:
    """Train, save, register, assign to prod, and sync the registry into `work/cache`."""
    packages: dict[str, Path] = {}
    for name, (gbr, export) in MODELS.items():
        packages[name] = save_sklearn_package(
            work / "packages" / name, name=name, gbr=gbr, export_onnx=export
        )
    registry = GitRegistry(init_registry(work / "registry"))
    for name, path in packages.items():
        writer.register(registry, name, path, version=VERSION)
        writer.assign(registry, name, STAGE, VERSION)
    cache = work / "cache"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "sync",
            "--once",
            "--no-watch",
            "--registry",
            str(registry.path),
            "--cache",
            str(cache),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stageserve sync --once failed:\n{done.stdout}\n{done.stderr}")
    onnx_files = {n: p / "model.onnx" for n, p in packages.items() if (p / "model.onnx").exists()}
    return Fixtures(work, registry.path, cache, packages, onnx_files)
