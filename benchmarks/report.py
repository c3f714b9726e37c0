"""Ratios against the issue's targets, the JSON results file and the dated RESULTS.md table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import batching_bench, overload_bench, workers_bench

__all__ = ["TARGETS", "issue17", "markdown", "ratios", "write_json"]

# other server -> (minimum stageserve/other requests/s ratio, how the issue words it);
# single worker pinned to one core, single-row requests, concurrency 16.
TARGETS: dict[str, tuple[float, str]] = {
    "minimal_litestar": (1.5, ">= 1.5x the minimal Litestar + onnxruntime route"),
    "raw_asgi": (0.5, "within 2x of raw ASGI doing the same inference"),
    "mlserver": (8.0, ">= 8x MLServer"),
    "mlflow": (30.0, ">= 30x mlflow models serve"),
}


def _key(run: dict[str, Any]) -> tuple[str, str, int, int]:
    return run["server"], run["model"], run["rows"], run["connections"]


def _find(runs: list[dict[str, Any]], server: str, **want: Any) -> dict[str, Any] | None:
    for run in runs:
        if run["server"] == server and all(
            run.get(k, "rows" if k == "format" else None) == v for k, v in want.items()
        ):
            return run
    return None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def issue17(results: dict[str, Any]) -> list[str]:
    """Issue 17's targets, each beside its goal and its value in this run (markdown lines;
    none when the run lacks stageserve's single-row c16 run). Rows whose measurement the run
    did not include (a server, an extra) are left out."""
    runs = results["runs"]
    single = {"model": "linear", "rows": 1, "connections": 16, "format": "rows"}
    ours = _find(runs, "stageserve", **single)
    if ours is None or not ours.get("cpu_us_per_request"):
        return []
    cpu = ours["cpu_us_per_request"]
    lines = [
        "",
        "Issue 17, every target measured in this run (single-row `linear` unless named):",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]

    def row(target: str, goal: str, value: str, met: bool | None) -> None:
        lines.append(f"| {target} | {goal} | {value} | {'-' if met is None else _yes(met)} |")

    row("server CPU per request, c16, everything on", "<= 55 µs", f"{cpu:.0f} µs", cpu <= 55)
    goals = {"raw_asgi": 2.0, "minimal_litestar": 2.5, "mlserver": 11.0, "mlflow": 45.0}
    for other, goal in goals.items():
        base = _find(runs, other, **single)
        if base and base.get("cpu_us_per_request"):
            if other == "raw_asgi":
                times = cpu / base["cpu_us_per_request"]
                row("CPU per request vs the floor (raw ASGI)", f"<= {goal:g}x", f"{times:.2f}x",
                    times <= goal)  # fmt: skip
            else:
                less = base["cpu_us_per_request"] / cpu
                row(f"CPU per request vs {other}", f">= {goal:g}x less", f"{less:.2f}x less",
                    less >= goal)  # fmt: skip
    for conns in (1, 16):
        at = {**single, "connections": conns}
        on, off = _find(runs, "stageserve", **at), _find(runs, "stageserve_noaudit", **at)
        if on and off and on["p99_ms"] and off["p99_ms"]:
            ratio = on["p99_ms"] / off["p99_ms"]
            goal, met = ("<= 1.3x", ratio <= 1.3) if conns == 1 else ("(no goal)", None)
            row(f"c{conns} p99 audit on / off", goal,
                f"{ratio:.2f}x ({on['p99_ms']:.3f} / {off['p99_ms']:.3f} ms)", met)  # fmt: skip
    for shadow in results.get("shadow", {}).get("targets", []):
        row(shadow["target"], shadow["goal"], shadow["measured"], shadow.get("met"))
    minimal = _find(runs, "minimal_litestar", model="linear", rows=100, connections=16)
    for run in runs:
        if run["server"] == "stageserve" and run["rows"] == 100 and minimal and minimal["rps"]:
            ratio = run["rps"] / minimal["rps"]
            cpu_less = (
                f"; CPU {minimal['cpu_us_per_request'] / run['cpu_us_per_request']:.2f}x less"
                if minimal.get("cpu_us_per_request") and run.get("cpu_us_per_request")
                else ""
            )
            row(f"100 rows, {run.get('format', 'rows')}: req/s vs the minimal route", ">= 1.5x",
                f"{ratio:.2f}x ({run['rps']:.0f} / {minimal['rps']:.0f}){cpu_less}",
                ratio >= 1.5)  # fmt: skip
    _issue17_extras(results, row)
    return lines


def _issue17_extras(
    results: dict[str, Any], row: Callable[[str, str, str, bool | None], None]
) -> None:
    """Issue 17's rows measured by the extras (workers, batching, overload, swap, memory)."""
    workers = results.get("workers")
    if workers and "error" not in workers:
        row("--workers 2 / 1, req/s", ">= 1.6x (0.8 x 2 cores)", f"{workers['scaling']:.2f}x",
            workers["scaling"] >= 1.6)  # fmt: skip
        per_core = workers["per_core_efficiency"]
        row("--workers 2 / 1, req/s per server core", ">= 0.8x", f"{per_core:.2f}x",
            per_core >= 0.8)  # fmt: skip
    batching = results.get("batching")
    if batching and "error" not in batching:
        t, p = batching["throughput_ratio"], batching["p99_ratio"]
        row("adaptive batching (GBR, c64): req/s on / off", ">= 3x", f"{t:.2f}x", t >= 3)
        row("adaptive batching: p99 on / off", "<= 2x", f"{p:.2f}x", p <= 2)
    overload = results.get("overload")
    if overload and "error" not in overload:
        r = overload["p99_ratio"]
        row(f"p99 of admitted requests at {overload['overload']}x overload / unloaded", "<= 2x",
            f"{r:.2f}x", r <= 2)  # fmt: skip
    for swap in (results.get("swap") or {}).get("results", []):
        median = swap["assign_to_first_new_response_s"]["median"]
        goal = 0.07 if swap["mode"].startswith("local") else 0.75
        row(f"swap, {swap['mode']}: assign to first new answer (median)",
            f"stays near {goal} s", f"{median} s", None)  # fmt: skip
    for mem in results.get("memory", []):
        if "error" not in mem and mem["engine"] == "onnx" and "1" in mem["rss_mib"]:
            row("resident memory, one ONNX version", "stays near 130 MiB",
                f"{mem['rss_mib']['1']} MiB", None)  # fmt: skip
            row("each further small ONNX version", "stays near 170 KiB",
                f"{mem['per_additional_version_kib']} KiB", None)  # fmt: skip


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """stageserve's requests/s over every other server's, scenario by scenario; the sklearn
    engine (gbr_pickle) is also set against the peers' pickled GBR."""
    by_key = {_key(r): r for r in runs}
    out = []
    for run in runs:
        if run["server"] != "stageserve" or not run["rps"] or run.get("format", "rows") != "rows":
            continue
        peer_model = "gbr" if run["model"] == "gbr_pickle" else run["model"]
        for other in sorted({r["server"] for r in runs} - {"stageserve"}):
            if other.startswith("stageserve_"):  # variants are read from the table itself
                continue
            base = by_key.get((other, peer_model, run["rows"], run["connections"]))
            if base is None or not base["rps"]:
                continue
            if run["model"] == "gbr_pickle" and other not in ("mlflow", "mlserver"):
                continue
            ratio = run["rps"] / base["rps"]
            # CPU per request barely moves when other processes take the core; req/s does.
            cpu_ratio = (
                base["cpu_us_per_request"] / run["cpu_us_per_request"]
                if base.get("cpu_us_per_request") and run.get("cpu_us_per_request")
                else None
            )
            target = TARGETS.get(other)
            row = {
                "stageserve_model": run["model"],
                "other": other,
                "other_model": peer_model,
                "rows": run["rows"],
                "connections": run["connections"],
                "ratio": round(ratio, 2),
                "cpu_ratio": round(cpu_ratio, 2) if cpu_ratio else None,
            }
            if (
                target
                and run["rows"] == 1
                and run["connections"] == 16
                and run["model"] != "gbr_pickle"
            ):
                row["target"] = target[0]
                row["met"] = ratio >= target[0]
            out.append(row)
    return out


