"""History benchmarks (issue 14), real processes on 127.0.0.1, one run:

1. as-of latency: a cold as-of request (the past version fetched from the registry, verified,
   loaded, warmed up, then asked), a cold one whose package is already fetched, and warm ones,
   beside a live request;
2. replay throughput: `stageserve replay` over what a server recorded (inputs kept);
3. the predict path's cost of the PostgreSQL sink beside the file sink: the gateway's CPU per
   request (utime+stime from /proc, the shipper's thread included) under the same load,
   alternated A/B/A/B in one run;
4. the backfill after a database outage under load: records spooled while PostgreSQL was down
   for `--outage-s` seconds, and how long the shipper takes to get them all in once it is back.

    .venv/bin/python -m benchmarks.history_bench [--outage-s 60] [--load-s 8] [--no-record]

Appends a table to benchmarks/RESULTS.md. Wall-clock numbers on a shared 2-core machine move
with its load; the CPU per request is the steadier one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.procs import cpu_seconds  # noqa: E402
from registry_sync.registry import writer  # noqa: E402
from registry_sync.registry.git_registry import GitRegistry  # noqa: E402
from tests.integration.server import ServerProcess, entry, wait_until, write_state  # noqa: E402
from tests.models import example_rows, save_sklearn_package  # noqa: E402
from tests.postgres import Postgres  # noqa: E402
from tests.registry_packages import init_registry  # noqa: E402

MODEL = "cost_predictor"
BODY = json.dumps({"inputs": example_rows(1)}).encode()
JSON = {"content-type": "application/json"}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _timed(conn: http.client.HTTPConnection, path: str) -> tuple[float, int, dict[str, Any]]:
    started = time.perf_counter()
    conn.request("POST", path, body=BODY, headers=JSON)
    response = conn.getresponse()
    body = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, response.status, body


class Load:
    """`clients` keep-alive connections sending BODY back to back until stopped."""

    def __init__(self, port: int, clients: int = 2) -> None:
        self.port, self.clients = port, clients
        self.answered: list[str] = []
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            try:
                conn.request("POST", f"/predict/{MODEL}", body=BODY, headers=JSON)
                response = conn.getresponse()
                raw = response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                ok, raw = False, b""
            with self._lock:
                if ok:
                    self.answered.append(json.loads(raw)["request_id"])
                else:
                    self.failed += 1
        conn.close()


def as_of_latency(work: Path) -> dict[str, Any]:
    reg = GitRegistry(init_registry(work / "registry"))
    for i, version in enumerate(("v1.0.0", "v1.1.0", "v1.2.0")):
        package = save_sklearn_package(work / f"pkg{i}", offset=100.0 * i, gbr=True)
        writer.register(reg, MODEL, package, version=version)
    cache = work / "cache"
    cache.mkdir(parents=True)
    args = ["--registry", str(reg.path), "--poll-interval-s", "0.5",
            "--journal-path", str(work / "journal.jsonl")]  # fmt: skip
    env = {"STAGESERVE_ASOF_MAX_VERSIONS": "1", "STAGESERVE_LOG_LEVEL": "warning"}
    instants = []
    with ServerProcess(cache, args=args, env=env) as server:
        for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
            writer.assign(reg, MODEL, "prod", version)
            wait_until(
                lambda v=version: server.predict(MODEL, json.loads(BODY)).body.get("version") == v,
                60,
                version,
            )
            instants.append(time.time())
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        live = [_timed(conn, f"/predict/{MODEL}")[0] for _ in range(200)]
        first_cold = warm = None
        colds, warms = [], []
        # asof_max_versions=1: asking v1.0.0 and v1.1.0 in turn makes every switch a load.
        for round_ in range(6):
            at = instants[round_ % 2]
            ms, status, body = _timed(conn, f"/predict/{MODEL}?as_of={_iso(at)}")
            assert status == 200 and body["version"] == f"v1.{round_ % 2}.0", body
            if first_cold is None:
                first_cold = ms
            elif round_ >= 2:
                colds.append(ms)
            warms += [_timed(conn, f"/predict/{MODEL}?as_of={_iso(at)}")[0] for _ in range(50)]
        warm = statistics.median(warms)
        conn.close()
    return {
        "live_p50_ms": round(statistics.median(live), 3),
        "cold_first_ms": round(first_cold, 1),
        "cold_fetched_p50_ms": round(statistics.median(colds), 1),
        "warm_p50_ms": round(warm, 3),
        "model": "GradientBoostingRegressor (10 trees, skops), journal basis",
    }


def replay_throughput(work: Path, records: int) -> dict[str, Any]:
    reg = GitRegistry(init_registry(work / "registry"))
    writer.register(reg, MODEL, save_sklearn_package(work / "pkg"), version="v1.0.0")
    writer.assign(reg, MODEL, "prod", "v1.0.0")
    cache = work / "cache"
    cache.mkdir(parents=True)
    audit = work / "audit.jsonl"
    args = ["--registry", str(reg.path), "--audit-path", str(audit),
            "--journal-path", str(work / "journal.jsonl")]  # fmt: skip
    env = {"STAGESERVE_AUDIT_INCLUDE_INPUTS": "true", "STAGESERVE_LOG_LEVEL": "warning"}
    with ServerProcess(cache, args=args, env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for _ in range(records):
            _timed(conn, f"/predict/{MODEL}")
        conn.close()
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "replay", "--audit", str(audit),
         "--registry", str(reg.path), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
        env={**os.environ, "STAGESERVE_NO_PROGRESS": "1"},
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert report["matches"] == records, report
    return {k: report[k] for k in ("records", "matches", "seconds", "records_per_s")}


def _cpu_per_request(server: ServerProcess, seconds: float) -> tuple[float, int]:
    assert server.proc is not None
    before = cpu_seconds(server.proc.pid)
    with Load(server.port) as load:
        time.sleep(seconds)
    return (cpu_seconds(server.proc.pid) - before) / max(1, len(load.answered)), len(load.answered)


def sink_cost(work: Path, pg: Postgres, seconds: float) -> dict[str, Any]:
    cache = work / "cache"
    cache.mkdir(parents=True)
    write_state(cache, [entry(MODEL, "prod", "v1.0.0", save_sklearn_package(work / "pkg"))])
    quiet = {"STAGESERVE_LOG_LEVEL": "warning"}
    setups = {
        "file": {**quiet, "STAGESERVE_AUDIT_PATH": str(work / "audit.jsonl")},
        "postgres": {
            **quiet,
            "STAGESERVE_POSTGRES_URL": pg.database(),
            "STAGESERVE_SPOOL_DIR": str(work / "spool"),
        },
    }
    results: dict[str, list[float]] = {name: [] for name in setups}
    requests: dict[str, int] = {name: 0 for name in setups}
    for _ in range(2):  # A/B/A/B: the machine's load drifts alike for both
        for name, env in setups.items():
            with ServerProcess(cache, env=env) as server:
                wait_until(lambda s=server: s.get("/readyz").status == 200, 60, "ready")
                _cpu_per_request(server, 1.0)  # warm-up
                cpu, n = _cpu_per_request(server, seconds)
                results[name].append(cpu * 1e6)
                requests[name] += n
    file_us = statistics.mean(results["file"])
    pg_us = statistics.mean(results["postgres"])
    return {
        "file_cpu_us_per_req": round(file_us, 1),
        "postgres_cpu_us_per_req": round(pg_us, 1),
        "difference_us": round(pg_us - file_us, 1),
        "runs_us": {k: [round(v, 1) for v in vs] for k, vs in results.items()},
        "requests": requests,
    }


def backfill(work: Path, pg: Postgres, outage_s: float) -> dict[str, Any]:
    cache = work / "cache"
    cache.mkdir(parents=True)
    write_state(cache, [entry(MODEL, "prod", "v1.0.0", save_sklearn_package(work / "pkg"))])
    url = pg.database()
    env = {
        "STAGESERVE_POSTGRES_URL": url,
        "STAGESERVE_SPOOL_DIR": str(work / "spool"),
        "STAGESERVE_LOG_LEVEL": "warning",
        "STAGESERVE_AUDIT_FAILURE_MODE": "fail_closed",
    }

    def history(server: ServerProcess) -> dict[str, Any]:
        found: dict[str, Any] = server.get("/models").body["history"]
        return found

    with ServerProcess(cache, env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        with Load(server.port) as load:
            time.sleep(3)
            pg.stop("immediate")
            down_at = time.monotonic()
            try:
                time.sleep(outage_s)
            finally:
                pg.start()
            back_at = time.monotonic()
            spooled = sum(history(server)["backlog_bytes"].values())
            answered_in_outage = len(load.answered)
            wait_until(lambda: not any(history(server)["backlog_bytes"].values()), 600, "backfill")
            backfill_s = time.monotonic() - back_at
            time.sleep(1)
        wait_until(lambda: not any(history(server)["backlog_bytes"].values()), 60, "drained")
        rows = pg.query(url, "SELECT count(*) FROM stageserve_audit")[0][0]
        failed = load.failed
    return {
        "outage_s": round(back_at - down_at, 1),
        "spooled_bytes_at_restart": spooled,
        "answered_before_restart": answered_in_outage,
        "backfill_s": round(backfill_s, 2),
        "answered": len(load.answered),
        "failed": failed,
        "records_in_database": rows,
        "every_answer_recorded": set(load.answered)
        <= {r[0] for r in pg.query(url, "SELECT request_id FROM stageserve_audit")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage-s", type=float, default=60.0, help="database outage (60)")
    parser.add_argument("--load-s", type=float, default=8.0, help="each A/B run's length (8)")
    parser.add_argument("--replay-records", type=int, default=10000, help="records to replay")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"started": _iso(time.time()), "load": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="stageserve-history-bench-") as tmp:
        work = Path(tmp)
        results["as_of"] = as_of_latency(work / "asof")
        print(json.dumps(results["as_of"]), flush=True)
        results["replay"] = replay_throughput(work / "replay", args.replay_records)
        print(json.dumps(results["replay"]), flush=True)
        pg_root = Path(tempfile.mkdtemp(prefix="stageserve-pg-", dir="/tmp"))
        pg = Postgres(pg_root)
        pg.init()
        pg.start()
        try:
            results["sink_cost"] = sink_cost(work / "sink", pg, args.load_s)
            print(json.dumps(results["sink_cost"]), flush=True)
            results["backfill"] = backfill(work / "backfill", pg, args.outage_s)
            print(json.dumps(results["backfill"]), flush=True)
        finally:
            pg.stop("immediate")
            subprocess.run(["rm", "-rf", str(pg_root)], check=False)
    results["load_end"] = os.getloadavg()
    if not args.no_record:
        _record(results, args)
    return 0


def _record(r: dict[str, Any], args: argparse.Namespace) -> None:
    a, rp, s, b = r["as_of"], r["replay"], r["sink_cost"], r["backfill"]
    lines = [
        "",
        f"## {r['started'][:10]}: history (issue 14): as-of, replay, the PostgreSQL sink",
        "",
        f"Command: `.venv/bin/python -m benchmarks.history_bench --outage-s {args.outage_s:g} "
        f"--load-s {args.load_s:g}`  ",
        f"Machine: 2 cores; load average {' '.join(f'{x:.2f}' for x in r['load'])} at start, "
        f"{' '.join(f'{x:.2f}' for x in r['load_end'])} at end; Python load generator (2 "
        "keep-alive clients), PostgreSQL 15 on the same machine (fsync off)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| live predict, p50 (1 row, {a['model']}) | {a['live_p50_ms']} ms |",
        f"| as-of, cold, first (export from git, verify, load, warm up, predict) | "
        f"{a['cold_first_ms']} ms |",
        f"| as-of, cold, package already fetched (verify, load, warm up), p50 | "
        f"{a['cold_fetched_p50_ms']} ms |",
        f"| as-of, warm, p50 | {a['warm_p50_ms']} ms |",
        f"| replay: {rp['records']} records, all matching | {rp['seconds']} s, "
        f"{rp['records_per_s']} records/s |",
        f"| gateway CPU per request, file sink | {s['file_cpu_us_per_req']} µs |",
        f"| gateway CPU per request, PostgreSQL sink (spool + shipper thread) | "
        f"{s['postgres_cpu_us_per_req']} µs |",
        f"| difference (PostgreSQL - file) | {s['difference_us']} µs (runs: {s['runs_us']}) |",
        f"| outage under load | {b['outage_s']} s, {b['spooled_bytes_at_restart']} bytes "
        f"spooled, {b['failed']} requests failed |",
        f"| backfill once the database is back | {b['backfill_s']} s |",
        f"| every answered request in the database | {b['every_answer_recorded']} "
        f"({b['answered']} answered, {b['records_in_database']} rows) |",
        "",
    ]
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
