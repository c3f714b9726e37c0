"""Instructions per request spent in the HTTP protocol: uvicorn's httptools protocol vs the
bounded one (gateway/edge/), in-process, counted by callgrind.

A request is fed to one protocol object over an in-memory transport and answered by a
three-line ASGI app, so the count is the protocol's own work (parsing, the bounds, the
response framing) and nothing else. Each variant runs twice under callgrind, with `N` and
`2N` requests; the difference divided by N is the per-request cost, free of start-up.

    .venv/bin/python benchmarks/edge_protocol_cost.py            # both variants, ~1 min
    .venv/bin/python benchmarks/edge_protocol_cost.py --run bounded 1000   # one plain run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY = b'{"inputs": [{"hp": 110.0, "wt": 2.62, "disp": 160.0, "qsec": 16.46}]}'
# What http.client sends (the harness's and most clients' header set).
REQUEST = (
    b"POST /predict/cost HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept-Encoding: identity\r\n"
    b"Content-Length: %d\r\ncontent-type: application/json\r\n\r\n%s" % (len(BODY), BODY)
)


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += len(data)

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


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def run(variant: str, requests: int) -> int:
    import uvicorn
    import uvloop
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from gateway.edge.limits import EdgeLimits
    from gateway.edge.protocol import EdgeCounters, bounded_protocol

    bounded = bounded_protocol(EdgeLimits(), EdgeCounters())
    cls = HttpToolsProtocol if variant == "stock" else bounded
    config = uvicorn.Config(_app, http=cls, lifespan="off", access_log=False, log_config=None)
    config.load()

    async def main() -> int:
        protocol = cls(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        for _ in range(requests):
            protocol.data_received(REQUEST)
            while protocol.cycle is None or not protocol.cycle.response_complete:
                await asyncio.sleep(0)
        return transport.written

    return uvloop.run(main())


def _instructions(variant: str, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--run",
                variant,
                str(requests),
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
            # The same dict layouts in every run: counts repeat to a few instructions.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for line in out.read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit("no totals")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", nargs=2, metavar=("VARIANT", "N"), help="one plain run")
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args(argv)
    if args.run:
        print(run(args.run[0], int(args.run[1])))
        return 0
    n = args.requests
    result = {}
    for variant in ("stock", "bounded"):
        small, large = _instructions(variant, n), _instructions(variant, 2 * n)
        result[variant] = round((large - small) / n)
    result["bounded_minus_stock"] = result["bounded"] - result["stock"]
    print(json.dumps({"instructions_per_request": result, "requests": n}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
