"""CPU per request of each request format on the predict path, in process.

The gateway app (create_app, fast lane, a real ONNX linear model on 4 inputs) is called as
uvicorn calls it (the ASGI app) with prebuilt requests, one row each, so what is measured is the
predict path itself: body reading (and decompression), decoding into the signature, the
model call, output checks, encoding, metrics. Formats are interleaved round by round and
each reports the median CPU time (`time.process_time`) per request.

`--tree DIR` runs the same requests against another checkout (e.g. an older commit exported
with `git archive`), for an A/B of a change; formats that tree does not serve are skipped.

    .venv/bin/python -m benchmarks.protocol_cost [--requests 20000] [--rounds 5] [--tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "cost_predictor"

Request = tuple[str, bytes, list[tuple[bytes, bytes]], bytes]  # path, query, headers, body


def _requests(features: list[str], row: dict[str, float]) -> dict[str, Request]:
    import numpy as np

    json_type = [(b"content-type", b"application/json")]
    rows = json.dumps({"inputs": [row]}).encode()
    tensors = [{"name": f, "shape": [1], "datatype": "FP64", "data": [row[f]]} for f in features]
    raw = b"".join(np.array([row[f]], dtype="<f8").tobytes() for f in features)
    header = json.dumps(
        {
            "inputs": [
                {"name": f, "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}}
                for f in features
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    matrix = [
        {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [row[f] for f in features]}
    ]
    split = {"columns": features, "data": [[row[f] for f in features]], "index": [0]}
    csv = (",".join(features) + "\n" + ",".join(str(row[f]) for f in features) + "\n").encode()
    predict, v2 = f"/predict/{MODEL}", f"/v2/models/{MODEL}/infer"
    return {
        "/predict JSON rows": (predict, b"stage=prod", json_type, rows),
        "/predict JSON, no content-type": (predict, b"stage=prod", [], rows),
        "/predict JSON, gzip": (
            predict,
            b"stage=prod",
            [*json_type, (b"content-encoding", b"gzip")],
            gzip.compress(rows),
        ),
        "V2 JSON tensors": (v2, b"", json_type, json.dumps({"inputs": tensors}).encode()),
        "V2 [1, 4] positional tensor": (
            v2,
            b"",
            json_type,
            json.dumps({"inputs": matrix}).encode(),
        ),
        "V2 binary in and out": (
            v2,
            b"",
            [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(len(header)).encode()),
            ],
            header + raw,
        ),
        "/invocations dataframe_split": (
            "/invocations",
            b"",
            json_type,
            json.dumps({"dataframe_split": split}).encode(),
        ),
        "/invocations text/csv": ("/invocations", b"", [(b"content-type", b"text/csv")], csv),
    }


def _app(folder: Path) -> Any:
    from gateway.app import create_app, gateway_of
    from gateway.settings import Settings
    from registry_sync.package.read import read_package
    from registry_sync.sync.snapshot import DesiredEntry, DesiredState
    from tests.models import save_onnx_package

    package = save_onnx_package(folder / "pkg")
    state = DesiredState(
        generated_at="2026-01-01T00:00:00Z",
        registry="bench",
        entries=[
            DesiredEntry(
                model=MODEL,
                stage="prod",
                version="v1.0.0",
                package_path=str(package),
                digest=read_package(package).digest,
            )
        ],
    )
    app = create_app(Settings())
    asyncio.run(gateway_of(app).pool.reconcile(state))
    return app


def _cost(app: Any, request: Request, count: int) -> float | None:
    """CPU seconds per request over `count` requests, or None when the tree refuses them."""
    path, query, headers, body = request
    handler = app  # Litestar.__call__, what uvicorn calls: sets the scope up for every route
    scope_headers = [*headers, (b"content-length", str(len(body)).encode())]
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            statuses.append(event["status"])

    async def run() -> float:
        started = time.process_time()
        for _ in range(count):
            scope = {
                "type": "http",
                "method": "POST",
                "path": path,
                "raw_path": path.encode(),
                "query_string": query,
                "headers": scope_headers,
                "root_path": "",
            }
            await handler(scope, receive, send)
        return (time.process_time() - started) / count

    per_request = asyncio.run(run())
    return per_request if set(statuses) == {200} else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve()))
    import gateway
    from tests.models import NUMERIC_FEATURES, example_rows

    features = list(NUMERIC_FEATURES[:4])
    requests = _requests(features, example_rows(1, tuple(features))[0])
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(Path(tmp))
        served = {name: r for name, r in requests.items() if _cost(app, r, 300) is not None}
        samples: dict[str, list[float]] = {name: [] for name in served}
        for _ in range(args.rounds):
            for name, request in served.items():
                cost = _cost(app, request, args.requests)
                assert cost is not None
                samples[name].append(cost)
    print(
        f"CPU per request, in process, 1 row ({args.requests} requests x {args.rounds} rounds, "
        f"median), tree {Path(gateway.__file__).parents[1]}:"
    )
    for name in requests:
        if name in samples:
            print(f"  {name:34s} {statistics.median(samples[name]) * 1e6:7.1f} µs")
        else:
            print(f"  {name:34s}       - (not served by this tree)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
