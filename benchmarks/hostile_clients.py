"""What hostile or broken HTTP clients cost a real `stageserve serve` (loopback only).

    .venv/bin/python benchmarks/hostile_clients.py             # all three probes, ~1 min
    .venv/bin/python benchmarks/hostile_clients.py --probes headers --header-mib 64

Probes (each against a fresh server serving one small ONNX model):
- `headers`: `--clients` connections each send one header line of `--header-mib` MiB that
  never ends; reports the server's RSS growth and what each connection got back.
- `slow`: `--slow` connections of each kind (silent, half-sent headers, half-sent body) wait
  `--wait-s`; reports how many the server still holds open, and what they were answered.
- `fds`: the server runs with `--nofile` file descriptors; that many idle connections are
  opened, then one normal predict request is sent: reports what it got (200, 503, reset...).

`--env KEY=VALUE` passes settings to the server (e.g. `--env STAGESERVE_MAX_CONNECTIONS=100`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.procs import free_port, rss_kib  # noqa: E402
from tests.integration.server import entry, with_rlimits, write_state  # noqa: E402
from tests.models import example_rows, save_onnx_package  # noqa: E402

BODY = json.dumps({"inputs": example_rows(1)}).encode()
PREDICT = (
    b"POST /predict/cost HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
)


def _status(data: bytes) -> str:
    if not data:
        return "closed, no answer"
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    return parts[1] if len(parts) > 1 else line[:20]


@contextlib.contextmanager
def server(work: Path, env: dict[str, str], nofile: int | None = None) -> Iterator[tuple[int, int]]:
    """A `stageserve serve` subprocess; yields (port, pid)."""
    cache = work / "cache"
    if not cache.exists():
        cache.mkdir(parents=True)
        write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(work / "v1"))])
    port = free_port()

    rlimits = {resource.RLIMIT_NOFILE: (nofile, nofile)} if nofile else {}
    args = ["serve", "--port", str(port), "--cache", str(cache)]
    proc = subprocess.Popen(
        [*with_rlimits(rlimits), "-m", "gateway.cli", *args],
        cwd=ROOT,
        env={**os.environ, "STAGESERVE_DRAIN_S": "0", **env},
        stdout=subprocess.DEVNULL,
        stderr=(work / f"server-{port}.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while _predict(port, timeout_s=2) != "200":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"server did not come up; see {work}/server-{port}.log")
            time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def _predict(port: int, timeout_s: float = 5.0) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(PREDICT + BODY)
            return _status(s.recv(65536))
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__


def probe_headers(port: int, pid: int, clients: int, mib: int) -> dict[str, object]:
    before = rss_kib(pid)
    socks, answers, peak = [], Counter[str](), before
    chunk = b"a" * 65536
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
        sent = 0
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
            while sent < mib * 1_048_576:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server stopped reading (and answered, or closed)
        peak = max(peak, rss_kib(pid))
    time.sleep(0.5)
    peak = max(peak, rss_kib(pid))
    for s in socks:
        try:
            s.settimeout(2)
            answers[_status(s.recv(4096))] += 1
        except TimeoutError:
            answers["no answer, open"] += 1
        except OSError as exc:
            answers[type(exc).__name__] += 1
        s.close()
    return {
        "clients": clients,
        "header_mib": mib,
        "rss_growth_mib": round((peak - before) / 1024, 1),
        "answers": dict(answers),
        "after": _predict(port),
    }


def probe_slow(port: int, count: int, wait_s: float) -> dict[str, object]:
    kinds = {
        "silent": b"",
        "half_headers": b"POST /predict/cost HTTP/1.1\r\nhost: x\r\n",
        "half_body": PREDICT + BODY[:5],
    }
    socks = {k: [] for k in kinds}  # type: dict[str, list[socket.socket]]
    for kind, data in kinds.items():
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if data:
                s.sendall(data)
            socks[kind].append(s)
    time.sleep(wait_s)
    out: dict[str, object] = {"per_kind": count, "wait_s": wait_s}
    for kind, group in socks.items():
        answers = Counter[str]()
        for s in group:
            s.setblocking(False)
            try:
                data = s.recv(4096)
                answers["open" if data is None else _status(data)] += 1
            except BlockingIOError:
                answers["open"] += 1
            except OSError as exc:
                answers[type(exc).__name__] += 1
            s.close()
        out[kind] = dict(answers)
    out["after"] = _predict(port)
    return out


def probe_fds(port: int, nofile: int) -> dict[str, object]:
    idle = []
    try:
        for _ in range(nofile):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        outcome = Counter(_predict(port) for _ in range(5))
    finally:
        for s in idle:
            s.close()
    return {"nofile": nofile, "idle": len(idle), "predict": dict(outcome)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probes", default="headers,slow,fds")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--header-mib", type=int, default=64)
    p.add_argument("--slow", type=int, default=50)
    p.add_argument("--wait-s", type=float, default=15.0)
    p.add_argument("--nofile", type=int, default=256)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)
    probes = set(args.probes.split(","))
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work = Path(tmp)
        if "headers" in probes:
            with server(work, env) as (port, pid):
                results["headers"] = probe_headers(port, pid, args.clients, args.header_mib)
        if "slow" in probes:
            with server(work, env) as (port, _):
                results["slow"] = probe_slow(port, args.slow, args.wait_s)
        if "fds" in probes:
            with server(work, env, nofile=args.nofile) as (port, _):
                results["fds"] = probe_fds(port, args.nofile)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
