"""Outcomes through a real server: POST /feedback, scored against what each version answered,
reported by GET /models/{m}/performance, counted in /metrics, and a shadow pair compared on
the same outcomes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import ROOT, ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_classifier_package, save_sklearn_package
from tests.terminal import run_on_a_terminal

pytestmark = pytest.mark.slow

ROWS = example_rows(2)
# MAE computed here and by the server from the same recorded floats: only the order of the
# additions may differ, so 1e-9 relative is ample.
REL = 1e-9


@dataclass
class Setup:
    server: ServerProcess
    root: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("outcomes")
    cache = root / "cache"
    cache.mkdir()
    write_state(
        cache,
        [
            entry("cost", "prod", "v1.0.0", save_sklearn_package(root / "lin", name="cost")),
            entry(
                "cost", "dev", "v2.0.0", save_sklearn_package(root / "gbr", name="cost", gbr=True)
            ),
            entry("gearbox", "prod", "v1.0.0", save_classifier_package(root / "gear")),
        ],
    )
    env = {
        "STAGESERVE_AUDIT_PATH": str(root / "audit.jsonl"),
        "STAGESERVE_SHADOW": json.dumps({"cost": {"prod": "dev"}}),
    }
    with ServerProcess(cache, env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        yield Setup(server, root)


def _feedback(server: ServerProcess, model: str, body: Any) -> Any:
    return server.request(
        "POST",
        f"/feedback/{model}",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )


def _shadow_outcomes(server: ServerProcess) -> int:
    """Outcomes the shadow pairs of `cost` were compared on (their records are audited)."""
    report = server.get("/models/cost/performance?window=1h").body
    return sum(pair["outcomes"] for pair in report["shadow"])


def _sample(server: ServerProcess, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    families = text_string_to_metric_families(server.get("/metrics").body)
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in families
        for s in f.samples
        if s.name == name
    }


def test_outcomes_are_scored_per_version_and_reported_over_time(setup: Setup) -> None:
    server = setup.server
    answers = [
        server.predict("cost", {"inputs": ROWS}, x_request_id=f"order-{i}") for i in range(4)
    ]
    assert all(a.status == 200 for a in answers)
    truth = [[p + 1.5, p - 0.5] for p in (a.body["predictions"][0] for a in answers)]
    # By the server's id, then by the client's own x-request-id.
    first = _feedback(
        server, "cost", {"request_id": answers[0].body["request_id"], "outcome": truth[0]}
    )
    assert first.status == 200, first.body
    assert first.body["status"] == "recorded" and first.body["version"] == "v1.0.0"
    by_client = _feedback(server, "cost", {"client_request_id": "order-1", "outcome": truth[1]})
    assert by_client.status == 200 and by_client.body["request_id"] == answers[1].body["request_id"]
    # Several at once: each item gets its own result; one bad item does not stop the others.
    batch = _feedback(
        server,
        "cost",
        {
            "outcomes": [
                {"request_id": answers[2].body["request_id"], "outcome": truth[2]},
                {"request_id": "no-such-request", "outcome": [1.0, 2.0]},
            ]
        },
    )
    assert batch.status == 200
    assert [r["status"] for r in batch.body["results"]] == ["recorded", "rejected"]
    assert batch.body["results"][1]["error"]["code"] == "history_not_found"

    def v1_report() -> dict[str, Any]:
        report = server.get("/models/cost/performance?window=1h&bucket=1m").body
        return {"report": report, **next(v for v in report["versions"] if v["version"] == "v1.0.0")}

    # Audit records are flushed every 50 ms: the fourth may still be on its way.
    wait_until(lambda: v1_report()["requests"] == 4, 10, "the fourth audit record")
    # Shadow predictions run in the shadow process at idle priority: theirs may come later.
    wait_until(lambda: _shadow_outcomes(server) >= 3, 60, "the shadow's audit records")
    v1 = v1_report()
    report = v1["report"]
    errors = [
        abs(t - p)
        for a, true in zip(answers[:3], truth[:3], strict=True)
        for t, p in zip(true, a.body["predictions"], strict=True)
    ]
    assert v1["outcomes"] == 3 and v1["requests"] == 4 and v1["coverage"] == 0.75
    assert v1["regression_values"] == 6
    assert math.isclose(v1["mae"], sum(errors) / 6, rel_tol=REL)
    assert math.isclose(v1["rmse"], math.sqrt(sum(e * e for e in errors) / 6), rel_tol=REL)
    assert v1["accuracy"] is None
    assert sum(p["outcomes"] for p in report["series"] if p["version"] == "v1.0.0") == 3
    # The shadow (dev's v2.0.0) predicted the same requests: compared on the same outcomes.
    (pair,) = report["shadow"]
    assert (pair["primary_version"], pair["shadow_version"]) == ("v1.0.0", "v2.0.0")
    assert pair["outcomes"] == 3
    assert pair["shadow_closer"] + pair["primary_closer"] + pair["ties"] == 3
    assert math.isclose(pair["primary"]["mae"], v1["mae"], rel_tol=REL)

    sums = _sample(server, "stageserve_outcome_error_sum_total")
    key = (("measure", "abs_error"), ("model", "cost"), ("version", "v1.0.0"))
    assert math.isclose(sums[key], sum(errors), rel_tol=REL)
    counts = _sample(server, "stageserve_outcomes_total")
    assert counts[(("model", "cost"), ("version", "v1.0.0"))] == 3


def test_classification_outcomes_give_accuracy(setup: Setup) -> None:
    server = setup.server
    answer = server.predict(
        "gearbox", {"inputs": [{"hp": 110, "wt": 2.62}, {"hp": 245, "wt": 3.57}]}
    )
    predicted = answer.body["predictions"]
    flipped = {"manual": "automatic", "automatic": "manual"}
    outcome = [predicted[0], flipped[predicted[1]]]
    assert (
        _feedback(
            server, "gearbox", {"request_id": answer.body["request_id"], "outcome": outcome}
        ).status
        == 200
    )
    (v,) = server.get("/models/gearbox/performance?window=1h").body["versions"]
    assert (v["labels"], v["accuracy"], v["mae"]) == (2, 0.5, None)


def test_outcomes_are_validated_and_recorded_once(setup: Setup) -> None:
    server = setup.server
    answer = server.predict("cost", {"inputs": ROWS})
    rid = answer.body["request_id"]
    wrong_length = _feedback(server, "cost", {"request_id": rid, "outcome": [1.0]})
    assert wrong_length.status == 422
    assert wrong_length.body["error"]["details"]["path"] == "$.outcome"
    wrong_type = _feedback(server, "cost", {"request_id": rid, "outcome": [1.0, "many"]})
    assert wrong_type.status == 422
    assert wrong_type.body["error"]["details"]["path"] == "$.outcome[1]"
    # A request id of another model is answered like an unknown one.
    assert (
        _feedback(server, "gearbox", {"request_id": rid, "outcome": ["manual"] * 2}).status == 404
    )
    assert _feedback(server, "cost", {"request_id": rid, "outcome": [20.0, 21.0]}).status == 200
    again = _feedback(server, "cost", {"request_id": rid, "outcome": [20.0, 21.0]})
    assert (again.status, again.body["status"]) == (200, "unchanged")
    other = _feedback(server, "cost", {"request_id": rid, "outcome": [25.0, 21.0]})
    assert (other.status, other.body["error"]["code"]) == (409, "conflict")
    # The shadow's own record is not a prediction anyone was answered with.
    shadowed = _feedback(server, "cost", {"request_id": f"{rid}#shadow", "outcome": [1.0, 2.0]})
    assert shadowed.status == 404
    lines = (setup.root / "outcomes.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["request_id"] == rid for line in lines) == 1


def _stageserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_outcomes_import_from_a_file_and_the_report_shows_them(setup: Setup) -> None:
    server = setup.server
    answers = [server.predict("cost", {"inputs": ROWS}) for _ in range(3)]
    lines = [{"request_id": a.body["request_id"], "outcome": [20.0, 19.0]} for a in answers[:2]] + [
        {"request_id": answers[2].body["request_id"], "outcome": ["x", 1.0]}
    ]
    outcomes = setup.root / "import.jsonl"
    outcomes.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = _stageserve(
        "feedback", "import", str(outcomes), "--model", "cost",
        "--url", f"http://127.0.0.1:{server.port}",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # one line was refused
    assert "2 recorded, 0 already recorded, 1 rejected" in done.stdout
    assert "import.jsonl:3: schema_mismatch" in done.stderr

    wait_until(lambda: _shadow_outcomes(server) >= 2, 60, "the shadow's audit records")
    expected = server.get("/models/cost/performance?window=1h").body["versions"]
    for fmt in ("md", "html"):
        out = setup.root / f"report-{fmt}"
        audit = str(setup.root / "audit.jsonl")
        made = _stageserve(
            "report", "--audit", audit, "--format", fmt, "--out", str(out),
            "--from", "2020-01-01T00:00:00Z",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        # Off a terminal: progress as JSON lines (per model), nothing else on stderr.
        progress = [json.loads(line) for line in made.stderr.splitlines()]
        assert [(line["task"], line["event"]) for line in progress] == [
            ("report: performance per model", "started"),
            ("report: performance per model", "done"),
            ("report: plots", "started"),
            ("report: plots", "done"),
        ]
        assert progress[0]["total"] == progress[1]["models"] >= 1  # cost (gearbox if its test ran)
        text = (out / f"report.{fmt}").read_text()
        for v in expected:
            assert v["version"] in text
        assert "cost: versions" in text and "Usage per client" in text
        assert "cost: shadow pairs on the same outcomes" in text
    assert (setup.root / "report-md" / "cost.png").read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in (setup.root / "report-html" / "report.html").read_text()


def test_report_on_a_terminal_draws_a_bar_per_model(setup: Setup) -> None:
    assert setup.server.predict("cost", {"inputs": ROWS}).status == 200
    done, drawn = run_on_a_terminal(
        [sys.executable, "-m", "gateway.cli", "report", "--model", "cost",
         "--audit", str(setup.root / "audit.jsonl"), "--out", str(setup.root / "tty")],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "STAGESERVE_NO_PROGRESS"},
        timeout_s=300,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.strip().endswith("report.md")
    # A bar that knows how many models there are (1 of 1), for the queries and the plots.
    assert "report: performance per model:" in drawn and "1/1" in drawn, drawn
    assert "report: plots:" in drawn
    assert "{" not in drawn, "no JSON log lines on a terminal"
