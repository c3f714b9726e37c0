"""Instructions per predict request of a real `stageserve serve`, counted by callgrind.

Wall-clock and even CPU-time numbers move with whatever else runs on a shared machine;
instruction counts do not (to a fraction of a percent). The server runs under
`valgrind --tool=callgrind` with instrumentation off while it starts and warms up; then
instrumentation is switched on for `--requests` sequential single-row requests on one
keep-alive connection, and the total is divided by the requests.

    .venv/bin/python benchmarks/callgrind_predict.py                    # this checkout
    .venv/bin/python benchmarks/callgrind_predict.py --root /tmp/main   # another checkout
    .venv/bin/python benchmarks/callgrind_predict.py --stock-protocol   # uvicorn's own protocol

Needs valgrind (`apt-get install valgrind`). Loopback only; a run takes 1-2 minutes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.procs import free_port  # noqa: E402
from tests.integration.server import entry, write_state  # noqa: E402
from tests.models import example_rows, save_onnx_package  # noqa: E402

# Runs the CLI with uvicorn's stock httptools protocol in place of the bounded one.
_STOCK = """
import sys, uvicorn
original = uvicorn.Config.__init__
def stock(self, *a, **k):
    k["http"] = "httptools"
    original(self, *a, **k)
uvicorn.Config.__init__ = stock
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _total_ir(out: Path) -> int:
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def measure(
    root: Path, requests: int, warmup: int, stock: bool, env: dict[str, str]
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        cache.mkdir()
        write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(work / "v1"))])
        port = free_port()
        out = work / "callgrind.out"
        cli = ["-c", _STOCK] if stock else ["-m", "gateway.cli"]
        args = ["serve", "--port", str(port), "--cache", str(cache)]
        args += ["--audit-path", str(work / "audit.jsonl")]
        proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                *cli,
                *args,
            ],
            cwd=root,
            env={**os.environ, "STAGESERVE_DRAIN_S": "0", "PYTHONHASHSEED": "0", **env},
            stdout=subprocess.DEVNULL,
            stderr=(work / "server.log").open("wb"),
        )
        try:
            body = json.dumps({"inputs": example_rows(1)}).encode()
            conn = _wait_ready(port, body, proc)
            for _ in range(warmup):
                _post(conn, body)
            _control(proc.pid, "-i", "on")
            for _ in range(requests):
                _post(conn, body)
            _control(proc.pid, "-i", "off")
            _control(proc.pid, "-d")
            conn.close()
        finally:
            proc.terminate()
            proc.wait(120)
        dumps = sorted(work.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        total = sum(_total_ir(p) for p in dumps)
    return {
        "root": str(root),
        "protocol": "uvicorn httptools (stock)" if stock else "as configured",
        "requests": requests,
        "instructions_per_request": round(total / requests),
    }


def _post(conn: http.client.HTTPConnection, body: bytes) -> None:
    conn.request("POST", "/predict/cost", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise SystemExit(f"predict answered {resp.status}")


def _wait_ready(
    port: int, body: bytes, proc: subprocess.Popen[bytes]
) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 600  # imports under valgrind take minutes
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            _post(conn, body)
            return conn
        except (OSError, SystemExit, http.client.HTTPException):
            conn.close()
            time.sleep(1)
    raise SystemExit("server not ready")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT, help="checkout whose gateway to run")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--stock-protocol", action="store_true")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)
    result = measure(args.root, args.requests, args.warmup, args.stock_protocol, env)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
