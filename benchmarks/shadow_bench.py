"""Shadow traffic's cost to the primary: latency and throughput with shadow on vs off.

The same gateway serves the same cache twice (a fresh process per run, rounds alternating
off/on so drift hits both alike), pinned to CPU 0 with the load generator (benchmarks/
loadgen.py: wrk when installed, else the Python keep-alive loop) on CPU 1; 127.0.0.1 only.
Three load shapes per scenario (wrk's latency excludes its think time):
- back-to-back: one connection, no think time: the worst case for latency, since the next
  request always arrives while the previous request's shadow is being predicted;
- paced: one connection, 1 ms think time between requests: traffic with idle gaps, where
  the shadow runs in the gaps;
- saturated: 16 connections: the throughput ratio (the queue sheds shadow work).
After each "on" run the shadow report tells how much shadow work was done and how much was
shed (queue_full). `--executors process,thread,inline` measures each `shadow_executor` (at
`--priority`) against the same "off" runs; the report ends with issue 17's two targets per
scenario and executor: back-to-back p99 on / off <= 1.3 and saturated req/s on / off >= 0.9.

    .venv/bin/python -m benchmarks.shadow_bench [--seconds 8] [--rounds 2] [--json out.json]
        [--executors thread] [--priority idle] [--scenarios onnx,sklearn]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadResult, ensure_wrk, parse_wrk, run_load
from benchmarks.procs import free_port, pin_prefix

ROOT = Path(__file__).resolve().parents[1]
MODEL = "cost_predictor"
# (name, connections, think time ms)
LOADS = (("back-to-back", 1, 0), ("paced 1 ms", 1, 1), ("saturated", 16, 0))
# Issue 17: shadow on every request, c1 p99 <= 1.3x off; c16 primary req/s >= 0.9x off.
P99_C1_MAX_RATIO = 1.3
RPS_C16_MIN_RATIO = 0.9


def _scenarios(folder: Path) -> dict[str, tuple[Path, Path]]:
    """name -> (primary package, shadow package), saved with the test suite's trainers."""
    sys.path.insert(0, str(ROOT))
    from tests.models import save_onnx_package, save_sklearn_package

    return {
        "onnx linear, shadow onnx linear (+1)": (
            save_onnx_package(folder / "onnx-v1"),
            save_onnx_package(folder / "onnx-v2", offset=1.0),
        ),
        "sklearn linear, shadow sklearn GBR": (
            save_sklearn_package(folder / "skl-v1"),
            save_sklearn_package(folder / "gbr-v2", gbr=True),
        ),
    }


def _write_cache(cache: Path, primary: Path, shadow: Path) -> None:
    from registry_sync.package.read import read_package
    from registry_sync.sync.snapshot import DesiredEntry, DesiredState, write_snapshot

    entries = [
        DesiredEntry(
            model=MODEL,
            stage=stage,
            version=version,
            package_path=str(package),
            digest=read_package(package, verify_digests=False).digest,
        )
        for stage, version, package in (("prod", "v1.0.0", primary), ("dev", "v2.0.0", shadow))
    ]
    cache.mkdir(parents=True, exist_ok=True)
    state = DesiredState(generated_at="2026-01-01T00:00:00Z", registry="bench", entries=entries)
    write_snapshot(state, cache / "snapshot.json")


def _get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except OSError:
        return 0, None


