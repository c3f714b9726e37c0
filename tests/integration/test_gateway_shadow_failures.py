"""Shadows that fail, are slow or move: clients never notice; the report counts it all.

- a candidate that raises on valid input: prod is a HistGradientBoostingRegressor (missing
  values are fine), dev a LinearRegression (raises on NaN), inputs with a null;
- a slow candidate: a brute-force k-NN over 500k rows (tens of ms a request) with a 5 ms
  shadow timeout and a queue of one, so shadows time out and the queue overflows;
- the shadow stage moving to a new version: a new comparison, the old one kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from registry_sync.package.data import mtcars
from registry_sync.package.read import read_package
from registry_sync.package.save import save_sklearn
from registry_sync.runtimes import load_predictor
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.integration.test_gateway_shadow import settle
from tests.models import NUMERIC_FEATURES, example_rows, save_sklearn_package

pytestmark = pytest.mark.slow

FEATURES = list(NUMERIC_FEATURES[:4])


def _frame() -> tuple[pd.DataFrame, pd.Series]:
    data = mtcars()
    return data[FEATURES], data["mpg"]


def _save_hgb(folder: Path) -> Path:
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = _frame()
    model = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(x, y)
    return save_sklearn(model, folder, example=x, name="cost").path


def _save_linear(folder: Path) -> Path:
    from sklearn.linear_model import LinearRegression

    x, y = _frame()
    return save_sklearn(LinearRegression().fit(x, y), folder, example=x, name="cost").path


def _save_slow_knn(folder: Path, rows: int = 500_000) -> Path:
    """k-NN by brute force over `rows` jittered copies of mtcars: ~7 ms for one row here."""
    from sklearn.neighbors import KNeighborsRegressor

    x, y = _frame()
    reps = rows // len(x) + 1
    noise = np.random.default_rng(0).normal(1.0, 0.05, (reps * len(x), len(FEATURES)))
    big = pd.DataFrame(np.repeat(x.to_numpy(), reps, axis=0) * noise, columns=FEATURES)
    model = KNeighborsRegressor(n_neighbors=5, algorithm="brute")
    model.fit(big, np.repeat(y.to_numpy(), reps))
    return save_sklearn(model, folder, example=x, name="cost").path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shadow-failures")


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[ServerProcess]:
    """`raising`, `moving` (shadow on), and what they serve."""
    cache = base / "cache"
    cache.mkdir()
    hgb, linear = _save_hgb(base / "hgb"), _save_linear(base / "linear")
    gbr = save_sklearn_package(base / "gbr", gbr=True)
    write_state(
        cache,
        [
            entry("raising", "prod", "v1.0.0", hgb),
            entry("raising", "dev", "v2.0.0", linear),
            entry("moving", "prod", "v1.0.0", linear),
            entry("moving", "dev", "v2.0.0", gbr),
        ],
    )
    env = {
        "STAGESERVE_SHADOW": json.dumps({"raising": {"prod": "dev"}, "moving": {"prod": "dev"}}),
        "STAGESERVE_ALLOW_NON_FINITE": "true",
        "STAGESERVE_DRAIN_S": "0.1",
    }
    with ServerProcess(cache, env=env) as srv:
        wait_until(lambda: srv.get("/readyz").status == 200, 60, "ready")
        yield srv


def _matrix(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array(
        [[np.nan if r[f] is None else r[f] for f in FEATURES] for r in rows], dtype=np.float64
    )


def test_a_shadow_that_raises_changes_nothing_for_clients_and_is_counted(
    server: ServerProcess, base: Path
) -> None:
    primary = load_predictor(read_package(base / "hgb"))
    for i in range(20):
        rows: list[dict[str, Any]] = example_rows(2)
        if i % 2:
            rows[0]["hp"] = None  # valid (allow_non_finite), and the candidate cannot take it
        served = server.predict("raising", {"inputs": rows}, x_request_id=f"raise-{i}")
        assert served.status == 200
        assert served.headers["x-model-version"] == "v1.0.0"
        expected = primary.predict_matrix(_matrix(rows)).tolist()
        assert served.body["predictions"] == pytest.approx(expected, rel=1e-12)
    body = settle(server, "raising", 20)
    (pair,) = body["pairs"]
    assert pair["requests"] == 10
    assert pair["errors"]["error"] == 10
    assert sum(pair["errors"].values()) == 10
    metrics = server.get("/metrics").body
    assert 'stageserve_shadow_errors_total{kind="error",model="raising"} 10.0' in metrics
    # Logged, at most once a minute per model and kind: one line for ten failures.
    lines = [ln for ln in server.logs().splitlines() if "shadow raising error" in ln]
    assert len(lines) == 1
    assert "contains NaN" in lines[0]


def test_a_new_shadow_version_restarts_the_comparison_and_keeps_the_old_one(
    server: ServerProcess, base: Path
) -> None:
    rows = example_rows(3)
    for i in range(10):
        assert server.predict("moving", {"inputs": rows}, x_request_id=f"mv-a{i}").status == 200
    before = settle(server, "moving", 10)["pairs"][0]
    assert (before["shadow_version"], before["requests"]) == ("v2.0.0", 10)

    shifted = save_sklearn_package(base / "shifted", offset=5.0)  # the primary, plus 5
    cache = server.cache
    state = json.loads((cache / "snapshot.json").read_text())
    entries = [
        entry(e["model"], e["stage"], e["version"], Path(e["package_path"]))
        for e in state["entries"]
        if (e["model"], e["stage"]) != ("moving", "dev")
    ]
    write_state(cache, [*entries, entry("moving", "dev", "v3.0.0", shifted)])

    def moved() -> bool:
        stages = server.get("/models/moving").body["stages"]
        return bool(stages["dev"]["version"] == "v3.0.0")

    wait_until(moved, 60, "dev to serve v3.0.0")
    for i in range(7):
        assert server.predict("moving", {"inputs": rows}, x_request_id=f"mv-b{i}").status == 200
    body = settle(server, "moving", 17)
    new, old = body["pairs"]
    assert (new["shadow_version"], new["current"], new["requests"]) == ("v3.0.0", True, 7)
    assert new["abs_diff"]["p50"] == pytest.approx(5.0, rel=1e-6)
    assert new["since"] > old["since"]
    assert (old["shadow_version"], old["current"], old["requests"]) == ("v2.0.0", False, 10)
    assert old["abs_diff"] == before["abs_diff"]


def test_a_slow_shadow_times_out_overflows_its_queue_and_clients_see_nothing(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    linear = _save_linear(tmp_path / "linear")
    write_state(
        cache,
        [
            entry("slow", "prod", "v1.0.0", linear),
            entry("slow", "dev", "v2.0.0", _save_slow_knn(tmp_path / "knn")),
        ],
    )
    env = {
        "STAGESERVE_SHADOW": '{"slow": {"prod": "dev"}}',
        "STAGESERVE_SHADOW_TIMEOUT_S": "0.005",
        "STAGESERVE_SHADOW_QUEUE_MAX": "1",
        "STAGESERVE_DRAIN_S": "0.1",
    }
    primary = load_predictor(read_package(linear))
    rows = example_rows(32)
    expected = primary.predict_matrix(_matrix(rows)).tolist()
    with ServerProcess(cache, env=env) as srv:
        wait_until(lambda: srv.get("/readyz").status == 200, 60, "ready")
        dev = srv.get("/models/slow").body["stages"]["dev"]
        assert dev["inline_max_rows"] == 0  # slow: it runs on the shadow thread
        for i in range(30):
            served = srv.predict("slow", {"inputs": rows}, x_request_id=f"slow-{i}")
            assert served.status == 200
            assert served.headers["x-model-version"] == "v1.0.0"
            assert served.body["predictions"] == pytest.approx(expected, rel=1e-12)
        body = settle(srv, "slow", 30)
        metrics = srv.get("/metrics").body
    (pair,) = body["pairs"]
    assert pair["requests"] == 0
    assert pair["errors"]["timeout"] >= 1
    assert pair["skipped"]["queue_full"] >= 1
    assert body["skipped"]["queue_full"] == pair["skipped"]["queue_full"]
    assert pair["errors"]["timeout"] + pair["skipped"]["queue_full"] == 30
    full = body["skipped"]["queue_full"]
    assert f'stageserve_shadow_skipped_total{{model="slow",reason="queue_full"}} {full:.1f}' in (
        metrics
    )
