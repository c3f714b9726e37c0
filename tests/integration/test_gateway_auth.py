"""Who may call which model, through a real gateway process: API keys and JWTs, the policy,
401/403/404, open probes, a protected /metrics, principals in the audit, key rotation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.access_keys import SigningKey, write_jwks, write_keys
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_sklearn_package

pytestmark = pytest.mark.slow

ROWS = {"inputs": example_rows(1)}
JSON = {"content-type": "application/json"}


def _settings(tmp_path: Path, keys: Path, jwks: Path) -> Path:
    settings = {
        "auth": True,
        "metrics_auth": True,
        "api_keys_file": str(keys),
        "jwks": str(jwks),
        "jwt_issuer": "https://idp.test",
        "jwt_audience": "stageserve",
        "auth_reload_s": 0.2,
        "audit_path": str(tmp_path / "audit.jsonl"),
        "access_policy": {
            "pricing": [{"actions": ["predict", "read"], "models": ["cost_*"], "stages": ["prod"]}],
            "monitoring": [{"actions": ["metrics"]}],
        },
    }
    path = tmp_path / "stageserve.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _post(server: ServerProcess, path: str, headers: dict[str, str], body: Any = ROWS) -> Any:
    return server.request("POST", path, json.dumps(body).encode(), {**JSON, **headers})


def test_access_control_end_to_end(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    pricing_model = save_sklearn_package(tmp_path / "cost", name="cost_predictor")
    other_team = save_sklearn_package(tmp_path / "churn", name="churn_model")
    write_state(
        cache,
        [
            entry("cost_predictor", "prod", "v1.0.0", pricing_model),
            entry("cost_predictor", "dev", "v1.0.0", pricing_model),
            entry("churn_model", "prod", "v3.0.0", other_team),
        ],
    )
    keys = write_keys(
        tmp_path / "keys.yaml",
        {"pricing-key": ("pricing-svc", ["pricing"]), "prom-key": ("prometheus", ["monitoring"])},
    )
    signer = SigningKey("ES256", "idp-1")
    jwks = write_jwks(tmp_path / "jwks.json", signer)
    token = signer.token(roles=["pricing"], azp="billing-app")
    config = _settings(tmp_path, keys, jwks)
    key = {"x-api-key": "pricing-key"}
    with ServerProcess(cache, args=["--config", str(config)]) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness (open probe)")
        assert server.get("/healthz").status == 200

        anonymous = _post(server, "/predict/cost_predictor?stage=prod", {})
        assert anonymous.status == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="stageserve"'
        wrong = _post(server, "/predict/cost_predictor", {"authorization": "Bearer nope"})
        assert wrong.status == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]

        ok = _post(server, "/predict/cost_predictor?stage=prod", key)
        assert ok.status == 200 and ok.body["version"] == "v1.0.0"
        by_jwt = _post(server, "/predict/cost_predictor", {"authorization": f"Bearer {token}"})
        assert by_jwt.status == 200
        v2 = _post(
            server,
            "/v2/models/cost_predictor/infer",
            {"authorization": f"Bearer {token}"},
            {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
                        for n, v in example_rows(1)[0].items()]},
        )  # fmt: skip
        assert v2.status == 200, v2.body
        mlflow = "/invocations?model=cost_predictor"
        records = {"dataframe_records": example_rows(1)}
        assert _post(server, mlflow, {}, records).status == 401
        assert _post(server, mlflow, key, records).status == 200

        _check_refusals(server, key)
        _check_reads_and_metrics(server, key)
        _check_ping(server, key)
        _check_rotation(server, keys, key)
    _check_audit(tmp_path / "audit.jsonl")


def _check_refusals(server: ServerProcess, key: dict[str, str]) -> None:
    dev = _post(server, "/predict/cost_predictor?stage=dev", key)
    assert dev.status == 403
    assert dev.body["error"]["details"] == {
        "action": "predict",
        "model": "cost_predictor",
        "stage": "dev",
    }
    hidden = _post(server, "/predict/churn_model?stage=prod", key)
    absent = _post(server, "/predict/no_such_model?stage=prod", key)
    assert hidden.status == absent.status == 404
    assert "churn" not in json.dumps(absent.body)
    assert hidden.body["error"]["details"] == absent.body["error"]["details"]
    assert server.request("GET", "/v2/models/churn_model", None, key).status == 404


def _check_reads_and_metrics(server: ServerProcess, key: dict[str, str]) -> None:
    listed = server.request("GET", "/models", None, key).body["models"]
    assert [(m["name"], sorted(m["stages"])) for m in listed] == [("cost_predictor", ["prod"])]
    assert server.get("/models").status == 401
    schema = server.request("GET", "/schema", None, key).body
    assert "/predict/churn_model" not in schema["paths"]
    assert not any("churn" in path for path in schema["paths"])

    assert server.get("/metrics").status == 401
    assert server.request("GET", "/metrics", None, key).status == 403
    scraped = server.request("GET", "/metrics", None, {"authorization": "Bearer prom-key"})
    assert scraped.status == 200
    text = scraped.body
    assert 'stageserve_client_requests_total{client="pricing-svc",model="cost_predictor"}' in (text)
    assert 'client="billing-app",model="cost_predictor"' in text


def _check_ping(server: ServerProcess, key: dict[str, str]) -> None:
    # Plain /ping is a probe; a named model's readiness tells that it exists, so it needs
    # `read`: an anonymous caller cannot tell churn_model (served) from a model that is not.
    assert server.get("/ping").status == 200
    anonymous = [server.get(f"/ping?model={m}").status for m in ("churn_model", "no_such")]
    assert anonymous == [401, 401]
    hidden = server.request("GET", "/ping?model=churn_model", None, key)
    absent = server.request("GET", "/ping?model=no_such", None, key)
    assert hidden.status == absent.status == 404
    assert hidden.body["error"]["details"] == absent.body["error"]["details"]
    assert server.request("GET", "/ping?model=cost_predictor&stage=dev", None, key).status == 403
    assert server.request("GET", "/ping?model=cost_predictor", None, key).status == 200
    assert server.request("GET", "/health?model=cost_predictor", None, key).status == 200


def _check_rotation(server: ServerProcess, keys: Path, key: dict[str, str]) -> None:
    # Rotate: a new key works and the old one stops, without a restart.
    write_keys(
        keys,
        {
            "pricing-key-2": ("pricing-svc", ["pricing"]),
            "prom-key": ("prometheus", ["monitoring"]),
        },
    )
    wait_until(
        lambda: (
            _post(server, "/predict/cost_predictor", {"x-api-key": "pricing-key-2"}).status == 200
        ),
        30,
        "the rotated key",
    )
    assert _post(server, "/predict/cost_predictor", key).status == 401


def _check_audit(audit: Path) -> None:
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    by_status = {(r["status"], r.get("principal")) for r in records}
    assert (200, "pricing-svc") in by_status
    assert (200, "alice") in by_status
    assert (403, "pricing-svc") in by_status
    assert (401, None) in by_status
    assert all("pricing-key" not in json.dumps(r) for r in records)