def _serve(cache: Path, executor: str | None, priority: str) -> tuple[subprocess.Popen[bytes], int]:
    """The gateway; `executor` None: shadow off."""
    port = free_port()
    env = {**os.environ, "STAGESERVE_LOG_LEVEL": "warning", "STAGESERVE_DRAIN_S": "0"}
    if executor is not None:
        env["STAGESERVE_SHADOW"] = json.dumps({MODEL: {"prod": "dev"}})
        env["STAGESERVE_SHADOW_EXECUTOR"] = executor
        env["STAGESERVE_SHADOW_PRIORITY"] = priority
    cmd = [*pin_prefix(0), sys.executable, "-m", "gateway.cli", "serve", "--cache", str(cache)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _get(port, "/readyz")[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the gateway did not become ready")
        time.sleep(0.1)
    return proc, port


def _shadow_counts(port: int) -> tuple[int, int]:
    """(requests compared, requests shed because the queue was full) so far."""
    _, report = _get(port, f"/models/{MODEL}/shadow")
    compared = sum(p["requests"] for p in report["pairs"])
    return compared, int(report["skipped"]["queue_full"])


def _until_shadowing(port: int, url: str, body: bytes, timeout_s: float = 60.0) -> None:
    """Send single requests until one has been compared: the shadow version is loaded where
    it runs (the shadow process loads its own copy), so the runs measure the steady state."""
    deadline = time.monotonic() + timeout_s
    while _shadow_counts(port)[0] == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no shadow comparison within a minute")
        request = urllib.request.Request(
            url, data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            resp.read()
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _measure(
    cache: Path,
    executor: str | None,
    priority: str,
    seconds: float,
    *,
    work: Path,
    wrk: str | None,
) -> dict[str, dict[str, Any]]:
    shadow_on = executor is not None
    body = json.dumps({"inputs": [{"hp": 110.0, "wt": 2.62, "disp": 160.0, "qsec": 16.46}]})
    out: dict[str, dict[str, Any]] = {}
    for name, connections, think_ms in LOADS:
        if think_ms and wrk is None:
            continue  # the Python generator has no think time
        proc, port = _serve(cache, executor, priority)  # a fresh process per measurement
        try:
            url = f"http://127.0.0.1:{port}/predict/{MODEL}"
            if shadow_on:
                _until_shadowing(port, url, body.encode())
            _load(
                wrk,
                url,
                body.encode(),
                connections=connections,
                think_ms=think_ms,
                seconds=1,
                work=work,
            )
            before = _shadow_counts(port) if shadow_on else (0, 0)
            result = _load(
                wrk,
                url,
                body.encode(),
                connections=connections,
                think_ms=think_ms,
                seconds=seconds,
                work=work,
            )
            row: dict[str, Any] = {
                "rps": result.rps,
                "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms,
                "errors": result.errors,
            }
            if shadow_on:
                after = _shadow_counts(port)
                row["shadow_compared"] = after[0] - before[0]
                row["shadow_queue_full"] = after[1] - before[1]
            out[name] = row
        finally:
            _stop(proc)
    return out


def _load(
    wrk: str | None,
    url: str,
    body: bytes,
    *,
    connections: int,
    think_ms: int,
    seconds: float,
    work: Path,
) -> LoadResult:
    if wrk is None or not think_ms:
        return run_load(wrk, url, body, connections=connections, duration_s=seconds, work=work)
    script = work / f"post-think-{think_ms}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
        f"function delay() return {think_ms} end\n"
    )
    cmd = [*pin_prefix(1), wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    cmd += ["--timeout", "10s", "--latency", "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(done.stdout)


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def run(
    seconds: float,
    rounds: int,
    log: Callable[[str], None],
    path_iterations: int = 20_000,
    *,
    executors: tuple[str, ...] = ("thread",),
    priority: str = "idle",
    scenarios: tuple[str, ...] = ("onnx", "sklearn"),
) -> dict[str, Any]:
    wrk, note = ensure_wrk(install=False)
    log(f"load generator: {'wrk' if wrk else 'python'} ({note})")
    results: dict[str, Any] = {
        "load_generator": "wrk" if wrk else "python",
        "priority": priority,
        "scenarios": {},
        "targets": [],
    }
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as tmp:
        folder = Path(tmp)
        chosen = {
            name: packages
            for name, packages in _scenarios(folder / "packages").items()
            if name.split()[0] in scenarios
        }
        if path_iterations > 0:
            first = next(iter(_scenarios(folder / "path-packages").values()))
            results["path"] = {
                "iterations": path_iterations,
                "modes": path_cost(*first, path_iterations),
            }
            log(f"path: {results['path']}")
        for name, (primary, shadow) in chosen.items():
            if seconds <= 0:
                break
            cache = folder / f"cache-{abs(hash(name))}"
            _write_cache(cache, primary, shadow)
            runs: dict[str, list[dict[str, dict[str, Any]]]] = {"off": []}
            runs |= {executor: [] for executor in executors}
            for r in range(rounds):
                for mode in runs:
                    executor = None if mode == "off" else mode
                    runs[mode].append(
                        _measure(cache, executor, priority, seconds, work=folder, wrk=wrk)
                    )
                    log(f"{name} round {r + 1} shadow {mode}: {runs[mode][-1]}")
            for executor in executors:
                label = f"{name} [{executor}]"
                results["scenarios"][label] = _summary(runs["off"], runs[executor], seconds)
                results["targets"].append(_targets(label, results["scenarios"][label]))
    return results


def _summary(
    offs: list[dict[str, dict[str, Any]]], ons: list[dict[str, dict[str, Any]]], seconds: float
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for load in offs[0]:
        off = [x[load] for x in offs]
        on = [x[load] for x in ons]
        summary[load] = {
            "off": {k: _mean(off, k) for k in ("rps", "p50_ms", "p99_ms")},
            "on": {k: _mean(on, k) for k in ("rps", "p50_ms", "p99_ms")},
            "ratio_on_off": {k: _mean(on, k) / _mean(off, k) for k in ("rps", "p50_ms", "p99_ms")},
            "shadow_compared_share": statistics.fmean(
                x["shadow_compared"] / max(1.0, x["rps"] * seconds) for x in on
            ),
            "runs": {"off": off, "on": on},
        }
    return summary


def _targets(label: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Issue 17's two shadow ratios for one scenario and executor, and whether each is met."""
    p99 = summary["back-to-back"]["ratio_on_off"]["p99_ms"]
    rps = summary["saturated"]["ratio_on_off"]["rps"]
    return {
        "scenario": label,
        "p99_c1_ratio": p99,
        "p99_c1_met": p99 <= P99_C1_MAX_RATIO,
        "rps_c16_ratio": rps,
        "rps_c16_met": rps >= RPS_C16_MIN_RATIO,
        "shadowed_c1": summary["back-to-back"]["shadow_compared_share"],
        "shadowed_c16": summary["saturated"]["shadow_compared_share"],
    }


def path_cost(primary: Path, shadow_package: Path, iterations: int) -> dict[str, Any]:
    """The predict handler's own time per request, in process (no sockets, no load noise):
    shadow off, on (the enqueue) and on at sample 0.25 (the hash), interleaved request by
    request. The shadow workers run between requests, outside the timed part: this is the
    cost on the primary's path, not the shadow's work."""
    import asyncio

    from gateway.http.predict_route import PredictRoute
    from gateway.pool.inference import Inference
    from gateway.pool.loaded import load_version
    from gateway.pool.model_pool import ModelPool
    from gateway.shadow.config import shadow_plans
    from gateway.shadow.metrics import ShadowMetrics
    from gateway.shadow.worker import Shadow
    from gateway.telemetry.audit import AuditWriter
    from gateway.telemetry.metrics import GatewayMetrics

    folder = primary.parent.parent / "path-cache"
    _write_cache(folder, primary, shadow_package)
    from registry_sync.sync.snapshot import read_snapshot

    async def measure() -> dict[str, Any]:
        metrics = GatewayMetrics()
        pool = ModelPool(metrics, load_version)
        await pool.reconcile(read_snapshot(folder / "snapshot.json"))
        audit, inference = AuditWriter(), Inference(1)
        routes = {"off": PredictRoute(pool, metrics, audit, inference)}
        shadow_metrics = ShadowMetrics(metrics.registry)
        workers = []
        for mode, sample in (("on", 1.0), ("on, sample 0.25", 0.25)):
            plans = shadow_plans({MODEL: {"prod": "dev"}}, sample=sample)
            shadow = Shadow(pool, shadow_metrics, audit, plans)
            workers.append((shadow, asyncio.create_task(shadow.run())))
            routes[mode] = PredictRoute(pool, metrics, audit, inference, shadow=shadow)
        body = json.dumps({"inputs": [{"hp": 110.0, "wt": 2.62, "disp": 160.0, "qsec": 16.46}]})
        message = {"type": "http.request", "body": body.encode(), "more_body": False}
        headers = [(b"content-type", b"application/json")]

        async def receive() -> Any:
            return message

        async def send(_: Any) -> None:
            return None

        times: dict[str, list[float]] = {mode: [] for mode in routes}
        order = list(routes.items())
        for i in range(iterations):
            k = i % len(order)  # rotate who goes first: no mode always gets the warm caches
            for mode, route in order[k:] + order[:k]:
                scope: Any = {
                    "type": "http",
                    "method": "POST",
                    "path": f"/{MODEL}",
                    "query_string": b"",
                    "headers": [*headers, (b"x-request-id", f"r{i}".encode())],
                }
                t = time.perf_counter()
                await route.handle(scope, receive, send)
                times[mode].append(time.perf_counter() - t)
            for _ in range(3):  # the workers predict what was queued (untimed)
                await asyncio.sleep(0)
        for shadow, task in workers:
            await shadow.stop(task)
        inference.close()
        out: dict[str, Any] = {}
        for mode, values in times.items():
            values.sort()
            out[mode] = {
                "p50_us": values[len(values) // 2] * 1e6,
                "p99_us": values[int(len(values) * 0.99)] * 1e6,
            }
        return out

    return asyncio.run(measure())


def _met(met: bool) -> str:
    return "yes" if met else "NO"


def markdown(results: dict[str, Any], seconds: float, rounds: int) -> str:
    lines = [
        f"Shadow on vs off: same gateway, fresh process per run, {rounds} alternating rounds of "
        f"{seconds:g} s, server on CPU 0, {results['load_generator']} on CPU 1; one row in, "
        f"shadow sample 1.0, shadow priority {results.get('priority', 'idle')}. "
        "Loads: back-to-back = 1 connection, no think time; paced = 1 "
        "connection, 1 ms think time; saturated = 16 connections. Ratio = on / off "
        "(throughput: higher is better; latency: lower is better).",
        "",
        "| scenario | load | rps off | rps on | ratio | p50 ms off | p50 on | ratio "
        "| p99 ms off | p99 on | ratio | shadowed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, per_load in results["scenarios"].items():
        for load, s in per_load.items():
            off, on, ratio = s["off"], s["on"], s["ratio_on_off"]
            lines.append(
                f"| {name} | {load} | {off['rps']:,.0f} | {on['rps']:,.0f} | {ratio['rps']:.3f} "
                f"| {off['p50_ms']:.3f} | {on['p50_ms']:.3f} | {ratio['p50_ms']:.3f} "
                f"| {off['p99_ms']:.3f} | {on['p99_ms']:.3f} | {ratio['p99_ms']:.3f} "
                f"| {s['shadow_compared_share']:.0%} |"
            )
    if results.get("targets"):
        lines += [
            "",
            f"Issue 17's targets: back-to-back (c1) p99 on / off <= {P99_C1_MAX_RATIO}, "
            f"saturated (c16) req/s on / off >= {RPS_C16_MIN_RATIO}:",
            "",
            "| scenario [executor] | c1 p99 ratio | met | c16 req/s ratio | met "
            "| shadowed c1 | shadowed c16 |",
            "|---|---:|---|---:|---|---:|---:|",
            *(
                f"| {t['scenario']} | {t['p99_c1_ratio']:.3f} | {_met(t['p99_c1_met'])} "
                f"| {t['rps_c16_ratio']:.3f} | {_met(t['rps_c16_met'])} "
                f"| {t['shadowed_c1']:.0%} | {t['shadowed_c16']:.0%} |"
                for t in results["targets"]
            ),
        ]
    path = results.get("path")
    if path:
        lines += [
            "",
            f"The predict handler's own time (in process, onnx, {path['iterations']:,} "
            "requests per mode, interleaved):",
            "",
            "| shadow | p50 µs | p99 µs |",
            "|---|---:|---:|",
            *(
                f"| {mode} | {row['p50_us']:.1f} | {row['p99_us']:.1f} |"
                for mode, row in path["modes"].items()
            ),
        ]
    lines.append("")
    lines.append(
        "`shadowed`: share of the primary's requests the shadow version also predicted and "
        "compared during the run; the rest were shed (`stageserve_shadow_skipped_total"
        '{reason="queue_full"}`) or still queued when the run ended.'
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--path-iterations", type=int, default=20_000, help="0: skip")
    parser.add_argument(
        "--executors", default="thread", help="comma-separated shadow_executor values"
    )
    parser.add_argument("--priority", default="idle", choices=("idle", "low", "normal"))
    parser.add_argument("--scenarios", default="onnx,sklearn", help="comma-separated")
    args = parser.parse_args(argv)
    results = run(
        args.seconds,
        args.rounds,
        lambda text: print(text, file=sys.stderr),
        path_iterations=args.path_iterations,
        executors=tuple(args.executors.split(",")),
        priority=args.priority,
        scenarios=tuple(args.scenarios.split(",")),
    )
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    print(markdown(results, args.seconds, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
