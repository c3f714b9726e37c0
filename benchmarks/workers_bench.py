"""`serve --workers N`: throughput at N=1 and N=2 with everything on, and what each core does.

    .venv/bin/python -m benchmarks.workers_bench      # alone (builds its own fixtures)
    (also part of `make bench`: benchmarks/run.py --extras workers)

The single-row `linear` model (onnxruntime), audit file and metrics on, c32 (each worker's
socket gets ~16 connections from the kernel's SO_REUSEPORT hash). N=1 is pinned to core 0
and wrk to core 1; N=2 runs on cores 0 and 1 and wrk shares core 1 with a worker, so on a
2-core machine the server gets less than 2 cores at N=2: the run reports the cores each
side used (CPU seconds per wall second, from /proc and wrk's rusage) beside the req/s, and
the throughput per server core, which is what N=16 on 16 free cores would multiply.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import extras  # noqa: E402
from benchmarks.fixtures import body_for, build_fixtures  # noqa: E402
from benchmarks.loadgen import ensure_wrk, run_load  # noqa: E402
from benchmarks.procs import Server, cpu_seconds  # noqa: E402

__all__ = ["markdown", "measure_workers"]

CONNECTIONS = 32
MODEL = "linear"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_workers(
    cache: Path,
    work: Path,
    wrk: str | None,
    *,
    duration_s: float = 5.0,
    warmup_s: float = 2.0,
    repeats: int = 3,
    counts: tuple[int, ...] = (1, 2),
) -> dict[str, Any]:
    body = body_for("stageserve", 1, MODEL)
    runs = []
    for n in counts:
        launch = extras.stageserve_launch(
            cache, work / f"workers{n}-audit.jsonl", f"stageserve --workers {n}", models=[MODEL]
        )
        launch.argv += ["--workers", str(n)]
        launch.ready_body = body
        server = Server(launch, work / f"workers{n}.log", cpu=",".join(map(str, range(n))))
        server.start()
        try:
            url = server.url(MODEL)
            run_load(wrk, url, body, connections=CONNECTIONS, duration_s=warmup_s, work=work)
            samples = []
            for _ in range(repeats):
                server_before, load_before = cpu_seconds(server.pid), _children_cpu_s()
                started = time.monotonic()
                result = run_load(
                    wrk, url, body, connections=CONNECTIONS, duration_s=duration_s, work=work
                )
                wall = time.monotonic() - started
                server_cpu = cpu_seconds(server.pid) - server_before
                load_cpu = _children_cpu_s() - load_before
                samples.append(
                    {
                        "rps": round(result.rps, 1),
                        "p50_ms": round(result.p50_ms, 3),
                        "p99_ms": round(result.p99_ms, 3),
                        "errors": result.errors,
                        "server_cores": round(server_cpu / wall, 2),
                        "load_cores": round(load_cpu / wall, 2),
                        "cpu_us_per_request": round(server_cpu / result.requests * 1e6, 1),
                    }
                )
        finally:
            server.stop()
        samples.sort(key=lambda s: s["rps"])
        median = dict(samples[len(samples) // 2])
        median["workers"] = n
        median["all_rps"] = [s["rps"] for s in samples]
        median["rps_per_server_core"] = round(median["rps"] / max(median["server_cores"], 1e-9), 1)
        runs.append(median)
    out: dict[str, Any] = {"model": MODEL, "connections": CONNECTIONS, "runs": runs}
    by_n = {r["workers"]: r for r in runs}
    if 1 in by_n and 2 in by_n:
        one, two = by_n[1], by_n[2]
        out["scaling"] = round(two["rps"] / one["rps"], 2)
        out["per_core_efficiency"] = round(
            two["rps_per_server_core"] / one["rps_per_server_core"], 2
        )
        out["cpu_per_request_ratio"] = round(
            two["cpu_us_per_request"] / one["cpu_us_per_request"], 2
        )
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return ["", f"Workers: failed ({result['error'][-300:]})"]
    lines = [
        "",
        f"Workers (`serve --workers N`, `{result['model']}` single-row, c{result['connections']}, "
        "audit and metrics on; N=1 on core 0, N=2 on cores 0-1 with wrk sharing core 1):",
        "",
        "| workers | req/s | p50 ms | p99 ms | server cores used | wrk cores | CPU µs/req "
        "| req/s per server core | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['workers']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['server_cores']:.2f} | {r['load_cores']:.2f} | {r['cpu_us_per_request']:.0f} | "
            f"{r['rps_per_server_core']:,.0f} | {r['errors']} |"
        )
    if "scaling" in result:
        lines += [
            "",
            f"Scaling N=2 / N=1: {result['scaling']:.2f}x req/s (target >= 1.6 = 0.8 x 2 "
            f"cores: {'met' if result['scaling'] >= 1.6 else 'NOT met'}); per server core "
            f"{result['per_core_efficiency']:.2f}x (target >= 0.8: "
            f"{'met' if result['per_core_efficiency'] >= 0.8 else 'NOT met'}); CPU per "
            f"request {result['cpu_per_request_ratio']:.2f}x",
        ]
    return lines


def main() -> int:
    wrk, _ = ensure_wrk(install=False)
    with tempfile.TemporaryDirectory(prefix="stageserve-workers-") as tmp:
        fx = build_fixtures(Path(tmp))
        result = measure_workers(fx.cache, Path(tmp), wrk)
    print(json.dumps(result, indent=2))
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
