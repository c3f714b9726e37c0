"""deploy/k8s: every kustomization renders and validates offline; pods are locked down.

Kubernetes objects are validated against the OpenAPI schemas of pinned Kubernetes versions
(kubernetes-validate, strict: unknown fields fail). The Prometheus Operator's CRDs are not in
those schemas, so their shape is checked here against what the operator reads.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy_render import (
    DEPLOY,
    KUBERNETES_VERSIONS,
    TARGETS,
    by_kind,
    pod_containers,
    render_all,
    rule_metric_names,
)

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRET_VOLUME = "registry-credentials"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return render_all()


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("target", TARGETS)
def test_every_variant_and_overlay_renders_and_validates_against_pinned_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    assert {"PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = doc["metadata"]["name"]
                pytest.fail(f"{target}: {doc['kind']} {name} invalid for {version}: {exc}")


def test_strict_validation_rejects_a_field_kubernetes_does_not_know(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (deployment,) = by_kind(rendered["variants/sidecar"], "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_servicemonitor_and_prometheusrule_have_the_shape_the_operator_reads(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["overlays/prod"]
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (rule,) = by_kind(docs, "PrometheusRule")
    (service,) = by_kind(docs, "Service")
    for doc in (monitor, rule):
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["metadata"]["namespace"] == "stageserve-prod"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    for r in (r for g in groups for r in g["rules"]):
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert re.fullmatch(r"Stageserve[A-Za-z0-9]+", r["alert"])
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        assert "for" not in r or re.fullmatch(r"\d+[smh]", r["for"])
        expr = r["expr"]
        # Every alert reads a stageserve metric, or Prometheus' own `up` for our job.
        assert re.search(r"\bstageserve_[a-z_]+|\bup\{job=\"stageserve\"\}", expr), r["alert"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
        assert re.search(r"[<>]=?\s*[\d.]+\s*$", expr.strip()), f"{r['alert']}: no threshold"


def test_every_alert_expression_is_valid_promql() -> None:
    promql_parser = pytest.importorskip(
        "promql_parser", reason="promql-parser (PyPI) is not installed: add it to the dev extras"
    )
    plain = yaml.safe_load((DEPLOY / "prometheus" / "stageserve-rules.yaml").read_text())
    for rule in (r for g in plain["groups"] for r in g["rules"]):
        try:
            promql_parser.parse(rule["expr"])
        except ValueError as exc:
            pytest.fail(f"{rule['alert']}: {exc}")


def test_the_alerts_cover_errors_latency_sync_loading_and_shadow(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (rule,) = by_kind(rendered["overlays/prod"], "PrometheusRule")
    metrics = rule_metric_names(rule["spec"]["groups"])
    needed = {
        "StageserveHighErrorRate": "stageserve_requests_total",
        "StageserveHighLatencyP99": "stageserve_request_duration_seconds_bucket",
        "StageserveSyncStale": "stageserve_sync_last_success_timestamp_seconds",
        "StageserveSyncFailing": "stageserve_sync_polls_total",
        "StageserveStageNotServing": "stageserve_requests_total",
        "StageserveShadowDivergence": "stageserve_shadow_abs_diff_bucket",
        "StageserveAuditFailing": "stageserve_audit_failing",
    }
    for alert, metric in needed.items():
        assert metric in metrics.get(alert, set()), alert


def test_plain_rule_file_holds_exactly_the_prometheusrule_groups(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (rule,) = by_kind(rendered["overlays/prod"], "PrometheusRule")
    plain = yaml.safe_load((DEPLOY / "prometheus" / "stageserve-rules.yaml").read_text())
    assert plain == {"groups": rule["spec"]["groups"]}


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_runs_locked_down_with_requests_and_limits(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    pod = _pod(rendered[target])
    assert pod["automountServiceAccountToken"] is False
    (account,) = by_kind(rendered[target], "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod_containers(rendered[target]):
        sc = c.spec["securityContext"]
        assert sc["runAsNonRoot"] is True, c.name
        assert sc["readOnlyRootFilesystem"] is True, c.name
        assert sc["allowPrivilegeEscalation"] is False, c.name
        assert sc["capabilities"] == {"drop": ["ALL"]}, c.name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c.spec["resources"][kind]), (c.name, kind)


@pytest.mark.parametrize("target", TARGETS)
def test_every_writable_mount_is_an_empty_dir_and_tmp_is_writable(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    pod = _pod(rendered[target])
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod_containers(rendered[target]):
        mounts = {m["mountPath"]: m for m in c.spec["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], c.name
        for m in mounts.values():
            if not m.get("readOnly"):
                assert "emptyDir" in volumes[m["name"]], (c.name, m["mountPath"])
                assert volumes[m["name"]]["emptyDir"]["sizeLimit"]


@pytest.mark.parametrize("target", TARGETS)
def test_probes_scrape_annotations_and_service_point_at_the_gateway_port(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    (deployment,) = by_kind(docs, "Deployment")
    (gateway,) = [c for c in pod_containers(docs) if c.name == "gateway"]
    spec = gateway.spec
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["startupProbe"]["httpGet"]["path"] == "/readyz"
    startup = spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "slow model loads"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert spec[probe]["httpGet"]["port"] in gateway.ports
    args = spec["args"]
    assert gateway.ports["http"] == int(args[args.index("--port") + 1])
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == gateway.ports["http"]
    (service,) = by_kind(docs, "Service")
    all_ports = {n for c in pod_containers(docs) for n in c.ports}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in all_ports
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    settings = yaml.safe_load((DEPLOY / "k8s" / "base" / "settings.yaml").read_text())
    assert grace > settings["drain_s"] + settings["shutdown_timeout_s"], "drain must fit"


@pytest.mark.parametrize("target", TARGETS)
def test_spread_disruption_budget_and_autoscaler_select_the_gateway_pods(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    (deployment,) = by_kind(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert "kubernetes.io/hostname" in {s["topologyKey"] for s in spread}
    for s in spread:
        assert s["labelSelector"]["matchLabels"].items() <= labels.items()
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= (1 if target == "overlays/dev" else 2)


def _uses_credentials(container: dict[str, Any]) -> bool:
    mounts = {m["name"] for m in container.get("volumeMounts", [])}
    names = {e["name"] for e in container.get("env", [])}
    return SECRET_VOLUME in mounts or "REGISTRY_URL" in names or "GIT_CONFIG_COUNT" in names


@pytest.mark.parametrize("target", ["variants/sidecar", "overlays/dev", "overlays/prod"])
def test_in_the_sidecar_pod_only_the_sync_containers_get_the_registry_and_its_credentials(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    containers = {c.name: c for c in pod_containers(rendered[target])}
    assert set(containers) == {"sync-once", "sync", "gateway"}
    assert containers["sync-once"].init and "--once" in containers["sync-once"].spec["args"]
    assert _uses_credentials(containers["sync"].spec)
    assert _uses_credentials(containers["sync-once"].spec)
    gateway = containers["gateway"].spec
    assert not _uses_credentials(gateway)
    # No registry secret reaches the gateway (prod gives it the history database's URL only).
    secrets = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in gateway.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets <= {"stageserve-postgres"}
    assert "--registry" not in gateway["args"]
    cache = {m["mountPath"]: m for m in gateway["volumeMounts"]}["/var/cache/stageserve"]
    assert cache["readOnly"] is True, "the gateway only reads what the sidecar writes"
    secret = {v["name"]: v for v in _pod(rendered[target])["volumes"]}[SECRET_VOLUME]
    assert secret["secret"]["secretName"] == "stageserve-registry-credentials"


def test_the_embedded_pod_is_one_container_that_syncs_and_serves(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (gateway,) = pod_containers(rendered["variants/embedded"])
    assert gateway.name == "gateway" and not gateway.init
    assert "--registry" in gateway.spec["args"] and _uses_credentials(gateway.spec)


@pytest.mark.parametrize(
    ("target", "namespace", "stage"),
    [("overlays/dev", "stageserve-dev", "dev"), ("overlays/prod", "stageserve-prod", "prod")],
)
def test_each_overlay_serves_its_stage_in_its_own_namespace(
    rendered: dict[str, list[dict[str, Any]]], target: str, namespace: str, stage: str
) -> None:
    docs = rendered[target]
    (ns,) = by_kind(docs, "Namespace")
    assert ns["metadata"]["name"] == namespace
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(d["metadata"].get("namespace") == namespace for d in docs if d is not ns)
    maps = {m["metadata"]["name"].rsplit("-", 1)[0]: m["data"] for m in by_kind(docs, "ConfigMap")}
    settings = yaml.safe_load(maps["stageserve-settings"]["settings.yaml"])
    assert settings["default_stage"] == stage
    served = maps["stageserve-registry"]["stages"].split(",")
    assert served[0] == stage
    # Every stage a shadow reads from is materialized too.
    for stages in settings.get("shadow", {}).values():
        assert set(stages) | set(stages.values()) <= set(served)


def test_prod_turns_on_access_control_and_signed_promotion_with_keys_from_secrets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["overlays/prod"]
    maps = {m["metadata"]["name"].rsplit("-", 1)[0]: m["data"] for m in by_kind(docs, "ConfigMap")}
    settings = yaml.safe_load(maps["stageserve-settings"]["settings.yaml"])
    assert settings["auth"] is True and settings["metrics_auth"] is True
    assert settings["api_keys_file"].startswith("/etc/stageserve-access/")
    (rule,) = settings["trust_policy"]
    assert rule["stages"] == ["prod"] and rule["allowed_signers"].startswith(
        "/etc/stageserve-trust/"
    )
    volumes = {v["name"]: v for v in _pod(docs)["volumes"]}
    assert volumes["access"]["secret"]["secretName"] == "stageserve-access"
    assert volumes["trust"]["secret"]["secretName"] == "stageserve-trust"
    for c in pod_containers(docs):
        mounts = {m["name"]: m for m in c.spec["volumeMounts"]}
        wants = {"access"} if c.name == "gateway" else {"trust", "settings"}
        assert wants <= set(mounts), c.name
        assert all(mounts[name].get("readOnly") for name in wants), c.name
        if c.name != "gateway":  # the sync reads trust_policy from the pod's settings file
            assert "access" not in mounts
            assert {e["name"]: e.get("value") for e in c.spec["env"]}["STAGESERVE_CONFIG"]
        else:
            assert "trust" not in mounts
    (monitor,) = by_kind(docs, "ServiceMonitor")
    for endpoint in monitor["spec"]["endpoints"]:  # the gateway's and the sync sidecar's
        assert endpoint["authorization"] == {
            "type": "Bearer",
            "credentials": {"name": "stageserve-metrics-token", "key": "token"},
        }, endpoint["port"]
    # The sidecar's /metrics checks the scrape token against the hashes in its own Secret.
    assert settings["sync_metrics_tokens_file"].startswith("/etc/stageserve-sync-metrics/")
    assert volumes["sync-metrics"]["secret"]["secretName"] == "stageserve-sync-metrics"
    sync = next(c for c in pod_containers(docs) if c.name == "sync")
    assert "sync-metrics" in {m["name"] for m in sync.spec["volumeMounts"]}
    # dev keeps auth and signing off, like `make demo`.
    dev = {
        m["metadata"]["name"].rsplit("-", 1)[0]: m["data"]
        for m in by_kind(rendered["overlays/dev"], "ConfigMap")
    }
    dev_settings = yaml.safe_load(dev["stageserve-settings"]["settings.yaml"])
    assert not dev_settings.get("auth") and not dev_settings.get("trust_policy")


def test_the_dev_overlay_shadows_dev_traffic_with_the_staging_candidate(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # (test_deploy_cli loads every settings file with the real loader, shadow keys included.)
    maps = {
        m["metadata"]["name"].rsplit("-", 1)[0]: m["data"]
        for m in by_kind(rendered["overlays/dev"], "ConfigMap")
    }
    settings_file = yaml.safe_load(maps["stageserve-settings"]["settings.yaml"])
    assert settings_file["shadow"] == {"cost_predictor": {"dev": "staging"}}
    assert "shadow" not in yaml.safe_load(
        {
            m["metadata"]["name"].rsplit("-", 1)[0]: m["data"]
            for m in by_kind(rendered["overlays/prod"], "ConfigMap")
        }["stageserve-settings"]["settings.yaml"]
    )


def test_every_kustomization_file_is_rendered_by_some_target() -> None:
    """No orphan manifests: each kustomization folder is a target or used by one."""
    k8s = DEPLOY / "k8s"
    folders = {str(p.parent.relative_to(k8s)) for p in k8s.rglob("kustomization.yaml")}
    used = set(TARGETS) | {"base", "components/servicemonitor"}
    assert folders == used
    for folder in folders:
        listed = yaml.safe_load((k8s / folder / "kustomization.yaml").read_text())
        files = [*listed.get("resources", []), *(p["path"] for p in listed.get("patches", [])
                                                 if "path" in p)]  # fmt: skip
        for gen in listed.get("configMapGenerator", []):
            files += gen.get("files", [])
        on_disk = {p.name for p in (k8s / folder).glob("*.yaml")} - {"kustomization.yaml"}
        assert on_disk <= {Path(f).name for f in files}, folder


@pytest.mark.parametrize("target", TARGETS)
def test_network_policy_admits_only_clients_and_monitoring_and_lets_out_only_dns_and_registry(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    (policy,) = by_kind(docs, "NetworkPolicy")
    (deployment,) = by_kind(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"], "default deny both ways"
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    ingress = {tuple(p["port"] for p in rule["ports"]): rule["from"] for rule in spec["ingress"]}
    assert ingress == {
        ("http",): [{"podSelector": {}}, monitoring],  # this namespace's pods, and Prometheus
        ("sync-metrics",): [monitoring],
    }
    container_ports = {n for c in pod_containers(docs) for n in c.ports}
    assert "http" in container_ports
    assert ("sync-metrics" in container_ports) == (target != "variants/embedded")
    egress = spec["egress"]
    assert len(egress) == 2
    dns, registry = egress
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {p["port"] for p in registry["ports"]} == {443, 22}
    (block,) = registry["to"]
    assert block["ipBlock"]["cidr"] != "0.0.0.0/0" and "except" not in block["ipBlock"]


@pytest.mark.parametrize("target", ["variants/sidecar", "overlays/dev", "overlays/prod"])
def test_the_sync_sidecar_has_liveness_and_startup_probes_but_no_readiness(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    (sync,) = [c for c in pod_containers(rendered[target]) if c.name == "sync"]
    for probe in ("startupProbe", "livenessProbe"):
        get = sync.spec[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] in sync.ports, probe
    # A registry outage must not make the pod unready (what serves keeps serving).
    assert "readinessProbe" not in sync.spec
    args = sync.spec["args"]
    assert int(args[args.index("--metrics-port") + 1]) == sync.ports["sync-metrics"]


def test_monitoring_component_grants_kube_prometheus_discovery_in_the_app_namespace(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["overlays/prod"]
    (role,) = by_kind(docs, "Role")
    (binding,) = by_kind(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "stageserve-prod"
    granted = {
        (g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert {("", "services"), ("", "endpoints"), ("", "pods")} <= granted
    assert ("discovery.k8s.io", "endpointslices") in granted
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in role["rules"])
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}
    ]
    for kind in ("ServiceMonitor", "PrometheusRule"):
        (doc,) = by_kind(docs, kind)
        assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind


def test_the_prod_overlay_runs_images_pinned_by_digest(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for c in pod_containers(rendered["overlays/prod"]):
        assert re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", c.spec["image"]), c.name


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_keeps_the_journal_and_a_drain_that_fits_the_grace_period(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    maps = {m["metadata"]["name"].rsplit("-", 1)[0]: m["data"] for m in by_kind(docs, "ConfigMap")}
    settings = yaml.safe_load(maps["stageserve-settings"]["settings.yaml"])
    assert settings["journal_path"].startswith("/var/log/stageserve/")
    if target == "overlays/prod":
        assert settings["drain_s"] == 10  # what deploy/README.md promises
    (deployment,) = by_kind(docs, "Deployment")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings["drain_s"] + settings["shutdown_timeout_s"]


@pytest.mark.parametrize(
    "target", ["variants/sidecar", "variants/embedded", "overlays/dev", "overlays/prod"]
)
def test_the_registry_mirror_has_its_own_volume_that_the_gateway_never_shares(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    volumes = {v["name"]: v for v in _pod(rendered[target])["volumes"]}
    for c in pod_containers(rendered[target]):
        env = {e["name"]: e.get("value") for e in c.spec.get("env", [])}
        mounts = {m["mountPath"]: m["name"] for m in c.spec.get("volumeMounts", [])}
        if "--registry" not in c.spec["args"]:  # a gateway that only reads the cache
            assert "STAGESERVE_MIRROR_DIR" not in env and "registry-mirror" not in mounts.values()
            continue
        mirror = env["STAGESERVE_MIRROR_DIR"]
        assert mounts[mirror] == "registry-mirror", c.name
        assert not mirror.startswith("/var/cache/stageserve"), c.name
        assert "emptyDir" in volumes["registry-mirror"], c.name


@pytest.mark.parametrize("target", ["variants/sidecar", "overlays/dev", "overlays/prod"])
def test_gateway_and_sync_share_a_writable_folder_for_as_of_requests(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    """In the sidecar pod the gateway (no registry access) asks the sync for past versions
    through one folder both may write; both read its path from the same variable."""
    containers = {c.name: c.spec for c in pod_containers(rendered[target])}
    for name in ("sync", "gateway"):
        env = {e["name"]: e.get("value") for e in containers[name].get("env", [])}
        folder = env["STAGESERVE_HISTORY_REQUESTS_DIR"]
        mount = {m["mountPath"]: m for m in containers[name]["volumeMounts"]}[folder]
        assert mount["name"] == "history-requests" and not mount.get("readOnly"), name


@pytest.mark.parametrize("target", TARGETS)
def test_the_gateway_runs_a_worker_per_cpu_of_its_limit_and_requests_them_all(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    """`workers: auto` counts the CPU limit; a request below it would leave workers waiting
    for CPU the node gave others, and the HPA would scale on a share they cannot all use."""
    docs = rendered[target]
    maps = {m["metadata"]["name"].rsplit("-", 1)[0]: m["data"] for m in by_kind(docs, "ConfigMap")}
    assert yaml.safe_load(maps["stageserve-settings"]["settings.yaml"])["workers"] == "auto"
    (gateway,) = [c for c in pod_containers(docs) if c.name == "gateway"]
    resources = gateway.spec["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    assert float(resources["limits"]["cpu"]) >= 2  # whole cores: one worker each
