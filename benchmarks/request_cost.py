"""CPU per predict request through the whole server path, in process, without sockets.

A real connection protocol (the edge's, with the app's direct lane, as `stageserve serve`
builds it) is fed raw HTTP requests over an in-memory transport under uvloop; the real app
answers them (an ONNX linear model on 4 inputs, the audit file on, metrics on), and the audit
writer's flushes run as they do in the server. So what is counted is everything a request
costs the server process except the kernel's socket work: parsing, the predict path,
metrics, the audit record's encoding and write.

    .venv/bin/python -m benchmarks.request_cost                      # CPU µs per request, by format
    .venv/bin/python -m benchmarks.request_cost --callgrind          # instructions per request
    .venv/bin/python -m benchmarks.request_cost --lines "rows"       # Python lines run per request
    .venv/bin/python -m benchmarks.request_cost --tree /tmp/before   # another checkout (an A/B)

`--callgrind` runs each format twice under valgrind (N and 2N requests) and divides the
difference by N: start-up and warm-up cancel out, and counts repeat to a fraction of a percent
on a busy machine (PYTHONHASHSEED=0). `--lines` counts, with `sys.settrace`, the Python lines
each function runs per request: the line-level profile of the request, event loop included.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "cost_predictor"
FEATURES = ("hp", "wt", "disp", "qsec")


def _rows(n: int) -> list[list[float]]:
    base = [110.0, 2.62, 160.0, 16.46]
    return [[v + (i % 7) * 0.5 for v in base] for i in range(n)]


def bodies(rows: int) -> dict[str, tuple[str, list[tuple[bytes, bytes]], bytes]]:
    """name -> (path and query, headers, body) of each request format, `rows` rows each."""
    import numpy as np

    values = _rows(rows)
    json_type = [(b"content-type", b"application/json")]
    records = [dict(zip(FEATURES, r, strict=True)) for r in values]
    columns = {f: [r[j] for r in values] for j, f in enumerate(FEATURES)}
    split = {"columns": list(FEATURES), "data": values}
    tensors = [
        {"name": f, "shape": [rows], "datatype": "FP64", "data": columns[f]} for f in FEATURES
    ]
    raw = b"".join(np.array(columns[f], dtype="<f8").tobytes() for f in FEATURES)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": f,
                    "shape": [rows],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 8 * rows},
                }
                for f in FEATURES
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    csv = "\n".join([",".join(FEATURES), *(",".join(map(str, r)) for r in values)]) + "\n"
    predict, v2 = f"/predict/{MODEL}", f"/v2/models/{MODEL}/infer"

    def dumps(doc: Any) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    return {
        "rows": (predict, json_type, dumps({"inputs": records})),
        "columns": (predict, json_type, dumps({"inputs": columns})),
        "rows gzip": (
            predict,
            [*json_type, (b"content-encoding", b"gzip")],
            gzip.compress(dumps({"inputs": records})),
        ),
        "dataframe_split": (predict, json_type, dumps({"dataframe_split": split})),
        "v2 json": (v2, json_type, dumps({"inputs": tensors})),
        "v2 binary": (
            v2,
            [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(len(header)).encode()),
            ],
            header + raw,
        ),
        "invocations split": ("/invocations", json_type, dumps({"dataframe_split": split})),
        "invocations csv": ("/invocations", [(b"content-type", b"text/csv")], csv.encode()),
    }


def wire(target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """The request as wrk sends it (Host, the headers, Content-Length)."""
    lines = [b"POST %s HTTP/1.1" % target.encode(), b"Host: 127.0.0.1:8000"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.statuses: collections.Counter[bytes] = collections.Counter()
        self.closing = False

    def write(self, data: Any) -> None:
        self.statuses[bytes(data[9:12])] += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Harness:
    """The app, its lifespan, and one connection's protocol, on a running loop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def __aenter__(self) -> Harness:
        import uvicorn
        from uvicorn.server import ServerState

        from gateway.app import create_app, gateway_of
        from gateway.edge.limits import EdgeLimits
        from gateway.edge.protocol import EdgeCounters, bounded_protocol
        from gateway.settings import Settings
        from registry_sync.package.read import read_package
        from registry_sync.sync.snapshot import DesiredEntry, DesiredState
        from tests.models import save_onnx_package

        package = save_onnx_package(self.folder / "pkg")
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
        settings = Settings(audit_path=str(self.folder / "audit.jsonl"))
        self.app = create_app(settings)
        self.gateway = gateway_of(self.app)
        self.lifespan = self.app.lifespan
        self._startup = asyncio.get_running_loop().create_future()
        self._shutdown = asyncio.Event()
        self._lifespan_task = asyncio.create_task(self._run_lifespan())
        await self._startup
        await self.gateway.pool.reconcile(state)
        lane = getattr(self.gateway, "lane", None)
        cls = bounded_protocol(EdgeLimits(), EdgeCounters(), *([lane] if lane else []))
        config = uvicorn.Config(self.app, http=cls, lifespan="off", log_config=None)
        config.load()
        self.protocol = cls(config=config, server_state=ServerState(), app_state={})
        self.transport = _Transport()
        self.protocol.connection_made(self.transport)
        return self

    async def _run_lifespan(self) -> None:
        messages = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await self._shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._startup.set_result(None)

        await self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    async def send(self, request: bytes, count: int) -> None:
        protocol = self.protocol
        for i in range(count):
            protocol.data_received(request)
            cycle = protocol.cycle
            while not cycle.response_complete:
                await asyncio.sleep(0)
            if i % 64 == 63:
                await asyncio.sleep(0)  # the audit flusher's turn, as between reads in a server

    async def __aexit__(self, *exc: object) -> None:
        self._shutdown.set()
        await self._lifespan_task


