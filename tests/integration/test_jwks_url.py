"""A JWKS fetched from a URL (a real HTTP server on 127.0.0.1): keys rotate without a restart."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.access.jwt_tokens import JwtVerifier
from gateway.errors import UnauthorizedError
from tests.access_keys import SigningKey


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    served = {"body": b"{}"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(served["body"])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", served
    finally:
        server.shutdown()
        server.server_close()


def _publish(served: dict[str, bytes], *keys: SigningKey) -> None:
    served["body"] = json.dumps({"keys": [k.jwk() for k in keys]}).encode()


def test_keys_from_a_jwks_url_verify_and_rotate_on_refresh(
    jwks_server: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    url, served = jwks_server
    first = SigningKey("RS256", "2026-01")
    _publish(served, first)
    verifier = JwtVerifier(url, issuer="https://idp.test", audience="stageserve", refresh_s=0.0)
    assert verifier.verify(first.token(roles=["pricing"])).roles == ("pricing",)
    second = SigningKey("EdDSA", "2026-02")
    _publish(served, second)
    with pytest.raises(UnauthorizedError, match="not known"):
        verifier.verify(second.token())
    assert verifier.refresh()  # what the gateway's background task does every jwks_refresh_s
    assert verifier.verify(second.token()).name == "alice"
    with pytest.raises(UnauthorizedError):
        verifier.verify(first.token(jti="new"))  # the retired key no longer counts
