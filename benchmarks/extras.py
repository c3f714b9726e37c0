"""The measures beside throughput: in-process inference cost, memory per loaded version,
assign-to-first-response and p99 during swaps (benchmarks/swap_latency.py), issue 17's
shadow targets (benchmarks/shadow_bench.py), and a py-spy profile of stageserve's predict
path under load."""

from __future__ import annotations

import collections
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fixtures import feature_rows
from benchmarks.procs import Launch, Server, rss_kib

__all__ = [
    "inprocess_costs",
    "memory_per_version",
    "profile_top",
    "shadow_targets",
    "swap_latency",
]

HERE = Path(__file__).resolve().parent


def _per_call_us(fn: Callable[[], object], budget_s: float) -> float:
    """Median µs per call over 5 timed batches, after a warm-up."""
    for _ in range(200):
        fn()
    batch, medians = 200, []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        medians.append((time.perf_counter() - t) / batch * 1e6)
        spent = medians[-1] * batch / 1e6
        batch = max(50, int(batch * (budget_s / 5) / max(spent, 1e-6)))
    return round(statistics.median(medians), 2)


def inprocess_costs(packages: dict[str, Path], budget_s: float) -> list[dict[str, Any]]:
    """µs per `predict_matrix` call (stageserve's runtime) and per raw session.run."""
    from registry_sync.package.read import read_package
    from registry_sync.runtimes import load_predictor

    out = []
    for name, path in packages.items():
        predictor = load_predictor(read_package(path))
        for rows in (1, 32):
            matrix = np.array(feature_rows(rows), dtype=np.float64)

            def call(p: Any = predictor, m: np.ndarray = matrix) -> object:
                return p.predict_matrix(m)

            out.append(
                {
                    "model": name,
                    "engine": predictor.engine,
                    "rows": rows,
                    "predict_matrix_us": _per_call_us(call, budget_s),
                }
            )
    return out


def memory_per_version(work: Path, counts: tuple[int, ...], export_onnx: bool) -> dict[str, Any]:
    """VmRSS of a fresh `stageserve serve` with 0, 1, 2, 4 ... GBR versions loaded."""
    from tests.integration.server import entry, write_state
    from tests.models import save_sklearn_package

    kind = "onnx" if export_onnx else "sklearn"
    packages = [
        save_sklearn_package(
            work / f"mem-{kind}-pkg{i}",
            name=f"m{i}",
            gbr=True,
            offset=float(i),
            export_onnx=export_onnx,
        )
        for i in range(max(counts))
    ]
    rss: dict[int, int] = {}
    for n in counts:
        cache = work / f"mem-{kind}-{n}"
        cache.mkdir()
        write_state(cache, [entry(f"m{i}", "prod", "v1.0.0", packages[i]) for i in range(n)])
        launch = stageserve_launch(cache, None, f"mem-{kind}-{n}", models=[])
        server = Server(launch, work / f"mem-{kind}-{n}.log")
        try:
            server.start_unprobed()
            _wait_ready(server, n)
            time.sleep(0.5)
            rss[n] = rss_kib(server.pid)
        finally:
            server.stop()
    # The first version also brings in its runtime's libraries; the ones after it cost only
    # their own session/estimator (these models are tiny: 10 trees, or 5 coefficients).
    first, top = counts[1], counts[-1]
    return {
        "engine": kind,
        "rss_mib": {str(n): round(v / 1024, 1) for n, v in rss.items()},
        "first_version_mib": round((rss[first] - rss[counts[0]]) / 1024, 1),
        "per_additional_version_kib": round((rss[top] - rss[first]) / max(1, top - first)),
    }


def _wait_ready(server: Server, n: int) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{server.launch.port}/models"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                listing = json.loads(response.read())
            models = listing["models"] if isinstance(listing, dict) else listing
            loaded = [s for m in models for s in m["stages"].values() if s.get("version")]
            if len(loaded) == n:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"stageserve did not load {n} versions:\n{server.log_tail()}")


def stageserve_launch(
    cache: Path, audit: Path | None, name: str, *, models: list[str], h11: bool = False
) -> Launch:
    from benchmarks.procs import free_port

    port = free_port()
    entry_point = [str(HERE / "stageserve_h11.py")] if h11 else ["-m", "gateway.cli"]
    argv = [
        sys.executable,
        *entry_point,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--cache",
        str(cache),
        "--log-level",
        "warning",
    ]
    if audit is not None:
        argv += ["--audit-path", str(audit)]
    paths = {m: f"/predict/{m}" for m in models}
    return Launch(name, "stageserve", argv, paths, port, HERE.parent, ready_all_models=True)


def swap_latency(swaps: int, timeout_s: float) -> dict[str, Any]:
    """benchmarks/swap_latency.py (the lead's) run as a subprocess; its JSON, or the failure."""
    cmd = [sys.executable, str(HERE / "swap_latency.py"), "--swaps", str(swaps)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=HERE.parent
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s}s", "command": " ".join(cmd)}
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-800:], "command": " ".join(cmd)}
    result: dict[str, Any] = json.loads(done.stdout)
    result["command"] = " ".join(cmd)
    return result