def _run(fmt: str, rows: int, count: int, warmup: int, mode: str) -> dict[str, Any]:
    import uvloop

    target, headers, body = bodies(rows)[fmt]
    request = wire(target, headers, body)
    out: dict[str, Any] = {}

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with Harness(Path(tmp)) as h:
                await h.send(request, warmup)
                if mode == "lines":
                    out["lines"] = await _count_lines(h, request, count)
                elif mode == "cpu":
                    started = time.process_time()
                    await h.send(request, count)
                    await h.gateway.audit.settled() if hasattr(h.gateway.audit, "settled") else None
                    out["cpu_us"] = (time.process_time() - started) / count * 1e6
                else:
                    await h.send(request, count)
                out["statuses"] = {k.decode(): v for k, v in h.transport.statuses.items()}

    uvloop.run(main())
    return out


async def _count_lines(h: Harness, request: bytes, count: int) -> list[tuple[str, float]]:
    lines: collections.Counter[str] = collections.Counter()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            code = frame.f_code
            lines[f"{code.co_qualname} ({Path(code.co_filename).name})"] += 1
        return tracer

    sys.settrace(tracer)
    try:
        await h.send(request, count)
    finally:
        sys.settrace(None)
    return [(name, n / count) for name, n in lines.most_common(40)]


def _callgrind(tree: Path, fmt: str, rows: int, count: int) -> int:
    totals = []
    for n in (count, 2 * count):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cg.out"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    "-m",
                    "benchmarks.request_cost",
                    "--tree",
                    str(tree),
                    "--run",
                    fmt,
                    str(rows),
                    str(n),
                ],
                check=True,
                capture_output=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            totals.append(
                next(
                    int(line.split()[1])
                    for line in out.read_text().splitlines()
                    if line.startswith("totals:")
                )
            )
    return round((totals[1] - totals[0]) / count)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure")
    p.add_argument("--formats", default="rows", help="comma list, or 'all'")
    p.add_argument("--rows", default="1", help="comma list of rows per request")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--callgrind", action="store_true", help="instructions per request")
    p.add_argument("--lines", metavar="FORMAT", help="Python lines per request, by function")
    p.add_argument("--run", nargs=3, metavar=("FORMAT", "ROWS", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve()))
    if args.run:
        fmt, rows, n = args.run
        result = _run(fmt, int(rows), int(n), 200, "plain")
        print(json.dumps(result))
        return 0
    names = list(bodies(1)) if args.formats == "all" else args.formats.split(",")
    row_counts = [int(r) for r in args.rows.split(",")]
    if args.lines:
        result = _run(args.lines, row_counts[0], 500, 200, "lines")
        total = sum(n for _, n in result["lines"])
        print(f"Python lines per request, by function ({args.lines}, {row_counts[0]} rows):")
        for name, n in result["lines"]:
            print(f"  {n:7.1f}  {name}")
        print(f"  (top 40 of them: {total:.0f} lines)")
        return 0
    for rows in row_counts:
        for name in names:
            if args.callgrind:
                ir = _callgrind(args.tree, name, rows, args.requests // 5)
                print(json.dumps({"format": name, "rows": rows, "instructions": ir}), flush=True)
                continue
            samples = [
                _run(name, rows, args.requests, 300, "cpu")["cpu_us"] for _ in range(args.rounds)
            ]
            print(
                json.dumps(
                    {"format": name, "rows": rows, "cpu_us": round(statistics.median(samples), 1)}
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
