"""What loading a model file costs under the allowlist: plain pickle (what ran before),
the restricted unpickler, and skops, on scikit-learn models of growing size; and the files'
sizes. Once per version load, never per request.

    .venv/bin/python -m benchmarks.load_formats [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import pickle
import statistics
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _models() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    from registry_sync.package.data import mtcars
    from tests.models import train_sklearn_linear

    data = mtcars()
    x, y = data[["hp", "wt", "cyl"]], data["mpg"]
    return {
        "linear": train_sklearn_linear()[0],
        "gbr 60 trees": GradientBoostingRegressor(n_estimators=60, max_depth=2).fit(x, y),
        "forest 100 trees": RandomForestRegressor(n_estimators=100, random_state=0).fit(x, y),
    }


def _ms(load: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        load()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    import skops.io

    from registry_sync.runtimes.safe_load.skops_file import loads_skops
    from registry_sync.runtimes.safe_load.unpickler import restricted_loads

    print("model | pickle KB | skops KB | pickle.loads ms | restricted ms | skops ms")
    for name, model in _models().items():
        pickled = pickle.dumps(model, protocol=5)
        skopsed = skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        plain = _ms(lambda p=pickled: pickle.Unpickler(io.BytesIO(p)).load(), args.repeat)
        safe = _ms(lambda p=pickled: restricted_loads(p), args.repeat)
        sk = _ms(lambda s=skopsed: loads_skops(s), args.repeat)
        print(
            f"{name} | {len(pickled) / 1024:.0f} | {len(skopsed) / 1024:.0f} | "
            f"{plain:.2f} | {safe:.2f} | {sk:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
