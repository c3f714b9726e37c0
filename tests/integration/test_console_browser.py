"""The console at /ui in a real browser: Debian's chromium driven by Playwright (never a
browser download), against a real `stageserve serve` that follows a real git registry.

The gateway swaps versions and fails to load one while the test runs; the pages must show
what happened: the models page (search, health), the model page (versions, the stage
timeline checked band by band against the activation journal, a click on it answering "what
served then"), the live page (traffic per version, the shadow pair), and performance over
time on both once outcomes are fed back (the numbers GET /models/{m}/performance gives, per
version; the empty state before). One screenshot per page is kept under
.artifacts/screenshots/ (gitignored; docs/screenshots/ holds committed copies).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.telemetry.journal import parse_time, read_journal, served_at
from registry_sync.history.records import iso_of
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ROOT, ServerProcess, wait_until
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import init_registry, write_package

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (containers, root), no GPU, and nothing that reaches the network by itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
MODEL = "cost_predictor"
SECRET_INPUT = 123.456789  # a value sent to predict: it must appear on no page


@dataclass
class Console:
    server: ServerProcess
    registry: GitRegistry
    journal: Path
    # prod's assignment tags in order: (version, tag time)
    assignments: list[tuple[str, str]]
    # Every prod answer: (version, request id, predictions)
    answers: list[tuple[str, str, list[float]]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def serving(self, stage: str) -> str | None:
        body = self.server.get(f"/models/{MODEL}").body
        return body.get("stages", {}).get(stage, {}).get("version")  # 404 before the first sync

    def traffic(self, n: int, stage: str = "prod") -> None:
        rows = example_rows(2)
        rows[0]["hp"] = SECRET_INPUT
        for _ in range(n):
            answer = self.server.predict(MODEL, {"inputs": rows}, stage=stage)
            assert answer.status == 200
            body = answer.body
            self.answers.append((body["version"], body["request_id"], body["predictions"]))


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium missing: `make browser` (or .ci/run) installs it")
    base = tmp_path_factory.mktemp("console")
    registry = GitRegistry(init_registry(base / "registry"))
    for version, offset in (("v1.0.0", 0.0), ("v1.1.0", 10.0), ("v1.2.0", 20.0)):
        writer.register(registry, MODEL, save_sklearn_package(base / version, offset=offset),
                        version=version)  # fmt: skip
    # Valid for the registry (digests match) but no model: it fails to load in the gateway.
    writer.register(registry, MODEL, write_package(base / "broken", MODEL, inputs=("hp",)),
                    version="v1.3.0")  # fmt: skip
    assignments = [("v1.0.0", writer.assign(registry, MODEL, "prod", "v1.0.0").time)]
    writer.assign(registry, MODEL, "dev", "v1.2.0")
    journal = base / "journal.jsonl"
    cache = base / "cache"
    cache.mkdir()
    server = ServerProcess(
        cache,
        env={
            "STAGESERVE_SHADOW": json.dumps({MODEL: {"prod": "dev"}}),
            # An audit trail (no inputs kept): outcomes join it for performance over time.
            "STAGESERVE_AUDIT_PATH": str(base / "audit.jsonl"),
        },
        args=["--registry", str(registry.path), "--journal-path", str(journal)],
    )
    with server:
        c = Console(server, registry, journal, assignments)
        wait_until(lambda: c.serving("prod") == "v1.0.0", 60, "prod to serve v1.0.0")
        c.traffic(5)
        assignments.append(("v1.1.0", writer.assign(registry, MODEL, "prod", "v1.1.0").time))
        wait_until(lambda: c.serving("prod") == "v1.1.0", 60, "prod to serve v1.1.0")
        c.traffic(5)
        broken = writer.assign(registry, MODEL, "prod", "v1.3.0", force=True)
        assignments.append(("v1.3.0", broken.time))

        def failed() -> bool:
            return (
                any(e.kind == "failed" for e in read_journal(journal))
                if journal.exists()
                else False
            )

        wait_until(failed, 60, "the broken version's failed load in the journal")
        c.traffic(5)
        # The sync rewrites the history file after a poll: wait until it has the last tag.
        history = cache / "registry-history.json"

        def written() -> bool:
            return history.exists() and "v1.3.0" in history.read_text()

        wait_until(written, 30, "the registry history to include v1.3.0")
        yield c


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert errors == [], f"the page logged errors (CSP, script): {errors}"


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _no_inputs(page: Any) -> None:
    assert str(SECRET_INPUT) not in page.content()


def test_models_page_lists_stages_health_and_traffic_and_search_filters_it(
    console: Console, page: Any
) -> None:
    page.goto(console.base + "/ui")
    row = page.locator(f"tr.model[data-model='{MODEL}']")
    assert row.is_visible()
    prod = row.locator(".stage[data-stage='prod'] .version")
    assert prod.get_attribute("data-serving") == "v1.1.0"  # v1.3.0 is assigned but failed
    assert "assigned v1.3.0" in row.locator(".stage[data-stage='prod']").inner_text()
    assert row.locator(".health[data-stage='prod']").inner_text().startswith("behind")
    assert row.locator(".health[data-stage='dev']").inner_text() == "ok"
    assert "/s" in row.locator("td.num, td div.num").first.inner_text()
    # Labels and description: the registry's artifacts.yaml (written from the latest version).
    assert "regression" in row.locator(".label").all_inner_texts()
    _no_inputs(page)
    _shot(page, "models")
    # Search as you type: by label, by description word, and no match.
    search = page.locator("#search")
    search.fill("regression horsepower")
    assert row.is_visible()
    search.fill("no-such-model")
    assert not row.is_visible()
    assert page.locator("#shown").inner_text() == "0 of 1 models"
    # The same search without JavaScript: ?q= on the server.
    page.goto(console.base + "/ui?q=no-such-model")
    assert page.locator("tr.model").count() == 0
    assert "No model matches" in page.content()
    page.goto(console.base + "/ui?q=Horsepower")
    page.locator("a.model-link", has_text=MODEL).click()
    page.wait_for_url(f"**/ui/models/{MODEL}")


def _bands(page: Any, stage: str, kind: str) -> list[tuple[str, str, str]]:
    found = page.locator(f".tl-stage[data-stage='{stage}'] .band[data-kind='{kind}']")
    return [
        (
            b.get_attribute("data-version"),
            b.get_attribute("data-start"),
            b.get_attribute("data-end"),
        )
        for b in found.all()
    ]


def _journal_bands(journal: Path, stage: str) -> list[tuple[str, datetime, datetime | None]]:
    """What served `stage`, from the journal file itself (independently of the console)."""
    out: list[tuple[str, datetime, datetime | None]] = []
    for e in read_journal(journal):
        if e.model != MODEL or e.stage != stage or e.kind == "failed":
            continue
        at = parse_time(e.at)
        if e.kind == "activated":
            if out and out[-1][2] is None:
                out[-1] = (out[-1][0], out[-1][1], at)
            out.append((e.version, at, None))
        elif out and out[-1][0] == e.version and out[-1][2] is None:
            out[-1] = (out[-1][0], out[-1][1], at)
    return out


def test_model_page_timeline_matches_the_journal_and_a_click_answers_what_served(
    console: Console, page: Any
) -> None:
    page.goto(f"{console.base}/ui/models/{MODEL}")
    _no_inputs(page)
    # Versions from the registry history the sync wrote: who, when, format, card, signature.
    versions = page.locator("#versions tr[data-version]")
    assert sorted(versions.evaluate_all("rows => rows.map(r => r.dataset.version)")) == [
        "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0",
    ]  # fmt: skip
    v1 = page.locator("#versions tr[data-version='v1.0.0']")
    assert "sklearn" in v1.inner_text() and "r2" in v1.inner_text()
    page.locator("details summary").first.click()
    assert "input" in page.locator("table.signature").first.inner_text()

    # Served bands: exactly the journal's, to the millisecond the journal wrote.
    served = _bands(page, "prod", "served")
    expected = _journal_bands(console.journal, "prod")
    assert [(v, parse_time(s), parse_time(e) if e else None) for v, s, e in served] == expected
    assert [v for v, _, _ in served] == ["v1.0.0", "v1.1.0"]
    assert served[-1][2] == ""  # still serving
    # Assigned bands: the registry's tags, ending in the version that never loaded.
    assigned = _bands(page, "prod", "assigned")
    assert [(v, parse_time(s)) for v, s, _ in assigned] == [
        (v, parse_time(t)) for v, t in console.assignments
    ]
    assert [parse_time(e) for _, _, e in assigned[:-1]] == [
        parse_time(t) for _, t in console.assignments[1:]
    ]
    marker = page.locator(".tl-stage[data-stage='prod'] .marker.failed")
    assert marker.count() >= 1 and marker.first.get_attribute("data-version") == "v1.3.0"
    _shot(page, "model")

    # Click in the middle of the first served band: the page answers for that time.
    first = page.locator(".tl-stage[data-stage='prod'] .band[data-kind='served']").first
    box = first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url("**at=*")
    from urllib.parse import parse_qs, urlparse

    at = parse_time(parse_qs(urlparse(page.url).query)["at"][0])
    first_start, first_end = parse_time(served[0][1]), parse_time(served[0][2])
    assert first_start <= at < first_end
    answer = page.locator("#answers tr[data-stage='prod']")
    truth = served_at(read_journal(console.journal), MODEL, "prod", at)
    assert answer.locator("td[data-served]").get_attribute("data-served") == truth.version
    assert truth.version == "v1.0.0"
    (registry_truth,) = [
        v for v, s, e in assigned if parse_time(s) <= at and (not e or at < parse_time(e))
    ]
    assert answer.locator("td[data-assigned]").get_attribute("data-assigned") == registry_truth
    _shot(page, "model-at")


def test_live_page_shows_traffic_per_version_and_the_shadow_pair(
    console: Console, page: Any
) -> None:
    page.goto(console.base + "/ui")
    page.locator("#nav-live").click()
    page.wait_for_url("**/ui/live")
    rows = page.locator("#traffic tr[data-version]")
    seen = rows.evaluate_all("rs => rs.map(r => [r.dataset.stage, r.dataset.version])")
    assert ["prod", "v1.1.0"] in seen and ["prod", "v1.0.0"] in seen
    prod = page.locator("#traffic tr[data-stage='prod'][data-version='v1.1.0']")
    assert float(prod.locator("td[data-rate]").get_attribute("data-rate")) > 0
    assert "ms" in prod.inner_text()  # latency percentiles from the gateway's histogram
    pair = page.locator("table.shadow tr[data-pair]").first
    assert "prod v1.1.0 vs dev v1.2.0" in pair.inner_text() or "vs dev v1.2.0" in pair.inner_text()
    _no_inputs(page)
    # It refreshes itself from the gateway's counters (the fragment route).
    console.traffic(3)
    page.wait_for_timeout(3500)
    assert page.locator("#traffic tr[data-version]").count() >= 2


# The page's numbers and the API's come from the same query over the same records: only
# their text form differs (repr of a float round-trips), so 1e-12 relative is ample. Against
# the errors this test computes itself (other code, other order of additions): 1e-9.
SAME = 1e-12
OWN = 1e-9


def _api(console: Console, section: Any) -> dict[str, Any]:
    """GET /models/{m}/performance for exactly the window and bucket the page shows."""
    query = urlencode(
        {
            "from": section.get_attribute("data-from"),
            "to": section.get_attribute("data-to"),
            "bucket": f"{float(section.get_attribute('data-bucket')):g}s",
        }
    )
    answer = console.server.get(f"/models/{MODEL}/performance?{query}")
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.body
    return body


def _number(text: str | None) -> float | None:
    return float(text) if text else None


def _check_against_api(console: Console, section: Any) -> dict[str, Any]:
    """Every version row and every shadow pair of one model's panel, against the API."""
    api = _api(console, section)
    rows = section.locator("table.perf-versions tr[data-version]")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.version)") == [
        v["version"] for v in api["versions"]
    ]
    for v in api["versions"]:
        row = section.locator(f"table.perf-versions tr[data-version='{v['version']}']")
        assert int(row.locator("[data-requests]").get_attribute("data-requests")) == v["requests"]
        assert int(row.locator("[data-outcomes]").get_attribute("data-outcomes")) == v["outcomes"]
        for key in ("coverage", "mae", "rmse", "accuracy"):
            shown = _number(row.locator(f"[data-{key}]").get_attribute(f"data-{key}"))
            assert (shown is None) == (v[key] is None), (v["version"], key)
            if shown is not None:
                assert shown == pytest.approx(v[key], rel=SAME), (v["version"], key)
    pairs = section.locator("table.perf-shadow tr[data-pair]")
    assert pairs.count() == len(api["shadow"])
    for pair in api["shadow"]:
        key = (
            f"{pair['stage']}:{pair['primary_version']}-"
            f"{pair['shadow_stage']}:{pair['shadow_version']}"
        )
        row = section.locator(f"table.perf-shadow tr[data-pair='{key}']")
        assert int(row.get_attribute("data-shadow-closer")) == pair["shadow_closer"]
        assert int(row.get_attribute("data-primary-closer")) == pair["primary_closer"]
        assert int(row.get_attribute("data-ties")) == pair["ties"]
    # One dot per bucket with outcomes, carrying the bucket's MAE.
    dots = section.locator("path.perf-dot")
    points = [p for p in api["series"] if p["mae"] is not None]
    assert dots.count() == len(points)
    for p in points:
        dot = section.locator(
            f"path.perf-dot[data-version='{p['version']}'][data-start='{p['start']}']"
        )
        assert float(dot.get_attribute("data-value")) == pytest.approx(p["mae"], rel=SAME)
    return api


