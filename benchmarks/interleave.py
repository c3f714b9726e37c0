"""The headline scenario (single-row, c16) measured round-robin across servers all kept running.

On a shared machine a burst of someone else's work hits whichever server is being measured at
that moment; sequential runs turn that into a bias against one server. Here every server is
started once and idles pinned to core 0 while the others are measured, and each round measures
every (server, model) once, so a burst costs one sample of one round; the median is reported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks import extras
from benchmarks.fixtures import body_for
from benchmarks.loadgen import LoadResult, run_load
from benchmarks.procs import Launch, Server, cpu_seconds

__all__ = ["run_rounds"]


def run_rounds(
    launches: list[Launch],
    args: argparse.Namespace,
    *,
    wrk: str | None,
    work: Path,
    results: dict[str, Any],
    py_spy: str | None,
) -> None:
    servers: list[Server] = []
    try:
        for launch in launches:
            launch.ready_body = body_for(launch.kind, 1, next(iter(launch.paths)))
            server = Server(launch, work / f"{launch.name}-{launch.port}.log")
            try:
                server.start()
            except RuntimeError as exc:
                results["peers"][launch.name] = f"NOT RUN: {exc}\n{server.log_tail()}"
                server.stop()
                continue
            servers.append(server)
        samples: dict[tuple[str, str], list[tuple[LoadResult, float]]] = {}
        for round_no in range(args.interleave):
            for server in servers:
                for model in server.launch.paths:
                    body = body_for(server.launch.kind, 1, model)
                    url = server.url(model)
                    if round_no == 0:
                        run_load(
                            wrk, url, body, connections=16, duration_s=args.warmup_s or 1, work=work
                        )
                    before = cpu_seconds(server.pid)
                    result = run_load(
                        wrk, url, body, connections=16, duration_s=args.duration_s, work=work
                    )
                    cpu = cpu_seconds(server.pid) - before
                    samples.setdefault((server.launch.name, model), []).append((result, cpu))
                    print(
                        json.dumps(
                            {
                                "round": round_no,
                                "server": server.launch.name,
                                "model": model,
                                "rps": round(result.rps),
                            }
                        ),
                        flush=True,
                    )
        for (name, model), runs in samples.items():
            results["runs"].append(_median_row(name, model, runs))
        stageserve = next((s for s in servers if s.launch.name == "stageserve"), None)
        if stageserve is not None and "profile" in args.extras:
            body = body_for("stageserve", 1, "linear")
            results["profile"] = extras.profile_top(
                py_spy,
                stageserve.pid,
                6,
                work,
                lambda: run_load(
                    wrk, stageserve.url("linear"), body, connections=16, duration_s=6, work=work
                ),
            )
    finally:
        for server in servers:
            server.stop()


def _median_row(name: str, model: str, runs: list[tuple[LoadResult, float]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda pair: pair[0].rps)
    median = ordered[len(ordered) // 2][0]
    cpus = sorted(c / r.requests * 1e6 for r, c in runs if r.requests)
    return {
        "server": name,
        "model": model,
        "rows": 1,
        "connections": 16,
        "rps": round(median.rps, 1),
        "p50_ms": round(median.p50_ms, 3),
        "p99_ms": round(median.p99_ms, 3),
        "requests": median.requests,
        # the median over rounds of CPU per request, not the median-rps round's
        "cpu_us_per_request": round(cpus[len(cpus) // 2], 1) if cpus else None,
        "errors": sum(r.errors for r, _ in runs),
        "all_rps": [round(r.rps, 1) for r, _ in runs],
    }
