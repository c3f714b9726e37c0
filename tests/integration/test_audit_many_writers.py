"""One audit file, several writer processes (`--workers N`), small rotation size: every line
whole, none lost, none interleaved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.server import ROOT

WRITERS = 3
BATCHES = 300

_WRITER = """
import json, sys
from pathlib import Path
from gateway.telemetry.audit_file import RotatingFile
path, lock, who, batches = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
f = RotatingFile(path, max_bytes=20_000, backups=1000, lock_path=lock)
for b in range(batches):
    # 40 lines of ~100 bytes: one write of ~4 KiB, past what a pipe writes atomically
    lines = [{"writer": who, "batch": b, "line": i, "pad": "x" * 50} for i in range(40)]
    f.write("".join(json.dumps(line) + "\\n" for line in lines).encode())
f.close()
"""


def test_writer_processes_sharing_the_lock_never_tear_lose_or_interleave_lines(
    tmp_path: Path,
) -> None:
    path, lock = tmp_path / "audit.jsonl", tmp_path / "audit.lock"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(lock), str(w), str(BATCHES)], cwd=ROOT
        )
        for w in range(WRITERS)
    ]
    assert [p.wait(120) for p in procs] == [0] * WRITERS
    files = sorted(tmp_path.glob("audit.jsonl*"))
    assert len(files) > 10, "no rotation happened: the test would prove little"
    seen: dict[tuple[str, int], list[int]] = {}
    for f in files:
        for line in f.read_text().splitlines():
            record = json.loads(line)  # a torn or interleaved line fails here
            seen.setdefault((record["writer"], record["batch"]), []).append(record["line"])
    assert len(seen) == WRITERS * BATCHES
    # Each batch whole and in order, in one place: never interleaved with another's.
    assert all(lines == list(range(40)) for lines in seen.values())
