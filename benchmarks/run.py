"""Serve the same models through stageserve, the stack's floor and the peers; load each with wrk.

    .venv/bin/python benchmarks/run.py                 # full run (~12 min), appends RESULTS.md
    .venv/bin/python benchmarks/run.py --quick --servers stageserve,minimal_litestar

Servers: stageserve (one worker; validation, stamping, metrics and audit on), stageserve_h11
(the same with uvicorn forced to h11 + asyncio), minimal_litestar and raw_asgi (the same ONNX
inference behind a minimal route, uvicorn with the same http/loop), mlflow and mlserver (each
in its own venv under benchmarks/venvs/, created when missing). Loopback only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    batching_bench,
    extras,
    interleave,
    overload_bench,
    report,
    workers_bench,
)
from benchmarks.fixtures import BATCH_FORMATS, body_for, build_fixtures  # noqa: E402
from benchmarks.loadgen import LoadResult, ensure_wrk, run_load  # noqa: E402
from benchmarks.peers import peer_versions, prepare_peer  # noqa: E402
from benchmarks.procs import Launch, Server, cpu_seconds, free_port  # noqa: E402

ALL_SERVERS = (
    "stageserve",
    "stageserve_h11",
    "stageserve_noaudit",
    "minimal_litestar",
    "raw_asgi",
    "mlflow",
    "mlserver",
)
ONNX_MODELS = ["linear", "gbr"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: seconds, no installs")
    p.add_argument("--servers", default=",".join(ALL_SERVERS))
    p.add_argument("--duration-s", type=float, default=None, help="measured seconds per run")
    p.add_argument("--warmup-s", type=float, default=None)
    p.add_argument("--repeats", type=int, default=None, help="runs of single-row c16 (median)")
    p.add_argument(
        "--extras",
        default=None,
        help="comma list of inprocess,memory,swap,profile,workers,batching,overload,shadow "
        "(quick: inprocess)",
    )
    p.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="N",
        help="only single-row c16: all servers up at once, N round-robin rounds, median",
    )
    p.add_argument(
        "--batches",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="100-row requests in every body format (default: in a full run)",
    )
    p.add_argument("--load", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--no-install", action="store_true", help="never apt-get or pip install")
    p.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = p.parse_args(argv)
    full = not args.quick
    args.duration_s = args.duration_s or (5.0 if full else 1.0)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (2.0 if full else 0.0)
    args.repeats = args.repeats or (3 if full else 1)
    if args.extras is None:  # an empty --extras "" means none
        args.extras = (
            "inprocess,memory,swap,profile,workers,batching,overload,shadow"
            if full
            else "inprocess"
        )
    args.extras = set(args.extras.split(",")) - {""}
    args.install = full and not args.no_install
    args.batches = full if args.batches is None else args.batches
    args.rows = (1, 32) if full else (1,)
    args.connections = (1, 16, 64) if full else (16,)
    return args


def measure(
    server: Server,
    model: str,
    *,
    rows: int,
    conns: int,
    args: argparse.Namespace,
    wrk: str | None,
    work: Path,
    fmt: str = "rows",
) -> dict[str, Any]:
    body = body_for(server.launch.kind, rows, model, fmt)
    url = server.url(model)
    if fmt == "v2":
        url = f"http://127.0.0.1:{server.launch.port}/v2/models/{model}/infer"
    if args.warmup_s >= 1:
        run_load(wrk, url, body, connections=conns, duration_s=args.warmup_s, work=work)
    else:
        for _ in range(50):
            server.post(model, body)
    repeats = args.repeats if (rows, conns) == (1, 16) else 1
    results: list[tuple[LoadResult, float]] = []
    for _ in range(repeats):
        before = cpu_seconds(server.pid)
        result = run_load(wrk, url, body, connections=conns, duration_s=args.duration_s, work=work)
        results.append((result, cpu_seconds(server.pid) - before))
    results.sort(key=lambda pair: pair[0].rps)
    median, cpu = results[len(results) // 2]
    return {
        "server": server.launch.name,
        "model": model,
        "format": fmt,
        "rows": rows,
        "connections": conns,
        "rps": round(median.rps, 1),
        "p50_ms": round(median.p50_ms, 3),
        "p99_ms": round(median.p99_ms, 3),
        "requests": median.requests,
        "cpu_us_per_request": round(cpu / median.requests * 1e6, 1) if median.requests else None,
        "errors": median.errors,
        "all_rps": [round(r.rps, 1) for r, _ in results],
    }


def launches(
    name: str, fx: Any, work: Path, args: argparse.Namespace, peers: dict[str, str]
) -> list[Launch]:
    if name.startswith("stageserve"):
        # The variants (h11 + asyncio; no audit file) only show what one piece costs.
        variant = name != "stageserve"
        audit = None if name == "stageserve_noaudit" else work / f"{name}-audit.jsonl"
        models = ["linear", "gbr"] if variant else ["linear", "gbr", "gbr_pickle"]
        return [
            extras.stageserve_launch(
                fx.cache, audit, name, models=models, h11=name == "stageserve_h11"
            )
        ]
    if name in ("minimal_litestar", "raw_asgi"):
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"benchmarks.baselines.{name}:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--no-server-header",
            "--log-level",
            "warning",
        ]
        env = {"BENCH_ONNX": json.dumps({m: str(fx.onnx_files[m]) for m in ONNX_MODELS})}
        paths = {m: f"/predict/{m}" for m in ONNX_MODELS}
        return [Launch(name, "stageserve", argv, paths, port, ROOT, env)]
    setup = prepare_peer(name, work, ONNX_MODELS, install=args.install)
    peers[name] = setup.note if setup.launches else f"NOT RUN: {setup.note}"
    return setup.launches


def serve_and_measure(
    launch: Launch,
    args: argparse.Namespace,
    *,
    wrk: str | None,
    work: Path,
    results: dict[str, Any],
    py_spy: str | None,
) -> None:
    for model in launch.paths:
        launch.ready_body = body_for(launch.kind, 1, model)
        break
    server = Server(launch, work / f"{launch.name}-{launch.port}.log")
    try:
        server.start()
    except RuntimeError as exc:
        results["peers"][launch.name] = f"NOT RUN: {exc}\n{server.log_tail()}"
        server.stop()
        return
    try:
        variant = launch.name.startswith("stageserve_")
        for model in launch.paths:
            for rows in args.rows:
                for conns in args.connections:
                    if variant and (rows, conns) not in ((1, 16), (1, 1)):
                        continue  # what one piece costs: c16 throughput and c1 latency
                    run = measure(
                        server, model, rows=rows, conns=conns, args=args, wrk=wrk, work=work
                    )
                    results["runs"].append(run)
                    print(json.dumps(run), flush=True)
        # Batches: 100 rows at c16 in each body format (the minimal route reads only rows).
        if args.batches and launch.name in ("stageserve", "minimal_litestar"):
            formats = BATCH_FORMATS if launch.name == "stageserve" else ("rows",)
            for fmt in formats:
                run = measure(
                    server, "linear", rows=100, conns=16, args=args, wrk=wrk, work=work, fmt=fmt
                )
                results["runs"].append(run)
                print(json.dumps(run), flush=True)
        if launch.name == "stageserve" and "profile" in args.extras:
            body = body_for("stageserve", 1, "linear")
            results["profile"] = extras.profile_top(
                py_spy,
                server.pid,
                6,
                work,
                lambda: run_load(
                    wrk, server.url("linear"), body, connections=16, duration_s=6, work=work
                ),
            )
    finally:
        server.stop()


def _guarded(measure: Any) -> dict[str, Any]:
    """A scenario's results, or the error that stopped it (the run goes on)."""
    try:
        result: dict[str, Any] = measure()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return result