def shadow_targets(seconds: float, rounds: int, timeout_s: float) -> dict[str, Any]:
    """benchmarks/shadow_bench.py as a subprocess; issue 17's two shadow targets per scenario
    (c1 back-to-back p99 on / off <= 1.3x, c16 saturated req/s on / off >= 0.9x)."""
    with tempfile.TemporaryDirectory(prefix="stageserve-shadow-") as tmp:
        out = Path(tmp) / "shadow.json"
        cmd = [sys.executable, "-m", "benchmarks.shadow_bench", "--seconds", str(seconds)]
        cmd += ["--rounds", str(rounds), "--json", str(out)]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=HERE.parent
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s}s", "command": " ".join(cmd)}
        if done.returncode != 0 or not out.exists():
            return {"error": done.stderr.strip()[-800:], "command": " ".join(cmd)}
        result: dict[str, Any] = json.loads(out.read_text())
    targets = []
    for scenario, loads in result.get("scenarios", {}).items():
        c1, c16 = loads.get("back-to-back"), loads.get("saturated")
        if c1:
            ratio = c1["ratio_on_off"]["p99_ms"]
            measured = f"{ratio:.2f}x ({c1['on']['p99_ms']:.3f} / {c1['off']['p99_ms']:.3f} ms)"
            targets.append(
                {"target": f"c1 p99 shadow on / off ({scenario})", "goal": "<= 1.3x",
                 "measured": measured, "met": ratio <= 1.3}
            )  # fmt: skip
        if c16:
            ratio = c16["ratio_on_off"]["rps"]
            shadowed = c16.get("shadow_compared_share")
            share = f"; {shadowed:.0%} shadowed" if shadowed is not None else ""
            measured = f"{ratio:.2f}x ({c16['on']['rps']:,.0f} / {c16['off']['rps']:,.0f}){share}"
            targets.append(
                {"target": f"c16 primary req/s shadow on / off ({scenario})", "goal": ">= 0.9x",
                 "measured": measured, "met": ratio >= 0.9}
            )  # fmt: skip
    return {"command": " ".join(cmd), "targets": targets, "result": result}


def profile_top(
    py_spy: str | None, pid: int, seconds: int, work: Path, during: Callable[[], object]
) -> dict[str, Any]:
    """Sample `pid` with py-spy while `during()` loads it; the functions with most samples."""
    if py_spy is None or shutil.which(py_spy) is None:
        return {"error": "py-spy not available"}
    raw = work / "profile.txt"
    cmd = [
        "taskset",
        "-c",
        "1",
        py_spy,
        "record",
        "-p",
        str(pid),
        "-d",
        str(seconds),
        "-r",
        "250",
        "--format",
        "raw",
        "--threads",
        "-o",
        str(raw),
        "--nonblocking",
    ]
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    during()
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-400:]}"}
    return summarize_collapsed(raw.read_text())


# Where a sample's time goes: the first frame from the leaf up that matches a category.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audit record", ("canonical_json", "AuditWriter", "PredictRoute._audit")),
    (
        "model inference",
        (
            "Session.run",
            "OnnxPredictor",
            "SklearnPredictor",
            "_predict_matrix",
            "_validate_graph",
            "_validate_input",
        ),
    ),
    (
        "input decode + validation",
        ("RequestSchema.decode", "_from_rows", "read_body", "RequestSchema._"),
    ),
    ("output check", ("OutputCheck", "RequestSchema.predictions")),
    ("metrics", ("fast_metrics", "HistogramChild", "CounterChild", "Counter.", "Histogram.")),
    ("uvicorn send (socket write)", ("RequestResponseCycle.send",)),
    (
        "uvicorn HTTP protocol (httptools/h11)",
        ("HttpToolsProtocol", "H11Protocol", "RequestResponseCycle"),
    ),
    (
        "ASGI layers before the handler",
        ("ProxyHeadersMiddleware", "Litestar.", "dispatch", "_TrustedHosts"),
    ),
    ("predict handler (ids, routing, response encode)", ("PredictRoute", "RequestIds", "stage_of")),
    (
        "event loop (uvloop/asyncio)",
        ("Runner.run", "run_until_complete", "_run_once", "Handle._run"),
    ),
)


def summarize_collapsed(text: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function, and shares per category, from py-spy's
    collapsed stacks (`--threads`: only the event loop's thread, where requests are served)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    total = other_threads = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("thread ") and "MainThread" not in frames[0]:
            other_threads += int(count)
            continue
        frames = [f.split(" (", 1)[0] + _where(f) for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
        kinds[_category(frames)] += n

    def share(counter: collections.Counter[str], k: int = top) -> list[list[Any]]:
        return [[name, round(100 * n / max(total, 1), 1)] for name, n in counter.most_common(k)]

    return {
        "samples": total,
        "other_thread_samples": other_threads,
        "categories_pct": share(kinds, len(CATEGORIES) + 1),
        "self_pct": share(own),
        "inclusive_pct": share(incl),
    }


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for label, patterns in CATEGORIES:
            if any(p in frame for p in patterns):
                return label
    return "other"


def _where(frame: str) -> str:
    """' (file.py)' from py-spy's 'function (path/file.py:line)'."""
    if " (" not in frame:
        return ""
    location = frame.split(" (", 1)[1].rstrip(")")
    return f" ({Path(location.rsplit(':', 1)[0]).name})"
