"""`stageserve feedback import FILE`: outcomes from a JSON-lines file, posted in batches to a
running gateway's `POST /feedback/{model}` (so every outcome is matched, validated and
recorded exactly as one sent by a client; with auth on, with the key you give it)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from registry_sync.logs import with_progress_lines
from registry_sync.progress import progress

__all__ = ["add_feedback"]


def add_feedback(sub: Any) -> None:
    p = sub.add_parser(
        "feedback",
        help="import observed outcomes (JSON lines) into a running gateway",
        description=(
            'Each line of FILE is one outcome: {"request_id": ..., "outcome": [...]} or '
            '{"client_request_id": ..., "outcome": [...]} (optionally with "model": '
            "then --model is not needed). They are posted in batches to --url's "
            "POST /feedback/{model}. Exit 1 if any was rejected (each one is printed)."
        ),
    )
    commands = p.add_subparsers(dest="feedback_command", required=True, metavar="COMMAND")
    imp = commands.add_parser("import", help="post the outcomes of a JSON-lines file")
    imp.add_argument("file", type=Path, metavar="FILE", help="JSON lines, one outcome each")
    imp.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default local)")
    imp.add_argument("--model", help="the model of lines that do not name one")
    imp.add_argument("--batch", type=int, default=500, help="outcomes per request (default 500)")
    imp.add_argument(
        "--api-key-env",
        default="STAGESERVE_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key to send (default STAGESERVE_API_KEY)",
    )
    imp.set_defaults(handler=with_progress_lines(run_import))


def _lines(path: Path, default_model: str | None) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    by_model: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise GatewayError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise GatewayError(f"{path}:{number}: not JSON") from None
        if not isinstance(item, dict):
            raise GatewayError(f"{path}:{number}: expected an object")
        model = item.pop("model", None) or default_model
        if not model:
            raise GatewayError(f"{path}:{number}: no model (give one per line or --model)")
        by_model.setdefault(model, []).append((number, item))
    return by_model


def _post(url: str, body: bytes, key: str | None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if key:
        headers["x-api-key"] = key
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode(errors="replace")
        raise GatewayError(f"{url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise GatewayError(f"cannot reach {url}: {exc}") from None


def run_import(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise GatewayError("--batch must be at least 1")
    by_model = _lines(args.file, args.model)
    key = os.environ.get(args.api_key_env)
    counts = {"recorded": 0, "unchanged": 0, "rejected": 0}
    total = sum(len(items) for items in by_model.values())
    with progress(f"import {args.file.name}", total, unit="outcomes") as advance:
        for model, items in by_model.items():
            url = f"{args.url.rstrip('/')}/feedback/{model}"
            for start in range(0, len(items), args.batch):
                chunk = items[start : start + args.batch]
                body = json.dumps({"outcomes": [item for _, item in chunk]}).encode()
                answer = _post(url, body, key)
                for result in answer["results"]:
                    counts[result["status"]] += 1
                    if result["status"] == "rejected":
                        number = chunk[result["index"]][0]
                        error = result["error"]
                        print(
                            f"{args.file}:{number}: {error['code']}: {error['message']}",
                            file=sys.stderr,
                        )
                advance(len(chunk))
    print(
        f"{counts['recorded']} recorded, {counts['unchanged']} already recorded, "
        f"{counts['rejected']} rejected"
    )
    return 1 if counts["rejected"] else 0
