"""Overload: the p99 of admitted requests at 4x the concurrency a model is limited to, beside
its p99 at that concurrency (nothing refused) and beside no limit at 4x (everything queued).

    .venv/bin/python -m benchmarks.overload_bench    # alone (builds its own fixtures)
    (also part of `make bench`: benchmarks/run.py --extras overload)

The model is the benchmarks' GradientBoostingRegressor (`gbr_pickle`, scikit-learn, ~200-300
µs a call: a heavy model, the kind a limit is for), single-row requests, the server pinned to
core 0 and wrk to core 1. `inference_limits: {gbr_pickle: {max_concurrent: LIMIT}}` with
LIMIT = 1 (an inline model answers one request at a time on the event loop anyway):

- unloaded: LIMIT connections (closed loop: never more than LIMIT requests at once, so
  nothing is refused) -> the unloaded p99;
- overloaded: 4 x LIMIT connections with the limit -> the p99 of the 200s (the 503s are
  counted apart; a refused client asks again at once, the worst case for the server);
- queued: 4 x LIMIT connections without a limit -> what the admitted clients would see
  without admission.

wrk's own percentiles mix 200s and 503s, so latencies come from a Lua script that times each
request per status (LuaJIT's FFI reads CLOCK_MONOTONIC): one connection per wrk thread, so a
thread's responses follow its requests one by one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import extras  # noqa: E402
from benchmarks.fixtures import body_for, build_fixtures  # noqa: E402
from benchmarks.loadgen import ensure_wrk  # noqa: E402
from benchmarks.procs import Server, cpu_seconds, pin_prefix  # noqa: E402

__all__ = ["markdown", "measure_overload"]

MODEL = "gbr_pickle"
LIMIT = 1
OVERLOAD = 4

_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } stageserve_timespec;
int clock_gettime(int clk_id, stageserve_timespec *tp);
]]
local ts = ffi.new("stageserve_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[BODY]==]
local threads = {}
function setup(thread) table.insert(threads, thread) end
local started = 0
admitted = {}
refused = 0
timed_out = 0
other = 0
function request() started = now_us(); return wrk.format() end
function response(status, headers, body)
  local took = now_us() - started
  if status == 200 then admitted[#admitted + 1] = took
  elseif status == 503 then refused = refused + 1
  elseif status == 504 then timed_out = timed_out + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local all, r, t, o = {}, 0, 0, 0
  for _, thread in ipairs(threads) do
    local mine = thread:get("admitted")
    for i = 1, #mine do all[#all + 1] = mine[i] end
    r = r + thread:get("refused"); t = t + thread:get("timed_out"); o = o + thread:get("other")
  end
  table.sort(all)
  local function pct(q)
    if #all == 0 then return -1 end
    return all[math.max(1, math.ceil(#all * q))]
  end
  io.write(string.format("ADMITTED %d P50_US %.1f P99_US %.1f REFUSED %d TIMED_OUT %d OTHER %d\n",
    #all, pct(0.5), pct(0.99), r, t, o))
end
"""


