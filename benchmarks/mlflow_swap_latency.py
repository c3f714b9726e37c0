"""Time from an MLflow alias move to the first answer from the new version, at the default
poll interval (10 s), with requests flowing; loopback only.

Starts a real `mlflow server` (SQLite, local artifacts), logs two versions of a model with
MLflow's own log_model, serves `@prod` with `stageserve serve --registry mlflow+http://…`
(embedded sync, no --poll-interval-s: the default), then moves the alias back and forth while
a client keeps requesting prod. The lag is poll wait (uniform over one interval, ±10 % jitter)
plus fetching, loading and warming the new version (the first move) or only the swap (later
moves reuse the cached packages).

    .venv/bin/python benchmarks/mlflow_swap_latency.py [--moves 6] [--right-after-poll]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.load import LoadStream  # noqa: E402
from tests.integration.mlflow_server import MlflowServer, log_models  # noqa: E402
from tests.integration.server import ServerProcess, wait_until  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--moves", type=int, default=6)
    parser.add_argument(
        "--right-after-poll",
        action="store_true",
        help="move as soon as the previous move was served, i.e. just after a poll (the worst "
        "case); by default each move waits a random 0-10 s first, as a person's would",
    )
    args = parser.parse_args()
    phase = random.Random(15)
    with tempfile.TemporaryDirectory(prefix="stageserve-mlflow-bench-") as tmp:
        work = Path(tmp)
        with MlflowServer(work / "mlflow") as mlflow:
            v1, v2 = log_models(
                mlflow,
                [
                    {"model": "cost", "flavor": "sklearn"},
                    {"model": "cost", "flavor": "sklearn", "offset": 100.0},
                ],
            )
            mlflow.set_alias("cost", "prod", v1["version"])
            cache = work / "cache"
            cache.mkdir()
            serve_args = ["--registry", mlflow.registry]
            with ServerProcess(cache, args=serve_args) as server:
                wait_until(lambda: server.get("/readyz").status == 200, 120, "readiness")
                body = {"inputs": [v1["row"]]}
                lags: list[float] = []
                # Each move waits up to one poll interval (10 s) plus the swap: budget 30 s.
                stream = LoadStream(
                    server.port, "/predict/cost?stage=prod", body, clients=1,
                    max_seconds=40.0 * args.moves + 30.0,
                )  # fmt: skip
                with stream as load:
                    for index in range(args.moves):
                        version = (v2, v1)[index % 2]["version"]
                        if not args.right_after_poll:
                            time.sleep(phase.uniform(0.0, 10.0))
                        moved = time.monotonic()
                        mlflow.set_alias("cost", "prod", version)
                        wait_until(
                            lambda v=version, t=moved: any(
                                a.version == v for a in load.answered_since(t)
                            ),
                            60,
                            f"prod to serve {version}",
                        )
                        lags.append(time.monotonic() - moved)
                    answers = load.stop()
    failed = sum(1 for a in answers if a.status != 200)
    each = ", ".join(f"{lag:.2f}" for lag in lags)
    print(
        f"MLflow alias move -> first new answer (default poll 10 s, {args.moves} moves, "
        f"{'right after a poll' if args.right_after_poll else 'random phase'}): "
        f"median {statistics.median(lags):.2f} s, mean {statistics.mean(lags):.2f} s, "
        f"min {min(lags):.2f} s, max {max(lags):.2f} s; each {each}; "
        f"failed {failed} of {len(answers)}"
    )


if __name__ == "__main__":
    main()
