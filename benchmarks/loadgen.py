"""Load from a separate process: wrk with a Lua script for the JSON POST, or a Python fallback.

`wrk --latency` prints the latency distribution; p50 and p99 are parsed from it, errors are
non-2xx responses plus socket errors (connect, read, write, timeout).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.procs import pin_prefix

__all__ = ["LoadResult", "ensure_wrk", "parse_wrk", "run_load"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def ensure_wrk(install: bool) -> tuple[str | None, str]:
    """The wrk executable, installing Debian's package when missing and allowed; and a note."""
    found = shutil.which("wrk")
    if found or not install:
        return found, "wrk found" if found else "wrk missing (install not attempted)"
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            return None, f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}"
    found = shutil.which("wrk")
    return found, "wrk installed with apt-get" if found else "apt-get installed no wrk"


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    """Requests, duration, requests/s, p50/p99 and errors from `wrk --latency` output."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if done is None:
        raise ValueError(f"no request count in wrk output:\n{output}")
    requests = int(done.group(1))
    seconds = _ms(done.group(2) + done.group(3)) / 1000.0
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return LoadResult(
        requests=requests,
        seconds=seconds,
        rps=float(rps.group(1)) if rps else requests / seconds,
        p50_ms=_ms(percentiles["50"]) if "50" in percentiles else float("nan"),
        p99_ms=_ms(percentiles["99"]) if "99" in percentiles else float("nan"),
        errors=errors,
    )


def _lua(body: bytes, folder: Path) -> Path:
    script = folder / f"post-{abs(hash(body))}.lua"
    text = body.decode()
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{text}]==]\n"
    )
    return script


def run_load(
    wrk: str | None,
    url: str,
    body: bytes,
    *,
    connections: int,
    duration_s: float,
    work: Path,
    cpu: int = 1,
) -> LoadResult:
    """One measured run: wrk (pinned to `cpu`) when given, else the Python generator."""
    if wrk is None:
        allowed = os.sched_getaffinity(0)
        if pin_prefix(cpu):  # the client threads inherit this thread's core
            os.sched_setaffinity(0, {cpu})
        try:
            return _python_load(url, body, connections, duration_s)
        finally:
            os.sched_setaffinity(0, allowed)
    cmd = [
        *pin_prefix(cpu),
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(_lua(body, work)),
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=True)
    return parse_wrk(done.stdout)


def _python_load(url: str, body: bytes, connections: int, duration_s: float) -> LoadResult:
    """Keep-alive clients in threads (one per connection); slower than wrk, same measures."""
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s
    headers = {"content-type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        mine: list[float] = []
        failed = 0
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                conn.request("POST", parts.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 300:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + 30)
    seconds = time.monotonic() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0

    return LoadResult(len(ordered), seconds, len(ordered) / seconds, pct(0.5), pct(0.99), errors[0])
