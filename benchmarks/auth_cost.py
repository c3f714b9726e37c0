"""The CPU cost of access control on the predict path: auth off vs API key vs JWT.

In process, no sockets: the gateway app (create_app, fast lane, a real ONNX linear model) is
driven through its ASGI callable with a prebuilt request, so what is measured is the predict
path itself (uvicorn's HTTP parsing and socket writes cost the same in every mode). Modes
are interleaved round by round (so machine noise hits all alike) and each reports the median
CPU time (`time.process_time`) per request. A JWT is verified once and then remembered until
it expires; `--cold` also times the first verification of fresh tokens per algorithm.

    .venv/bin/python -m benchmarks.auth_cost [--requests 20000] [--rounds 5] [--cold]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "cost_predictor"
KEY = "benchmark-key-0123456789abcdef0123456789abcdef"


def _apps(folder: Path) -> dict[str, tuple[Any, list[tuple[bytes, bytes]]]]:
    sys.path.insert(0, str(ROOT))
    from gateway.app import create_app, gateway_of
    from gateway.settings import load_settings
    from registry_sync.package.read import read_package
    from registry_sync.sync.snapshot import DesiredEntry, DesiredState
    from tests.access_keys import SigningKey, write_jwks, write_keys
    from tests.models import save_onnx_package

    package = save_onnx_package(folder / "pkg")
    state = DesiredState(
        generated_at="2026-01-01T00:00:00Z",
        registry="bench",
        entries=[
            DesiredEntry(
                model=MODEL,
                stage="prod",
                version="v1.0.0",
                package_path=str(package),
                digest=read_package(package).digest,
            )
        ],
    )
    write_keys(folder / "keys.yaml", {KEY: ("bench", ["pricing"])})
    signer = SigningKey("RS256", "bench")
    write_jwks(folder / "jwks.json", signer)
    auth = {
        "auth": True,
        "api_keys_file": str(folder / "keys.yaml"),
        "jwks": str(folder / "jwks.json"),
        "jwt_issuer": "https://idp.test",
        "jwt_audience": "stageserve",
        "access_policy": json.dumps(
            {"pricing": [{"actions": ["predict"], "models": ["cost_*"], "stages": ["prod"]}]}
        ),
    }
    token = signer.token(roles=["pricing"], exp=int(time.time()) + 3600)
    modes = {
        "auth off": ({}, []),
        "API key": (auth, [(b"x-api-key", KEY.encode())]),
        "JWT RS256 (verified once, then remembered)": (
            auth,
            [(b"authorization", f"Bearer {token}".encode())],
        ),
    }
    built = {}
    for name, (environ, headers) in modes.items():
        settings = load_settings(
            environ={f"STAGESERVE_{k.upper()}": str(v) for k, v in environ.items()}
        )
        app = create_app(settings)
        asyncio.run(gateway_of(app).pool.reconcile(state))
        built[name] = (app, headers)
    return built


def _request(app: Any, headers: list[tuple[bytes, bytes]], body: bytes, count: int) -> float:
    """CPU seconds per request over `count` requests through the app's ASGI handler."""
    handler = app.asgi_handler
    base = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    statuses: list[int] = []

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            statuses.append(event["status"])

    async def run() -> float:
        scope_headers = base + headers
        started = time.process_time()
        for _ in range(count):
            scope = {
                "type": "http",
                "method": "POST",
                "path": f"/predict/{MODEL}",
                "query_string": b"stage=prod",
                "headers": scope_headers,
                "root_path": "",
            }
            await handler(scope, receive, send)
        return (time.process_time() - started) / count

    per_request = asyncio.run(run())
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(statuses))}")
    return per_request


def _cold(count: int) -> dict[str, float]:
    """µs to verify a token the gateway has not seen, per algorithm."""
    from gateway.access.jwt_tokens import JwtVerifier
    from tests.access_keys import SigningKey, write_jwks

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in ("RS256", "ES256", "EdDSA"):
            signer = SigningKey(algorithm, "k")
            verifier = JwtVerifier(
                str(write_jwks(Path(tmp) / f"{algorithm}.json", signer)),
                issuer="https://idp.test",
                audience="stageserve",
            )
            tokens = [signer.token(jti=str(i)) for i in range(count)]
            started = time.process_time()
            for token in tokens:
                verifier.verify(token)
            out[algorithm] = (time.process_time() - started) / count * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time first verifications")
    args = parser.parse_args(argv)
    from tests.models import example_rows

    body = json.dumps({"inputs": example_rows(1)}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        apps = _apps(Path(tmp))
        for app, headers in apps.values():  # warm-up: first requests build caches
            _request(app, headers, body, 500)
        samples: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, (app, headers) in apps.items():
                samples[name].append(_request(app, headers, body, args.requests))
    off = statistics.median(samples["auth off"])
    print(
        f"CPU per predict request, in process ({args.requests} requests x {args.rounds} "
        "rounds, median):"
    )
    for name, values in samples.items():
        median = statistics.median(values)
        extra = "" if name == "auth off" else f"  (+{(median - off) * 1e6:.1f} µs)"
        print(f"  {name:45s} {median * 1e6:7.1f} µs{extra}")
    if args.cold:
        for algorithm, micros in _cold(200).items():
            print(f"  first verification of a JWT, {algorithm:5s}          {micros:7.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
