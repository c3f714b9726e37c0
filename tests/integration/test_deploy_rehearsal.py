"""A pod rehearsal: the prod overlay's rendered sidecar pod run as real local processes.

The init container's `sync --once` runs against a real git registry, then the sync sidecar and
the gateway share one folder (the emptyDir), each with its manifest's command line and env
(mount paths, 0.0.0.0 and ports mapped to a temp folder, 127.0.0.1 and free ports). The probes,
the metrics the alert rules read, and a swap by reassignment are checked on that pod.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.sync.snapshot import SNAPSHOT_FILE, read_snapshot
from tests.access_keys import write_keys
from tests.deploy_render import (
    Container,
    LocalPod,
    by_kind,
    dashboard_queries,
    pod_containers,
    promql_metric_names,
    render_all,
    rule_metric_names,
)
from tests.integration.server import ROOT, free_port, wait_until
from tests.models import example_rows, save_sklearn_package
from tests.postgres import Postgres, postgres  # noqa: F401 - the fixture
from tests.registry_packages import init_registry
from tests.signing_keys import SshKey, make_ssh_key, write_signers

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
POD_TARGET = "overlays/prod"
# The prod overlay turns auth on: the rehearsal's Secret holds this key's hash, with the
# overlay's roles for predicting on prod and scraping /metrics.
API_KEY = "rehearsal-key-5f0c2d7e9a1b4c3d8e6f"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return render_all()


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _stageserve(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *argv]


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Process:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _stageserve(argv),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Process(name, proc, log)


def _get(
    port: int, path: str, body: bytes | None = None, *, key: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"content-type": "application/json"} if body else {}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        conn.request("POST" if body else "GET", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _answers(port: int, path: str) -> bool:
    try:
        _get(port, path)
    except OSError:
        return False
    return True


@dataclass
class Pod:
    docs: list[dict[str, Any]]
    local: LocalPod
    containers: dict[str, Container]
    ports: dict[int, int]
    registry: GitRegistry
    init: subprocess.CompletedProcess[str]
    sync: Process
    gateway: Process
    releaser: SshKey
    database: str

    def port_of(self, container: str, name: str) -> int:
        return self.ports[self.containers[container].ports[name]]

    def predict(self) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"inputs": example_rows(1)}).encode()
        return _get(self.port_of("gateway", "http"), f"/predict/{MODEL}", body, key=API_KEY)


@pytest.fixture(scope="module")
def pod(
    rendered: dict[str, list[dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
    postgres: Postgres,  # noqa: F811
) -> Iterator[Pod]:
    base = tmp_path_factory.mktemp("pod")
    releaser = make_ssh_key(base / "keys", "release@example.com")
    registry = GitRegistry(init_registry(base / "registry"))
    for version, offset in (("v1.0.0", 0.0), ("v1.1.0", 100.0)):
        package = save_sklearn_package(base / f"pkg-{version}", offset=offset)
        writer.register(registry, MODEL, package, version=version)
    # prod is protected by the overlay's trust policy: its assignments are signed.
    writer.assign(registry, MODEL, "prod", "v1.0.0", sign=releaser.signing)
    writer.assign(registry, MODEL, "dev", "v1.1.0")  # not this overlay's stage

    docs = rendered[POD_TARGET]
    containers = {c.name: c for c in pod_containers(docs)}
    ports = {p: free_port() for c in containers.values() for p in c.ports.values()}
    local = LocalPod(docs, base / "pod", ports)
    # The Secrets the overlay mounts (created with kubectl in a cluster, see deploy/README.md).
    write_signers(local.volumes["trust"] / "allowed_signers", releaser)
    write_keys(
        local.volumes["access"] / "api-keys.yaml",
        {API_KEY: ("rehearsal", ["predict-prod", "monitoring"])},
    )
    # The sidecar's /metrics takes the same scrape token: its Secret holds the sha256 only.
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    (local.volumes["sync-metrics"] / "tokens").write_text(f"{digest}  -\n")
    # The overlay's url, pointed at the test's; the Secret stageserve-postgres's url, at the
    # test's PostgreSQL (secretKeyRef values are not in the rendered manifests).
    database = postgres.database()
    overrides = {"REGISTRY_URL": str(registry.path), "STAGESERVE_POSTGRES_URL": database}

    argv, env = local.command(containers["sync-once"], overrides)
    init = subprocess.run(
        _stageserve(argv),
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert init.returncode == 0, f"init container failed:\n{init.stdout}\n{init.stderr}"
    started: list[Process] = []
    try:
        for name in ("sync", "gateway"):
            argv, env = local.command(containers[name], overrides)
            if name == "gateway":
                # The manifest's 10 s drain is tested in test_gateway_shutdown; here it would
                # only slow the teardown down.
                env = {**env, "STAGESERVE_DRAIN_S": "0"}
            started.append(_start(name, argv, env, base))
        sync, gateway = started
        http_port = ports[containers["gateway"].ports["http"]]
        metrics_port = ports[containers["sync"].ports["sync-metrics"]]

        def up() -> bool:
            for p in started:
                p.check_running()
            return _answers(http_port, "/healthz") and _answers(metrics_port, "/metrics")

        wait_until(up, 60, "the gateway and the sync sidecar to answer")
        yield Pod(docs, local, containers, ports, registry, init, sync, gateway, releaser, database)
    finally:
        for p in reversed(started):
            p.stop()


def test_init_container_materializes_only_the_overlays_stage_before_the_gateway_starts(
    pod: Pod,
) -> None:
    assert f"{MODEL}#prod -> v1.0.0" in pod.init.stdout
    state = read_snapshot(pod.local.mounts["/var/cache/stageserve"] / SNAPSHOT_FILE)
    assert {(e.model, e.stage, e.version) for e in state.entries} == {(MODEL, "prod", "v1.0.0")}


def test_every_probe_path_answers_on_the_port_the_manifest_names(pod: Pod) -> None:
    gateway = pod.containers["gateway"].spec
    port = pod.port_of("gateway", "http")
    wait_until(lambda: _get(port, "/readyz")[0] == 200, 60, "readiness")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = gateway[probe]["httpGet"]
        assert pod.port_of("gateway", get["port"]) == port
        status, _, body = _get(port, get["path"])
        assert status == 200, f"{probe} {get['path']}: {status} {body!r}"
    # Probes are open; predictions and metrics need a credential in prod.
    body = json.dumps({"inputs": example_rows(1)}).encode()
    assert _get(port, f"/predict/{MODEL}", body)[0] == 401
    assert _get(port, "/metrics")[0] == 401


def test_the_sync_sidecars_probes_answer_on_the_port_the_manifest_names(pod: Pod) -> None:
    sync = pod.containers["sync"].spec
    for probe in ("startupProbe", "livenessProbe"):
        get = sync[probe]["httpGet"]
        status, _, body = _get(pod.port_of("sync", get["port"]), get["path"])
        assert status == 200, f"{probe} {get['path']}: {status} {body!r}"
        assert json.loads(body)["status"] == "ok"
        assert "secret" not in body.decode().lower()
    # Its /metrics needs the scrape token in prod, as the gateway's does.
    assert _get(pod.port_of("sync", "sync-metrics"), "/metrics")[0] == 401


def _exported(port: int) -> set[str]:
    status, _, body = _get(port, "/metrics", key=API_KEY)  # as the ServiceMonitor sends it
    assert status == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(body.decode()):
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def _alert_metrics(pod: Pod) -> tuple[dict[str, set[str]], set[str]]:
    (rule,) = by_kind(pod.docs, "PrometheusRule")
    wanted = rule_metric_names(rule["spec"]["groups"])
    # A pod that serves traffic: per-request series may only appear after a request.
    port = pod.port_of("gateway", "http")
    wait_until(lambda: _get(port, "/readyz")[0] == 200, 60, "readiness")
    assert pod.predict()[0] == 200
    exported = _exported(port)
    exported |= _exported(pod.port_of("sync", "sync-metrics"))
    return wanted, exported


def test_every_metric_the_alert_rules_read_is_exported_by_the_gateway_or_the_sync_sidecar(
    pod: Pod,
) -> None:
    wanted, exported = _alert_metrics(pod)
    missing = {alert: sorted(metrics - exported) for alert, metrics in wanted.items()}
    assert not any(missing.values()), {a: m for a, m in missing.items() if m}


def test_every_metric_the_grafana_dashboard_reads_is_exported_by_the_gateway_or_the_sync(
    pod: Pod,
) -> None:
    # The dashboard as the overlay ships it to Grafana (the ConfigMap), not the file.
    (dashboard_map,) = [
        m for m in by_kind(pod.docs, "ConfigMap") if "stageserve-dashboard.json" in m["data"]
    ]
    dashboard = json.loads(dashboard_map["data"]["stageserve-dashboard.json"])
    _, exported = _alert_metrics(pod)
    assert "stageserve_made_up_total" not in exported
    missing = {
        title: sorted(set().union(*map(promql_metric_names, exprs)) - exported)
        for title, exprs in dashboard_queries(dashboard).items()
    }
    assert not any(missing.values()), {t: m for t, m in missing.items() if m}


def test_the_gateway_draws_the_timeline_from_the_history_the_sidecar_wrote(pod: Pod) -> None:
    # The gateway holds no registry credentials here: its console's versions and assigned
    # bands come from <cache>/registry-history.json, written by the sync container.
    cache = pod.local.mounts["/var/cache/stageserve"]
    history = json.loads((cache / "registry-history.json").read_text())
    assert "http" not in json.dumps(history).replace(str(pod.registry.path), "")  # no URLs
    port = pod.port_of("gateway", "http")
    assert _get(port, f"/ui/models/{MODEL}")[0] == 401  # the console needs a credential too
    status, _, body = _get(port, f"/ui/models/{MODEL}", key=API_KEY)
    assert status == 200
    page = body.decode()
    for version in ("v1.0.0", "v1.1.0"):  # both registered versions, from the history
        assert f'data-version="{version}"' in page
    assert 'data-kind="assigned" data-version="v1.0.0"' in page
    assert 'data-stage="dev"' not in page  # the overlay follows prod only


def test_reassigning_the_stage_swaps_the_gateway_through_the_sidecar(pod: Pod) -> None:
    port = pod.port_of("gateway", "http")
    wait_until(lambda: _get(port, "/readyz")[0] == 200, 60, "readiness")
    status, headers, body = pod.predict()
    assert status == 200, body
    assert headers["x-model-version"] == "v1.0.0"
    before = json.loads(body)["predictions"][0]

    writer.assign(pod.registry, MODEL, "prod", "v1.1.0", sign=pod.releaser.signing)

    def swapped() -> bool:
        pod.sync.check_running()
        pod.gateway.check_running()
        return pod.predict()[1]["x-model-version"] == "v1.1.0"

    wait_until(swapped, 45, "the gateway to serve v1.1.0")
    status, headers, body = pod.predict()
    assert status == 200 and json.loads(body)["version"] == "v1.1.0"
    assert json.loads(body)["predictions"][0] == pytest.approx(before + 100.0, rel=1e-6)
    audit = pod.local.mounts["/var/log/stageserve"] / "audit.jsonl"
    wait_until(lambda: audit.is_file() and audit.stat().st_size > 0, 30, "audit records")


def test_the_prod_pod_ships_its_history_to_postgresql(pod: Pod, postgres: Postgres) -> None:  # noqa: F811
    """The overlay's spool folder and the Secret's URL: every answer is in the database, and
    an as-of request of the sidecar pod is answered through the sync."""
    port = pod.port_of("gateway", "http")
    wait_until(lambda: _get(port, "/readyz")[0] == 200, 60, "readiness")
    status, _, body = pod.predict()
    assert status == 200, body
    rid = json.loads(body)["request_id"]

    def recorded() -> bool:
        rows = postgres.query(
            pod.database, "SELECT version FROM stageserve_audit WHERE request_id = %s", rid
        )
        return bool(rows)

    wait_until(recorded, 30, "the record in PostgreSQL")
    spool = pod.local.mounts["/var/log/stageserve"] / "spool"
    # `workers: auto`: one spool per worker (spool/worker-<i>/audit; spool/audit with one).
    assert [p for p in spool.glob("**/audit") if p.is_dir()]
    events = postgres.query(pod.database, "SELECT model, stage, kind FROM stageserve_journal")
    assert (MODEL, "prod", "activated") in events
