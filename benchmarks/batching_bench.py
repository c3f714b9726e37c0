"""Adaptive batching of a heavy model at c64: stageserve unbatched vs batched, and MLServer
unbatched vs its adaptive batching, in one run.

    .venv/bin/python -m benchmarks.batching_bench    # alone (builds its own fixtures)
    (also part of `make bench`: benchmarks/run.py --extras batching)

The model is the benchmarks' GradientBoostingRegressor served by scikit-learn (`gbr_pickle`:
stageserve's sklearn engine, the peers' pickled GBR): a model call costs ~200-300 µs whether
it scores 1 row or 64, the case batching is for. Single-row requests, 64 connections, the
server pinned to core 0 and wrk to core 1. stageserve: `batching: {gbr_pickle:
{max_batch_size: 64, max_wait_us: 2000}}`; MLServer: `max_batch_size: 64, max_batch_time:
0.002` (its adaptive batching, in model-settings.json).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import extras  # noqa: E402
from benchmarks.fixtures import body_for, build_fixtures  # noqa: E402
from benchmarks.loadgen import ensure_wrk, run_load  # noqa: E402
from benchmarks.peers import prepare_peer  # noqa: E402
from benchmarks.procs import Launch, Server, cpu_seconds  # noqa: E402

__all__ = ["markdown", "measure_batching"]

CONNECTIONS = 64
MAX_BATCH = 64
MAX_WAIT_US = 2000


def _measure(
    launch: Launch, model: str, work: Path, wrk: str | None, *, duration_s: float,
    warmup_s: float, repeats: int,
) -> dict[str, Any]:  # fmt: skip
    body = body_for(launch.kind, 1, model)
    launch.ready_body = body
    server = Server(launch, work / f"{launch.name}-{launch.port}.log")
    server.start()
    try:
        url = server.url(model)
        run_load(wrk, url, body, connections=CONNECTIONS, duration_s=warmup_s, work=work)
        samples = []
        for _ in range(repeats):
            before = cpu_seconds(server.pid)
            r = run_load(wrk, url, body, connections=CONNECTIONS, duration_s=duration_s, work=work)
            cpu = cpu_seconds(server.pid) - before
            samples.append(
                {
                    "rps": round(r.rps, 1),
                    "p50_ms": round(r.p50_ms, 3),
                    "p99_ms": round(r.p99_ms, 3),
                    "errors": r.errors,
                    "cpu_us_per_request": round(cpu / r.requests * 1e6, 1) if r.requests else None,
                }
            )
    finally:
        server.stop()
    samples.sort(key=lambda s: s["rps"])
    median = dict(samples[len(samples) // 2])
    median["all_rps"] = [s["rps"] for s in samples]
    return median


def _mlserver(work: Path, install: bool) -> tuple[Launch | None, str]:
    """One MLServer serving the GBR twice: as is, and with adaptive batching."""
    setup = prepare_peer("mlserver", work, ["gbr"], install=install)
    if not setup.launches:
        return None, setup.note
    launch = setup.launches[0]
    folder = launch.cwd / "gbr"
    batched = launch.cwd / "gbr_batched"
    shutil.copytree(folder, batched, dirs_exist_ok=True)
    settings = json.loads((folder / "model-settings.json").read_text())
    settings.update(name="gbr_batched", max_batch_size=MAX_BATCH, max_batch_time=MAX_WAIT_US / 1e6)
    (batched / "model-settings.json").write_text(json.dumps(settings))
    launch.paths["gbr_batched"] = "/v2/models/gbr_batched/infer"
    return launch, setup.note


def measure_batching(
    cache: Path,
    work: Path,
    wrk: str | None,
    *,
    duration_s: float = 5.0,
    warmup_s: float = 2.0,
    repeats: int = 3,
    install: bool = True,
    mlserver: bool = True,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    rule = {"gbr_pickle": {"max_batch_size": MAX_BATCH, "max_wait_us": MAX_WAIT_US}}
    for batched in (False, True):
        launch = extras.stageserve_launch(
            cache, work / f"batching-{batched}-audit.jsonl", "stageserve", models=["gbr_pickle"]
        )
        if batched:
            launch.env = {"STAGESERVE_BATCHING": json.dumps(rule)}
        run = _measure(
            launch, "gbr_pickle", work, wrk,
            duration_s=duration_s, warmup_s=warmup_s, repeats=repeats,
        )  # fmt: skip
        rows.append({"server": "stageserve", "batched": batched, **run})
    note = "not asked"
    if mlserver:
        launch, note = _mlserver(work / "batching-mlserver", install)
        if launch is not None:
            for model, batched in (("gbr", False), ("gbr_batched", True)):
                run = _measure(
                    launch, model, work, wrk,
                    duration_s=duration_s, warmup_s=warmup_s, repeats=repeats,
                )  # fmt: skip
                rows.append({"server": "mlserver", "batched": batched, **run})
    out: dict[str, Any] = {
        "model": "gbr_pickle (scikit-learn GBR, 10 trees)",
        "connections": CONNECTIONS,
        "max_batch_size": MAX_BATCH,
        "max_wait_us": MAX_WAIT_US,
        "mlserver": note,
        "runs": rows,
    }
    key = {(r["server"], r["batched"]): r for r in rows}
    off, on = key[("stageserve", False)], key[("stageserve", True)]
    out["throughput_ratio"] = round(on["rps"] / off["rps"], 2)
    out["p99_ratio"] = round(on["p99_ms"] / off["p99_ms"], 2)
    if ("mlserver", True) in key:
        ml_on, ml_off = key[("mlserver", True)], key[("mlserver", False)]
        out["vs_mlserver_batched"] = round(on["rps"] / ml_on["rps"], 2)
        out["mlserver_throughput_ratio"] = round(ml_on["rps"] / ml_off["rps"], 2)
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return ["", f"Batching: failed ({result['error'][-300:]})"]
    lines = [
        "",
        f"Adaptive batching ({result['model']}, single-row, c{result['connections']}, server on "
        f"core 0; max batch {result['max_batch_size']}, max wait {result['max_wait_us']} µs; "
        f"MLServer: {result['mlserver']}):",
        "",
        "| server | batching | req/s | p50 ms | p99 ms | CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        cpu = r["cpu_us_per_request"]
        lines.append(
            f"| {r['server']} | {'on' if r['batched'] else 'off'} | {r['rps']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {cpu if cpu is None else round(cpu)} | "
            f"{r['errors']} |"
        )
    t, p = result["throughput_ratio"], result["p99_ratio"]
    lines += [
        "",
        f"stageserve batched / unbatched: {t:.2f}x req/s (target >= 3: "
        f"{'met' if t >= 3 else 'NOT met'}), p99 {p:.2f}x (target <= 2: "
        f"{'met' if p <= 2 else 'NOT met'})"
        + (
            f"; MLServer's adaptive batching {result['mlserver_throughput_ratio']:.2f}x its "
            f"unbatched; stageserve batched {result['vs_mlserver_batched']:.2f}x MLServer batched"
            if "vs_mlserver_batched" in result
            else ""
        ),
    ]
    return lines


def main() -> int:
    wrk, _ = ensure_wrk(install=False)
    with tempfile.TemporaryDirectory(prefix="stageserve-batching-") as tmp:
        fx = build_fixtures(Path(tmp))
        result = measure_batching(fx.cache, Path(tmp), wrk)
    print(json.dumps(result, indent=2))
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
