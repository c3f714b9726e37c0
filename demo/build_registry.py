"""Build the demo registry from scratch: the seed article's cost_predictor, three versions.

v1.0.0  statsmodels OLS `mpg ~ hp + C(cyl) + wt - 1` on mtcars (the article's model)  -> prod
v1.1.0  scikit-learn gradient boosting on the same inputs
v1.2.0  the same scikit-learn model exported to ONNX (parity checked)               -> dev

Everything is trained here in a second from the 32-row mtcars data shipped with stageserve;
nothing is downloaded. Run by `make demo`, which then serves the registry.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import statsmodels.formula.api as smf
from sklearn.ensemble import GradientBoostingRegressor

from registry_sync.package.data import mtcars
from registry_sync.package.manifest import ModelCard, Signature
from registry_sync.package.save import onnx_package_from_sklearn, save_sklearn, save_statsmodels
from registry_sync.package.signature import infer_inputs, infer_outputs
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry

# The coefficients printed in the seed article (Turrell, "Why have a model registry?", 2023).
ARTICLE_COEFFICIENTS = {
    "C(cyl)[4]": 35.8460,
    "C(cyl)[6]": 32.4870,
    "C(cyl)[8]": 32.6601,
    "hp": -0.0231,
    "wt": -3.1814,
}
MODEL = "cost_predictor"
CARD = ModelCard(
    description="Fuel consumption (miles per gallon) of a car from its horsepower, weight "
    "and number of cylinders.",
    intended_use="Demo of stageserve: cost estimates for fleet planning.",
    limitations="Fit on 32 cars from 1973-74 (mtcars); do not extrapolate to modern cars.",
    owner="demo@stageserve",
    training_data="R datasets::mtcars, 32 rows, shipped in registry_sync/package/data/mtcars.csv",
)


def build(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    _git(target, "init", "-q", "-b", "main")
    (target / ".gto").write_text("stages: [dev, staging, prod]\n")
    (target / "README.md").write_text("# Demo model registry (GTO tag format)\n")
    _git(target, "add", ".")
    _git(target, "commit", "-q", "-m", "Start the demo registry")
    registry = GitRegistry(target)
    data = mtcars()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ols = smf.ols("mpg ~ hp + C(cyl) + wt - 1", data=data).fit()
        _check_article(ols.params)
        # The inputs in the order every version of the demo declares (hp, wt, cyl): positional
        # requests (a V2 [rows, 3] tensor, lists of lists) mean the same for all of them.
        save_statsmodels(
            ols,
            work / "ols",
            example=data[["hp", "wt", "cyl"]],
            name=MODEL,
            metrics={"r2": round(float(ols.rsquared), 4), "aic": round(float(ols.aic), 2)},
            card=CARD,
            labels=["regression", "mtcars"],
        )
        _report(writer.register(registry, MODEL, work / "ols", version="v1.0.0"))
        _report(writer.assign(registry, MODEL, "prod", "v1.0.0"))

        features = pd.DataFrame(
            {"hp": data["hp"], "wt": data["wt"], "cyl": data["cyl"].astype("int64")}
        )
        gbr = GradientBoostingRegressor(n_estimators=60, max_depth=2, random_state=0)
        gbr.fit(features, data["mpg"])
        r2 = round(float(gbr.score(features, data["mpg"])), 4)
        # The same inputs as v1.0.0, cyl restricted to the cylinder counts it was trained on,
        # so promoting it to prod (and rolling back) keeps prod's clients working.
        signature = Signature(
            inputs=infer_inputs(features.assign(cyl=data["cyl"])),
            outputs=infer_outputs(gbr.predict(features)),
        )
        common = {
            "example": features,
            "name": MODEL,
            "metrics": {"r2": r2},
            "card": CARD,
            "signature": signature,
        }
        save_sklearn(gbr, work / "gbr", labels=["regression", "mtcars", "sklearn"], **common)
        _report(writer.register(registry, MODEL, work / "gbr", version="v1.1.0"))
        onnx_package_from_sklearn(gbr, work / "onnx", labels=["regression", "mtcars"], **common)
        _report(writer.register(registry, MODEL, work / "onnx", version="v1.2.0"))
        _report(writer.assign(registry, MODEL, "dev", "v1.2.0"))


def _check_article(params: pd.Series) -> None:
    for name, expected in ARTICLE_COEFFICIENTS.items():
        if abs(float(params[name]) - expected) > 5e-4:
            sys.exit(f"mtcars fit differs from the article: {name} = {params[name]:.4f}")
    print("v1.0.0 reproduces the article's coefficients:", end=" ")
    print(", ".join(f"{k} {float(params[k]):.4f}" for k in ARTICLE_COEFFICIENTS))


def _report(tag: object) -> None:
    print(f"  tagged {getattr(tag, 'tag', tag)}")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True)


TRY = """
stageserve is starting on http://127.0.0.1:{port} (Ctrl-C stops it). In another terminal:

  # prod serves v1.0.0 (statsmodels OLS); dev serves v1.2.0 (ONNX)
  curl -s -X POST 'http://127.0.0.1:{port}/predict/{model}?stage=prod' \\
       -H 'content-type: application/json' -d '{{"inputs": [{{"hp": 110, "wt": 2.62, "cyl": 6}}]}}'
  curl -s -X POST 'http://127.0.0.1:{port}/predict/{model}?stage=dev' \\
       -H 'content-type: application/json' -d '{{"inputs": {{"hp": [110, 175], "wt": [2.62, 3.44], "cyl": [6, 8]}}}}'

  # a bad request names the field and changes nothing
  curl -s -X POST 'http://127.0.0.1:{port}/predict/{model}' \\
       -H 'content-type: application/json' -d '{{"inputs": [{{"hp": "fast", "wt": 2.62, "cyl": 6}}]}}'

  # what is served, by which version, and the metrics
  curl -s http://127.0.0.1:{port}/models/{model}
  curl -s http://127.0.0.1:{port}/metrics | grep '^stageserve_requests_total'

  # promote dev's version to prod while the server runs; the next response says v1.2.0
  .venv/bin/stageserve registry assign {model} prod --version v1.2.0 --registry {registry}
  curl -si -X POST 'http://127.0.0.1:{port}/predict/{model}?stage=prod' \\
       -H 'content-type: application/json' -d '{{"inputs": [{{"hp": 110, "wt": 2.62, "cyl": 6}}]}}'

  # roll back by re-assigning the old version, then ask both sides what served prod
  .venv/bin/stageserve registry assign {model} prod --version v1.0.0 --registry {registry}
  .venv/bin/stageserve registry history {model} --registry {registry}
  .venv/bin/stageserve which {model} prod --served --journal {journal} --registry {registry}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="folder to (re)create the registry in")
    parser.add_argument("--port", type=int, default=8000, help="port shown in the examples")
    parser.add_argument("--journal", default=".demo/journal.jsonl", help="shown in the examples")
    args = parser.parse_args()
    build(args.target)
    print(TRY.format(port=args.port, model=MODEL, registry=args.target, journal=args.journal))


if __name__ == "__main__":
    main()