def test_performance_over_time_shows_what_the_api_reports_per_version_once_outcomes_arrive(
    console: Console, page: Any
) -> None:
    # Before any outcome: the live page says so, in words.
    page.goto(console.base + "/ui/live")
    assert "No outcomes recorded" in page.locator("#no-outcomes").inner_text()
    assert page.locator("section.perf").count() == 0

    # Outcomes for some of the answers of each version prod served: the truth is the
    # prediction plus a known error per version, so MAE is known here independently.
    errors = {"v1.0.0": 2.0, "v1.1.0": 0.5}
    sent: dict[str, list[float]] = {"v1.0.0": [], "v1.1.0": []}
    for version, request_id, predictions in console.answers:
        if len(sent[version]) >= 3 * len(predictions):
            continue
        truth = [p + errors[version] * (1 if i % 2 else -1) for i, p in enumerate(predictions)]
        answer = console.server.request(
            "POST",
            f"/feedback/{MODEL}",
            json.dumps({"request_id": request_id, "outcome": truth}).encode(),
            {"content-type": "application/json"},
        )
        assert answer.status == 200 and answer.body["status"] == "recorded", answer.body
        sent[version] += [abs(t - p) for t, p in zip(truth, predictions, strict=True)]
    assert all(len(v) == 6 for v in sent.values())
    answered = {v: sum(1 for a in console.answers if a[0] == v) for v in errors}

    # The live page over a window of whole seconds around the traffic, per minute.
    since = int(parse_time(console.assignments[0][1]).timestamp()) - 60
    until = int(time.time()) + 60
    window = urlencode({"from": iso_of(since), "to": iso_of(until), "bucket": "1m"})
    page.goto(f"{console.base}/ui/live?{window}")
    assert page.locator("#no-outcomes").count() == 0
    section = page.locator(f"section.perf[data-model='{MODEL}']")
    api = _check_against_api(console, section)
    by_version = {v["version"]: v for v in api["versions"]}
    for version, own in sent.items():
        v = by_version[version]
        assert v["outcomes"] == 3 and v["requests"] == answered[version]
        assert v["coverage"] == pytest.approx(3 / answered[version], rel=OWN)
        assert v["mae"] == pytest.approx(sum(own) / len(own), rel=OWN)
        assert v["mae"] == pytest.approx(errors[version], rel=OWN)
    # The shadow pair (prod v1.1.0 mirrored to dev v1.2.0) judged on the same outcomes.
    assert any(p["shadow_version"] == "v1.2.0" for p in api["shadow"])
    verdict = section.locator("table.perf-shadow td.verdict").first.inner_text()
    assert "closer" in verdict or verdict == "even"
    _no_inputs(page)
    _shot(page, "live")

    # The model page: the same numbers, on the stage timeline's axis.
    page.goto(f"{console.base}/ui/models/{MODEL}")
    section = page.locator(f"section.perf[data-model='{MODEL}']")
    api = _check_against_api(console, section)
    assert {v["version"] for v in api["versions"] if v["outcomes"]} == set(errors)
    timeline = page.locator("#timeline")
    assert parse_time(section.get_attribute("data-from")) <= parse_time(
        timeline.get_attribute("data-start")
    )
    _no_inputs(page)
    _shot(page, "model-performance")