def write_json(results: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{results['started_at'].replace(':', '')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"## {results['started_at']} ({'quick' if results['quick'] else 'full'} run)",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}; load average {m['loadavg_start']} at "
        f"start, {m['loadavg_end']} at end  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + "  ",
        f"Load: {results['load_generator']}; server pinned to core 0, load generator to core 1; "
        f"{results['duration_s']} s measured after {results['warmup_s']} s warm-up; "
        + (
            f"single-row c16 only, all servers up at once, {results['interleave_rounds']} "
            "round-robin rounds (median shown)  "
            if results.get("interleave_rounds")
            else f"single-row c16 repeated {results['repeats']}x (median shown)  "
        ),
    ]
    for name, note in results["peers"].items():
        lines.append(f"Peer {name}: {note}  ")
    lines += [
        "",
        "| server | model | rows | conc | req/s | p50 ms | p99 ms | CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        fmt = r.get("format", "rows")
        model = r["model"] if fmt == "rows" else f"{r['model']} ({fmt})"
        lines.append(
            f"| {r['server']} | {model} | {r['rows']} | {r['connections']} | "
            f"{_f(r['rps'], 0)} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | "
            f"{_f(r['cpu_us_per_request'], 0)} | {r['errors']} |"
        )
    targeted = [r for r in results["ratios"] if "target" in r]
    if targeted:
        lines += [
            "",
            "Targets (single-row, c16):",
            "",
            "| stageserve model | vs | req/s ratio | CPU/req ratio | target | met (req/s) |",
            "|---|---|---:|---:|---:|---|",
        ]
        for r in targeted:
            lines.append(
                f"| {r['stageserve_model']} | {r['other']} | {r['ratio']:.2f} | "
                f"{_f(r.get('cpu_ratio'))} | {r['target']} | {'yes' if r['met'] else 'NO'} |"
            )
    lines += _extras(results)
    lines += issue17(results)
    return "\n".join(lines) + "\n"


def _extras(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if results.get("inprocess"):
        lines += [
            "",
            "In-process `predict_matrix` (µs per call): "
            + ", ".join(
                f"{r['model']} ({r['engine']}) {r['rows']} row(s) {r['predict_matrix_us']}"
                for r in results["inprocess"]
            ),
        ]
    for mem in results.get("memory", []):
        if "error" in mem:
            lines += ["", f"Memory: {mem['error']}"]
            continue
        lines += [
            "",
            f"Memory ({mem['engine']}-served GBR versions): VmRSS by versions loaded "
            + ", ".join(f"{n}: {v} MiB" for n, v in mem["rss_mib"].items())
            + f"; the first version (with its runtime's libraries) {mem['first_version_mib']} "
            f"MiB, each further version {mem['per_additional_version_kib']} KiB",
        ]
    swap = results.get("swap")
    if swap:
        if "error" in swap:
            lines += ["", f"Swap latency: failed ({swap['error'][-200:]})"]
        else:
            for s in swap["results"]:
                a = s["assign_to_first_new_response_s"]
                lines += [
                    "",
                    f"Swap ({s['mode']}, poll {swap['poll_interval_s']} s): assign to "
                    f"first new response median {a['median']} s, max {a['max']} s over "
                    f"{s['swaps']} swaps; p99 steady {s['p99_ms_steady']} ms, during swaps "
                    f"{s['p99_ms_during_swaps']} ms; failed {s['failed']} of {s['requests']}",
                ]
    if results.get("workers"):
        lines += workers_bench.markdown(results["workers"])
    if results.get("batching"):
        lines += batching_bench.markdown(results["batching"])
    if results.get("overload"):
        lines += overload_bench.markdown(results["overload"])
    profile = results.get("profile")
    if profile and "categories_pct" in profile:
        lines += [
            "",
            f"Profile of stageserve's event-loop thread under c16 single-row load on `linear` "
            f"({profile['samples']} py-spy samples; % of samples):",
            "",
            "| where | % |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {pct} |" for name, pct in profile["categories_pct"]]
        lines += [
            "",
            "Functions with the most own samples: "
            + "; ".join(f"{name} {pct}%" for name, pct in profile["self_pct"][:12]),
        ]
    elif profile:
        lines += ["", f"Profile: {profile.get('error')}"]
    return lines
