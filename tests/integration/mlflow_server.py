"""A real `mlflow server` on 127.0.0.1 for tests: SQLite backend, local artifact root served
through the tracking server (its default), plus the REST calls a registry admin makes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.integration.mlflow_venv import mlflow_bin
from tests.integration.server import ROOT, free_port, wait_until

__all__ = ["MlflowServer", "log_models", "run_in_mlflow_venv"]

# No background job runner (huey with a dozen workers): the registry does not need it, and
# it costs a shared 2-core machine more than the server itself.
QUIET_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass
class MlflowServer:
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registry(self) -> str:
        return f"mlflow+{self.url}"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def __enter__(self) -> MlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "mlflow-server.log").open("wb")
        self.proc = subprocess.Popen(
            [str(mlflow_bin() / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.artifacts), "--workers", "1"],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **QUIET_SERVER_ENV},
        )  # fmt: skip
        log.close()
        wait_until(self._healthy, 120, "mlflow server /health")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.root / "mlflow-server.log").read_text()
            raise AssertionError(f"mlflow server exited:\n{log[-3000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # Its own process group: the server forks workers that must go with it.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    # -- what a registry admin does (MLflow's REST API, as MlflowClient calls it) -----------

    def call(self, method: str, endpoint: str, body: dict[str, Any]) -> Any:
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        # MLflow's client sends a JSON body with DELETE too.
        response = httpx.request(method, url, json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def set_alias(self, model: str, alias: str, version: str) -> None:
        body = {"name": model, "alias": alias, "version": version}
        self.call("POST", "registered-models/alias", body)

    def delete_alias(self, model: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", {"name": model, "alias": alias})

    def delete_version(self, model: str, version: str) -> None:
        self.call("DELETE", "model-versions/delete", {"name": model, "version": version})

    def transition(self, model: str, version: str, stage: str) -> None:
        body = {"name": model, "version": version, "stage": stage}
        self.call(
            "POST", "model-versions/transition-stage", body | {"archive_existing_versions": False}
        )


def run_in_mlflow_venv(*args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in the MLflow venv, with this checkout importable (for mtcars)."""
    return subprocess.run(
        [str(mlflow_bin() / "python"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def log_models(server: MlflowServer, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log, register and predict with MLflow itself (tests/mlflow_driver.py, a subprocess)."""
    done = run_in_mlflow_venv(
        str(ROOT / "tests" / "mlflow_driver.py"), server.url, json.dumps(requests)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
