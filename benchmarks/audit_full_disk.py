"""Requests answered vs audit records written when the audit disk fills up (real server).

    .venv/bin/python benchmarks/audit_full_disk.py --mode fail_closed
    .venv/bin/python benchmarks/audit_full_disk.py --mode fail_open --requests 1500

The audit file lives on a 512 KiB tmpfs (needs root; else the server's RLIMIT_FSIZE is the
seam, see tests/integration/small_disk.py). 50 requests, then the disk is filled, then
`--requests` more, then space is freed and the server stopped; reported: requests answered
200, their records in the file, torn lines, 503s, the failure and drop counters.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.server import ServerProcess, entry, wait_until, write_state  # noqa: E402
from tests.integration.small_disk import SmallDisk  # noqa: E402
from tests.models import example_rows, save_onnx_package  # noqa: E402


def _metric(server: ServerProcess, name: str) -> float | None:
    for line in server.get("/metrics").body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def run(mode: str, requests: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="audit-disk-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        cache.mkdir()
        write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(work / "v1"))])
        with SmallDisk(work / "disk") as disk:
            audit = disk.path / "audit.jsonl"
            env = {"STAGESERVE_AUDIT_PATH": str(audit), "STAGESERVE_AUDIT_FAILURE_MODE": mode}
            server = ServerProcess(cache, env=env)
            server.start()
            assert server.proc is not None
            disk.attach(server.proc.pid, audit)
            wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
            answered: list[str] = []
            statuses: dict[int, int] = {}
            body = {"inputs": example_rows(1)}

            def send() -> None:
                r = server.predict("cost", body)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    answered.append(str(r.body["request_id"]))

            for _ in range(50):
                send()
            time.sleep(0.2)
            disk.fill()
            for _ in range(requests):
                send()
            failures = _metric(server, "stageserve_audit_write_failures_total")
            disk.free()
            wait_until(
                lambda: server.get("/models").body["audit"]["backlog"] == 0, 30, "backlog written"
            )
            dropped = _metric(server, "stageserve_audit_records_dropped_total")
            code = server.stop()
            data = audit.read_bytes()
        lines = data.splitlines()
        parsed, torn = [], 0
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                torn += 1
        written = {r["request_id"] for r in parsed if r.get("status") == 200}
    return {
        "mode": mode,
        "disk": disk.kind,
        "answered_200": len(answered),
        "their_records_written": len(written & set(answered)),
        "torn_lines": torn,
        "statuses": statuses,
        "write_failures": failures,
        "dropped": dropped,
        "exit_code": code,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["fail_open", "fail_closed"], default="fail_closed")
    p.add_argument("--requests", type=int, default=1500)
    args = p.parse_args(argv)
    print(json.dumps(run(args.mode, args.requests)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