def find_py_spy(install: bool) -> str | None:
    tools = ROOT / "benchmarks" / "venvs" / "tools"
    exe = tools / "bin" / "py-spy"
    if exe.exists():
        return str(exe)
    if shutil.which("py-spy"):
        return shutil.which("py-spy")
    if not install:
        return None
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=False)
    subprocess.run(
        [str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "py-spy"], check=False
    )
    return str(exe) if exe.exists() else None


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu_model": model, "loadavg_start": _loadavg()}


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "litestar",
        "uvicorn",
        "httptools",
        "uvloop",
        "msgspec",
        "onnxruntime",
        "scikit-learn",
        "numpy",
    ):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    command = shlex.join([".venv/bin/python", "benchmarks/run.py", *(argv or sys.argv[1:])])
    wrk, wrk_note = (None, "python (asked)") if args.load == "python" else ensure_wrk(args.install)
    if args.load == "wrk" and wrk is None:
        print(f"error: wrk wanted: {wrk_note}", file=sys.stderr)
        return 1
    load_note = f"Python fallback load generator ({wrk_note})"
    if wrk:
        banner = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout
        load_note = f"{(banner.splitlines() or ['wrk'])[0].split(' [')[0]} ({wrk_note})"
    results: dict[str, Any] = {
        "started_at": started,
        "command": command,
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "load_generator": load_note,
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "repeats": args.repeats,
        "interleave_rounds": args.interleave,
        "peers": {},
        "runs": [],
    }
    py_spy = find_py_spy(args.install) if "profile" in args.extras else None
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stageserve-bench-") as tmp:
        work = Path(tmp)
        fx = build_fixtures(work)
        if "inprocess" in args.extras:
            results["inprocess"] = extras.inprocess_costs(fx.packages, 0.2 if args.quick else 1.0)
        everything = [
            launch
            for name in args.servers.split(",")
            for launch in launches(name, fx, work, args, results["peers"])
        ]
        if args.interleave:
            interleave.run_rounds(
                everything, args, wrk=wrk, work=work, results=results, py_spy=py_spy
            )
        for launch in [] if args.interleave else everything:
            serve_and_measure(launch, args, wrk=wrk, work=work, results=results, py_spy=py_spy)
        if "memory" in args.extras:
            results["memory"] = [
                extras.memory_per_version(work, (0, 1, 2, 4), onnx) for onnx in (True, False)
            ]
        if "swap" in args.extras:
            results["swap"] = extras.swap_latency(4 if not args.quick else 2, 600)
        timing = {"duration_s": args.duration_s, "warmup_s": args.warmup_s, "repeats": args.repeats}
        if "workers" in args.extras:
            results["workers"] = _guarded(
                lambda: workers_bench.measure_workers(fx.cache, work, wrk, **timing)
            )
        if "batching" in args.extras:
            results["batching"] = _guarded(
                lambda: batching_bench.measure_batching(
                    fx.cache, work, wrk, install=args.install,
                    mlserver="mlserver" in args.servers, **timing,
                )
            )  # fmt: skip
        if "shadow" in args.extras:
            results["shadow"] = extras.shadow_targets(4.0, 2, 900)
        if "overload" in args.extras:
            results["overload"] = _guarded(
                lambda: overload_bench.measure_overload(fx.cache, work, wrk, **timing)
            )
    for name in ("mlflow", "mlserver"):
        if name in args.servers:
            results["versions"].update(peer_versions(name))
    results["machine"]["loadavg_end"] = _loadavg()
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["ratios"] = report.ratios(results["runs"])
    path = report.write_json(results, args.results_dir)
    text = report.markdown(results)
    with args.results_md.open("a") as md:
        md.write("\n" + text)
    print(text)
    print(f"results: {path}; table appended to {args.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