def _wrk(
    wrk: str, url: str, body: bytes, *, connections: int, duration_s: float, work: Path
) -> dict[str, Any]:
    script = work / "overload.lua"
    script.write_text(_LUA.replace("BODY", body.decode()))
    cmd = [
        *pin_prefix(1), wrk, f"-t{connections}", f"-c{connections}",
        f"-d{max(1, round(duration_s))}s", "--timeout", "10s", "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=True)
    found = re.search(
        r"ADMITTED (\d+) P50_US ([\d.-]+) P99_US ([\d.-]+) REFUSED (\d+) TIMED_OUT (\d+) "
        r"OTHER (\d+)",
        done.stdout,
    )
    if found is None:
        raise RuntimeError(f"no ADMITTED line in wrk's output:\n{done.stdout}\n{done.stderr}")
    admitted, p50, p99, refused, timed_out, other = found.groups()
    seconds = max(1, round(duration_s))
    return {
        "connections": connections,
        "admitted_rps": round(int(admitted) / seconds, 1),
        "p50_ms": round(float(p50) / 1000, 3),
        "p99_ms": round(float(p99) / 1000, 3),
        "refused_503": int(refused),
        "timed_out_504": int(timed_out),
        "other": int(other),
    }


def _run(
    cache: Path, work: Path, wrk: str, *, limit: int | None, connections: int,
    duration_s: float, warmup_s: float, repeats: int,
) -> dict[str, Any]:  # fmt: skip
    launch = extras.stageserve_launch(cache, work / "overload-audit.jsonl", "stageserve",
                                      models=[MODEL])  # fmt: skip
    if limit is not None:
        rules = {MODEL: {"max_concurrent": limit}}
        launch.env = {"STAGESERVE_INFERENCE_LIMITS": json.dumps(rules)}
    body = body_for("stageserve", 1, MODEL)
    launch.ready_body = body
    server = Server(launch, work / f"overload-{limit}-{connections}.log")
    server.start()
    try:
        url = server.url(MODEL)
        _wrk(wrk, url, body, connections=connections, duration_s=warmup_s, work=work)
        samples = []
        for _ in range(repeats):
            before = cpu_seconds(server.pid)
            sample = _wrk(wrk, url, body, connections=connections, duration_s=duration_s, work=work)
            answered = sample["admitted_rps"] * max(1, round(duration_s)) + sample["refused_503"]
            cpu = cpu_seconds(server.pid) - before
            sample["cpu_us_per_answer"] = round(cpu / answered * 1e6, 1) if answered else None
            samples.append(sample)
    finally:
        server.stop()
    samples.sort(key=lambda s: s["p99_ms"])
    median = dict(samples[len(samples) // 2])
    median["all_p99_ms"] = [s["p99_ms"] for s in samples]
    median["limit"] = limit
    return median


def measure_overload(
    cache: Path,
    work: Path,
    wrk: str | None,
    *,
    duration_s: float = 5.0,
    warmup_s: float = 2.0,
    repeats: int = 3,
) -> dict[str, Any]:
    if wrk is None:
        return {"error": "needs wrk (its Lua script times 200s apart from 503s)"}
    timing = {"duration_s": duration_s, "warmup_s": warmup_s, "repeats": repeats}
    unloaded = _run(cache, work, wrk, limit=LIMIT, connections=LIMIT, **timing)
    overloaded = _run(cache, work, wrk, limit=LIMIT, connections=LIMIT * OVERLOAD, **timing)
    queued = _run(cache, work, wrk, limit=None, connections=LIMIT * OVERLOAD, **timing)
    return {
        "model": f"{MODEL} (scikit-learn GBR, 10 trees)",
        "limit": LIMIT,
        "overload": OVERLOAD,
        "runs": {"unloaded": unloaded, "overloaded": overloaded, "queued": queued},
        "p99_ratio": round(overloaded["p99_ms"] / unloaded["p99_ms"], 2),
        "queued_p99_ratio": round(queued["p99_ms"] / unloaded["p99_ms"], 2),
    }


def markdown(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return ["", f"Overload: failed ({result['error'][-300:]})"]
    limit, factor = result["limit"], result["overload"]
    lines = [
        "",
        f"Overload ({result['model']}, single-row, server on core 0, `max_concurrent: {limit}`; "
        f"latencies of the 200s only):",
        "",
        "| run | connections | limit | admitted req/s | p50 ms | p99 ms | 503s | CPU µs/answer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["runs"].items():
        lines.append(
            f"| {name} | {r['connections']} | {r['limit'] or 'none'} | {r['admitted_rps']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['refused_503']:,} | "
            f"{r['cpu_us_per_answer']} |"
        )
    ratio = result["p99_ratio"]
    lines += [
        "",
        f"p99 of admitted requests at {factor}x overload / unloaded: {ratio:.2f}x (target <= 2: "
        f"{'met' if ratio <= 2 else 'NOT met'}); without a limit the same {factor}x load queues: "
        f"{result['queued_p99_ratio']:.2f}x",
    ]
    return lines


def main() -> int:
    wrk, _ = ensure_wrk(install=False)
    with tempfile.TemporaryDirectory(prefix="stageserve-overload-") as tmp:
        fx = build_fixtures(Path(tmp))
        result = measure_overload(fx.cache, Path(tmp), wrk)
    print(json.dumps(result, indent=2))
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
