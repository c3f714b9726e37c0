"""The peers, each in its own venv under benchmarks/venvs/: `mlflow models serve` and MLServer.

A venv is created (and its packages pip-installed) when missing; a peer that cannot be installed
or prepared is reported with the reason, and the run goes on without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import Launch, free_port

__all__ = ["PEERS", "PeerSetup", "peer_versions", "prepare_peer"]

HERE = Path(__file__).resolve().parent
VENVS = HERE / "venvs"
MTCARS = HERE.parent / "registry_sync" / "package" / "data" / "mtcars.csv"
# peer -> (pip requirements, a module whose import proves the install)
PEERS: dict[str, tuple[list[str], str]] = {
    "mlflow": (["mlflow", "scikit-learn", "pandas"], "mlflow.sklearn"),
    "mlserver": (["mlserver", "mlserver-sklearn"], "mlserver_sklearn"),
}
_VERSIONS = {
    "mlflow": ["mlflow", "scikit-learn"],
    "mlserver": ["mlserver", "mlserver-sklearn", "scikit-learn"],
}


@dataclass(frozen=True)
class PeerSetup:
    name: str
    launches: list[Launch]
    note: str


def _venv_python(name: str, install: bool) -> tuple[Path | None, str]:
    venv = VENVS / name
    python = venv / "bin" / "python"
    requirements, probe = PEERS[name]
    if python.exists() and _runs(python, ["-c", f"import {probe}"]):
        return python, "venv present"
    if not install:
        return None, f"{venv} missing and install not allowed"
    if not python.exists():
        done = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            return None, f"python -m venv failed: {done.stderr.strip()[-300:]}"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0 or not _runs(python, ["-c", f"import {probe}"]):
        return None, f"pip install {' '.join(requirements)} failed: {done.stderr.strip()[-300:]}"
    return python, "venv created"


def _runs(python: Path, args: list[str]) -> bool:
    return subprocess.run([str(python), *args], capture_output=True, check=False).returncode == 0


def peer_versions(name: str) -> dict[str, str]:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *_VERSIONS[name]], capture_output=True, text=True, check=False
    )
    return {f"{name}:{k}": v for k, v in json.loads(done.stdout or "{}").items()}


def prepare_peer(name: str, work: Path, models: list[str], *, install: bool) -> PeerSetup:
    """Install when needed, train + save the models with the peer's own libraries, and
    return how to launch it (one launch per model for mlflow, one for all for MLServer)."""
    python, note = _venv_python(name, install)
    if python is None:
        return PeerSetup(name, [], note)
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(python), str(HERE / "peer_train.py"), name, str(MTCARS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return PeerSetup(name, [], f"saving the models failed: {done.stderr.strip()[-500:]}")
    bin_dir = python.parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "VIRTUAL_ENV": str(bin_dir.parent)}
    if name == "mlflow":
        launches = []
        for model in models:
            port = free_port()
            argv = [
                str(bin_dir / "mlflow"),
                "models",
                "serve",
                "-m",
                str(out / model),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ]
            launches.append(
                Launch(
                    "mlflow",
                    "mlflow",
                    argv,
                    {model: "/invocations"},
                    port,
                    out,
                    env,
                    ready_timeout_s=180,
                )
            )
        return PeerSetup(name, launches, note)
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "metrics_dir": str(out / ".metrics"),
        "debug": False,
        # Inference in the server process. The default (one worker process) does not start
        # here: mlserver 1.7.1's worker calls asyncio.get_event_loop(), which uvloop 0.23 refuses.
        "parallel_workers": 0,
    }
    (out / "settings.json").write_text(json.dumps(settings))
    paths = {m: f"/v2/models/{m}/infer" for m in models}
    argv = [str(bin_dir / "mlserver"), "start", str(out)]
    return PeerSetup(
        name,
        [Launch("mlserver", "mlserver", argv, paths, port, out, env, ready_timeout_s=180)],
        note,
    )