def test_console_pages_are_locked_down_and_bad_input_gets_a_clear_4xx(console: Console) -> None:
    answer = console.server.get("/ui")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["content-type"].startswith("text/html")
    assert console.server.get("/ui/models/nope").status == 404
    bad = console.server.get(f"/ui/models/{MODEL}?at=yesterday")
    assert bad.status == 400 and "ISO 8601" in bad.body["error"]["message"]
    assert console.server.get("/ui/static/../app.py").status == 404
    assert console.server.get("/ui/static/console.js").status == 200


def test_with_access_control_the_console_shows_only_what_the_caller_may_read(
    tmp_path: Path, browser: Any
) -> None:
    import yaml

    from tests.access_keys import write_keys
    from tests.integration.server import entry, write_state

    cache = tmp_path / "cache"
    cache.mkdir()
    cost = save_sklearn_package(tmp_path / "cost", name=MODEL)
    churn = save_sklearn_package(tmp_path / "churn", name="churn_model")
    write_state(
        cache,
        [
            entry(MODEL, "prod", "v1.0.0", cost),
            entry(MODEL, "dev", "v1.0.0", cost),
            entry("churn_model", "prod", "v3.0.0", churn),
        ],
    )
    keys = write_keys(
        tmp_path / "keys.yaml",
        {
            "pricing-key": ("pricing-svc", ["pricing"]),
            "prom-key": ("prometheus", ["monitoring"]),
            "ops-key": ("ops-svc", ["ops"]),
        },
    )
    config = tmp_path / "stageserve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "auth": True,
                "metrics_auth": True,
                "api_keys_file": str(keys),
                "access_policy": {
                    "pricing": [{"actions": ["read"], "models": ["cost_*"], "stages": ["prod"]}],
                    "monitoring": [{"actions": ["metrics"]}],
                    "ops": [{"actions": ["predict", "feedback"]}],
                },
                "audit_path": str(tmp_path / "audit.jsonl"),
            }
        )
    )
    with ServerProcess(cache, args=["--config", str(config)]) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        # One check gates every console route: no credential, no page (nor its script).
        for path in ("/ui", f"/ui/models/{MODEL}", "/ui/live", "/ui/static/console.js"):
            assert server.get(path).status == 401, path
        # /metrics, served by prometheus-client's exposition, keeps its own check.
        assert server.get("/metrics").status == 401
        scrape = server.request("GET", "/metrics", headers={"x-api-key": "prom-key"})
        assert scrape.status == 200 and "stageserve_stage_loaded" in scrape.body
        assert server.request("GET", "/metrics", headers={"x-api-key": "pricing-key"}).status == 403

        # A browser behind a proxy that adds the caller's credential.
        context = browser.new_context(extra_http_headers={"x-api-key": "pricing-key"})
        page = context.new_page()
        try:
            page.goto(f"http://127.0.0.1:{server.port}/ui")
            assert page.locator("tr.model").evaluate_all("rs => rs.map(r => r.dataset.model)") == [
                MODEL
            ]
            stages = page.locator(f"tr.model[data-model='{MODEL}'] .stage")
            assert stages.evaluate_all("s => s.map(x => x.dataset.stage)") == ["prod"]
            page.goto(f"http://127.0.0.1:{server.port}/ui/models/{MODEL}")
            assert page.locator("#stages tr[data-stage]").count() == 1
            assert page.locator(".tl-stage[data-stage='dev']").count() == 0
            response = page.goto(f"http://127.0.0.1:{server.port}/ui/models/churn_model")
            assert response is not None and response.status == 404  # not even its name

            # Performance over time: only what the caller may read (cost_* on prod).
            ops = {"x-api-key": "ops-key"}
            for model, stage in ((MODEL, "prod"), (MODEL, "dev"), ("churn_model", "prod")):
                answer = server.predict(model, {"inputs": example_rows(1)}, stage=stage, **ops)
                assert answer.status == 200, answer.body
                truth = [p + 1.0 for p in answer.body["predictions"]]
                sent = server.request(
                    "POST",
                    f"/feedback/{model}",
                    json.dumps(
                        {"request_id": answer.body["request_id"], "outcome": truth}
                    ).encode(),
                    {"content-type": "application/json", **ops},
                )
                assert sent.status == 200 and sent.body["status"] == "recorded", sent.body
            page.goto(f"http://127.0.0.1:{server.port}/ui/live")
            panels = page.locator("section.perf")
            assert panels.evaluate_all("ps => ps.map(p => p.dataset.model)") == [MODEL]
            row = page.locator("table.perf-versions tr[data-version='v1.0.0']")
            assert row.locator("td").nth(1).inner_text() == "prod"  # not dev, which it may not read
            # The API answers for the model (read on some stage), with both stages.
            api = server.request(
                "GET",
                f"/models/{MODEL}/performance?window=1h",
                headers={"x-api-key": "pricing-key"},
            )
            assert api.status == 200 and api.body["versions"][0]["stages"] == ["dev", "prod"]
        finally:
            context.close()
