"""Time from `assign` to the first response from the new version, and p99 during swaps.

Runs `stageserve serve` (embedded sync) twice in one run: once following a local registry
(watched with watchfiles), once following a remote one (a bare repo reached through a
file:// URL, so it is mirrored and polled). A client thread keeps requesting prod; the
main thread reassigns prod back and forth and measures when the first answer from the
newly assigned version arrives. Loopback only.

    .venv/bin/python benchmarks/swap_latency.py [--swaps 6] [--poll-interval-s 1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry_sync.registry import writer  # noqa: E402
from registry_sync.registry.git_registry import GitRegistry  # noqa: E402
from tests.integration.load import LoadStream  # noqa: E402
from tests.integration.server import ServerProcess, wait_until  # noqa: E402
from tests.models import example_rows, save_onnx_package  # noqa: E402
from tests.registry_packages import git, init_registry  # noqa: E402

MODEL = "cost_predictor"
VERSIONS = ("v1.0.0", "v1.1.0")


def build_registry(base: Path) -> GitRegistry:
    registry = GitRegistry(init_registry(base / "registry"))
    for offset, version in zip((0.0, 100.0), VERSIONS, strict=True):
        package = save_onnx_package(base / f"pkg-{version}", offset=offset)
        writer.register(registry, MODEL, package, version=version)
    writer.assign(registry, MODEL, "prod", VERSIONS[0])
    return registry


def measure(
    label: str,
    registry: GitRegistry,
    location: str,
    args: argparse.Namespace,
    *,
    push_to: Path | None,
    work: Path,
) -> dict[str, object]:
    cache = work / f"cache-{label}"
    cache.mkdir()
    serve_args = ["--registry", location, "--poll-interval-s", str(args.poll_interval_s)]
    lags: list[float] = []
    body = {"inputs": [example_rows(1)[0]]}
    # A remote registry's mirror goes in the run's folder, not in $XDG_CACHE_HOME.
    env = {"STAGESERVE_MIRROR_DIR": str(work / f"mirror-{label}")}
    with ServerProcess(cache, args=serve_args, env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 120, "readiness")
        with LoadStream(server.port, f"/predict/{MODEL}?stage=prod", body, clients=2) as load:
            time.sleep(1.0)
            steady_until = time.monotonic()
            for i in range(args.swaps):
                version = VERSIONS[(i + 1) % 2]
                writer.assign(registry, MODEL, "prod", version)
                if push_to is not None:
                    git(registry.path, "push", "-q", "--tags", str(push_to))
                assigned = time.monotonic()
                wait_until(
                    lambda v=version, t=assigned: any(
                        a.version == v for a in load.answered_since(t)
                    ),
                    120,
                    f"{version} to serve",
                )
                first = min(
                    a.received_at for a in load.answered_since(assigned) if a.version == version
                )
                lags.append(first - assigned)
                time.sleep(1.1)  # distinct registry seconds between assignments
            answers = load.stop()
    failed = sum(1 for a in answers if a.status != 200)
    steady = [a.received_at - a.sent_at for a in answers if a.received_at < steady_until]
    swapping = [a.received_at - a.sent_at for a in answers if a.sent_at >= steady_until]
    return {
        "mode": label,
        "swaps": len(lags),
        "assign_to_first_new_response_s": {
            "median": round(statistics.median(lags), 3),
            "max": round(max(lags), 3),
            "all": [round(x, 3) for x in lags],
        },
        "requests": len(answers),
        "failed": failed,
        "p99_ms_steady": round(_p99(steady) * 1000, 2),
        "p99_ms_during_swaps": round(_p99(swapping) * 1000, 2),
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=6)
    parser.add_argument("--poll-interval-s", type=float, default=1.0)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        local = build_registry(work / "local")
        results.append(
            measure("local-watched", local, str(local.path), args, push_to=None, work=work)
        )
        remote = work / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(local.path), str(remote)], check=True)
        results.append(
            measure("remote-polled", local, f"file://{remote}", args, push_to=remote, work=work)
        )
    print(json.dumps({"poll_interval_s": args.poll_interval_s, "results": results}, indent=2))


if __name__ == "__main__":
    main()
