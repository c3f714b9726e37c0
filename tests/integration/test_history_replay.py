"""`stageserve replay` on what a real server recorded across a swap: every answer reproduced on
the version that gave it; a doctored record is a mismatch (exit 1, largest difference), a
record naming a version that did not serve then disagrees with the journal (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ROOT, ServerProcess, wait_until
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
BODY = {"inputs": example_rows(2)}


def _replay(audit: Path, registry: Path, *more: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "replay", "--audit", str(audit),
         "--registry", str(registry), "--json", *more],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    # Off a terminal, progress is JSON lines on stderr: the replay's start, then (after each
    # version's fetch and digest check) its end with the count of records.
    progress = [
        line
        for line in map(json.loads, filter(None, done.stderr.splitlines()))
        if line.get("logger") == "stageserve.progress"
    ]
    assert (progress[0]["task"], progress[0]["event"]) == ("replay", "started"), done.stderr
    assert (progress[-1]["task"], progress[-1]["event"]) == ("replay", "done"), done.stderr
    assert {line["task"].split()[0] for line in progress[1:-1]} <= {"fetch", "verify"}
    assert progress[-1]["records"] == report["records"] and progress[-1]["duration_s"] >= 0
    return done.returncode, report


def _rewrite(audit: Path, change: Any) -> None:
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    audit.write_text("".join(json.dumps(change(r)) + "\n" for r in records))


def test_replay_reproduces_every_answer_and_catches_a_doctored_record(tmp_path: Path) -> None:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    writer.register(reg, MODEL, save_sklearn_package(tmp_path / "a"), version="v1.0.0")
    writer.register(reg, MODEL, save_sklearn_package(tmp_path / "b", offset=100), version="v1.1.0")
    writer.assign(reg, MODEL, "prod", "v1.0.0")
    cache = tmp_path / "cache"
    cache.mkdir()
    audit, journal = tmp_path / "audit.jsonl", tmp_path / "journal.jsonl"
    args = ["--registry", str(reg.path), "--poll-interval-s", "0.5", "--audit-path", str(audit),
            "--journal-path", str(journal)]  # fmt: skip
    with ServerProcess(cache, args=args, env={"STAGESERVE_AUDIT_INCLUDE_INPUTS": "true"}) as s:
        wait_until(lambda: s.get("/readyz").status == 200, 60, "ready")
        for _ in range(5):
            assert s.predict(MODEL, BODY).status == 200
        writer.assign(reg, MODEL, "prod", "v1.1.0")
        wait_until(lambda: s.predict(MODEL, BODY).body["version"] == "v1.1.0", 30, "the swap")
        for _ in range(4):
            assert s.predict(MODEL, BODY).status == 200
        assert s.predict(MODEL, {"inputs": [{"hp": "fast"}]}).status == 422
    code, report = _replay(audit, reg.path)
    answered = sum(
        1 for line in audit.read_text().splitlines() if json.loads(line)["status"] == 200
    )
    assert code == 0, report
    assert report["replayed"] == report["matches"] == answered >= 10
    assert report["mismatches"] == 0 and report["largest_difference"] == 0.0
    assert report["not_replayed"] == {"not_answered": 1}
    # Every record a version handled (the 422 too) names what the journal says served.
    assert report["journal_checked"] == answered + 1 and report["journal_disagreements"] == 0

    # One recorded prediction moved by 0.5: a mismatch, and the largest difference says so.
    first = json.loads(audit.read_text().splitlines()[0])["request_id"]
    _rewrite(
        audit,
        lambda r: (
            {**r, "predictions": [r["predictions"][0] + 0.5, r["predictions"][1]]}
            if r["request_id"] == first
            else r
        ),
    )
    code, report = _replay(audit, reg.path)
    assert code == 1 and report["mismatches"] == 1
    assert report["largest_difference_request_id"] == first
    # 0.5 added to a number near 20: the float sum is off by at most an ulp of 20.
    assert report["largest_difference"] == pytest.approx(0.5, abs=1e-12)

    # A record claiming the later version for a time v1.0.0 served: the journal disagrees.
    v11 = next(json.loads(x) for x in audit.read_text().splitlines() if '"v1.1.0"' in x)
    _rewrite(
        audit,
        lambda r: (
            {**r, "version": "v1.1.0", "digest": v11["digest"]} if r["request_id"] == first else r
        ),
    )
    code, report = _replay(audit, reg.path, "--model", MODEL)
    assert code == 1 and report["journal_disagreements"] == 1
    assert report["disagreement_examples"][0]["request_id"] == first
