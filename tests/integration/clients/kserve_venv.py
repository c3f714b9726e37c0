"""kserve's REST client in a venv of its own, created on first use under `.venvs/`.

kserve 0.21 pins pandas<3 and pulls ~450 MB (kubernetes, grpc, fastapi, pillow); in the dev
venv it would downgrade pandas under every other test. `import kserve` runs its whole
`__init__` (model server, Kubernetes API models), so there is no lighter install that still
imports `InferenceRESTClient`. The venv is reused while it holds that kserve version; a run
creates it in ~35 s from PyPI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["KSERVE", "kserve_python", "run_kserve_client"]

KSERVE = "kserve==0.21.0"
ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".venvs" / KSERVE.replace("==", "-")
SCRIPT = Path(__file__).with_name("kserve_client.py")


def kserve_python() -> Path:
    """The venv's python, installing kserve into a fresh venv when it is not there yet."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.is_file() and python.is_file():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", KSERVE],
        check=True,
        timeout=900,
    )
    stamp.write_text(KSERVE + "\n")
    return python


def run_kserve_client(base_url: str, scenario: str, **args: Any) -> Any:
    """Run one scenario of kserve_client.py in the kserve venv; its JSON result."""
    done = subprocess.run(
        [str(kserve_python()), str(SCRIPT), base_url, scenario, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kserve client failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)
