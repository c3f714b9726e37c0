"""Time for an unrelated model to swap while another model's package is broken.

Two models in a real git registry; `other@v1.0.1` carries a symlink out of its package (git
stores links; `gto register` checks nothing). The gateway runs embedded, then as a sidecar
pair; after the bad version is assigned, `cost_predictor` is reassigned a few times and each
time we measure assign -> first answer from the new version (timeout: "never").

    .venv/bin/python benchmarks/broken_package_swap.py [--swaps 3] [--timeout-s 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry_sync.registry import writer  # noqa: E402
from registry_sync.registry.git_registry import GitRegistry  # noqa: E402
from tests.integration.server import ServerProcess, wait_until  # noqa: E402
from tests.integration.sync_procs import gateway  # noqa: E402
from tests.models import example_rows, save_sklearn_package  # noqa: E402
from tests.registry_packages import git, init_registry  # noqa: E402

A, B = "cost_predictor", "other"
BODY = {"inputs": example_rows(1)}


def build(base: Path) -> GitRegistry:
    reg = GitRegistry(init_registry(base / "registry"))
    writer.register(reg, A, save_sklearn_package(base / "a1"), version="v1.0.0")
    writer.register(reg, A, save_sklearn_package(base / "a2", offset=100.0), version="v1.1.0")
    writer.register(reg, B, save_sklearn_package(base / "b1", name=B), version="v1.0.0")
    writer.assign(reg, A, "prod", "v1.0.0")
    writer.assign(reg, B, "prod", "v1.0.0")
    return reg


def break_b(reg: GitRegistry) -> None:
    (reg.path / "models" / B / "evil").symlink_to("../../../../../../etc/passwd")
    git(reg.path, "add", "-A")
    git(reg.path, "commit", "-qm", "a link out of the package")
    git(reg.path, "tag", "-a", f"{B}@v1.0.1", "-m", "Registering artifact")
    writer.assign(reg, B, "prod", "v1.0.1")


def serves(server: ServerProcess) -> str | None:
    answer = server.predict(A, BODY)
    return answer.headers.get("x-model-version") if answer.status == 200 else None


def measure(mode: str, base: Path, swaps: int, timeout_s: float) -> list[str]:
    reg = build(base)
    lags: list[str] = []
    with gateway(mode, reg.path, base / "cache") as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        break_b(reg)
        time.sleep(2)  # several polls with the broken package assigned
        for i in range(swaps):
            target = ("v1.1.0", "v1.0.0")[i % 2]
            assigned = time.monotonic()
            writer.assign(reg, A, "prod", target)
            try:
                wait_until(lambda t=target: serves(server) == t, timeout_s, "swap")
            except AssertionError:
                lags.append(f"never (> {timeout_s:g} s)")
                break
            lags.append(f"{time.monotonic() - assigned:.2f} s")
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    for mode in ("embedded", "sidecar"):
        with tempfile.TemporaryDirectory(prefix="broken-swap-") as tmp:
            lags = measure(mode, Path(tmp), args.swaps, args.timeout_s)
        print(f"{mode}: {A} assign -> first answer from the new version: {', '.join(lags)}")


if __name__ == "__main__":
    main()
