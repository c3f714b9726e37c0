"""Signed promotion end to end: a gateway (embedded sync, real process) with a trust policy
follows only signed assignments to prod; the CLI answers who promoted and checks signatures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ROOT, ServerProcess, wait_until
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import init_registry
from tests.signing_keys import make_ssh_key, write_signers

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "registry", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_only_signed_assignments_to_prod_are_followed_and_refusals_show_everywhere(
    tmp_path: Path,
) -> None:
    alice = make_ssh_key(tmp_path / "keys", "alice@example.com")
    mallory = make_ssh_key(tmp_path / "keys", "mallory@example.com")
    signers = write_signers(tmp_path / "allowed_signers", alice)
    config = tmp_path / "stageserve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "trust_policy": [{"stages": ["prod"], "allowed_signers": str(signers)}],
                "journal_path": str(tmp_path / "journal.jsonl"),
            }
        )
    )
    registry = GitRegistry(init_registry(tmp_path / "registry"))
    for version, offset in (("v1.0.0", 0.0), ("v1.1.0", 100.0), ("v1.2.0", 200.0)):
        package = save_sklearn_package(tmp_path / version, offset=offset)
        writer.register(registry, MODEL, package, version=version)
    repo = str(registry.path)
    signed = _cli("assign", MODEL, "prod", "--version", "v1.0.0", "--registry", repo,
                  "--signing-key", str(alice.path), "--signing-format", "ssh")  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    cache = tmp_path / "cache"
    cache.mkdir()
    args = ["--registry", repo, "--poll-interval-s", "0.5", "--config", str(config)]
    body = {"inputs": example_rows(1)}
    with ServerProcess(cache, args=args) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        prod = server.get(f"/models/{MODEL}").body["stages"]["prod"]
        assert prod["version"] == "v1.0.0"
        assert prod["signed_by"].startswith("alice@example.com (SHA256:")

        writer.assign(registry, MODEL, "prod", "v1.1.0")  # unsigned
        writer.assign(registry, MODEL, "prod", "v1.2.0", sign=mallory.signing)  # not allowed

        def refused() -> list[dict[str, object]]:
            return server.get(f"/models/{MODEL}").body["sync"]["untrusted"]  # type: ignore[no-any-return]

        wait_until(lambda: len(refused()) == 2, 30, "both refusals in /models")
        reasons = {r["version"]: r for r in refused()}
        assert reasons["v1.1.0"]["status"] == "unsigned"
        assert "not an allowed signer" in str(reasons["v1.2.0"]["reason"])
        assert reasons["v1.2.0"]["serving"] == "v1.0.0"
        answer = server.predict(MODEL, body)
        assert answer.status == 200 and answer.headers["x-model-version"] == "v1.0.0"
        metrics = server.get("/metrics").body
        assert (
            f'stageserve_sync_untrusted_assignments{{model="{MODEL}",stage="prod"}} 2.0' in metrics
        )

        promoted = _cli("assign", MODEL, "prod", "--version", "v1.2.0", "--registry", repo,
                        "--signing-key", str(alice.path), "--signing-format", "ssh")  # fmt: skip
        assert promoted.returncode == 0, promoted.stderr
        wait_until(
            lambda: server.predict(MODEL, body).headers.get("x-model-version") == "v1.2.0",
            30,
            "the signed promotion to serve",
        )
        assert refused() == []  # superseded by a trusted assignment

        _check_unsigned_deregistration(server, repo)
        logs = server.logs()
    assert "not followed: unsigned" in logs
    journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert {(e["kind"], e["version"]) for e in journal if e["kind"] == "refused"} == {
        ("refused", "v1.1.0"),
        ("refused", "v1.2.0"),
    }

    which = _cli("which", MODEL, "prod", "--trusted", "--registry", repo, "--config", str(config))
    assert which.returncode == 0, which.stderr
    assert "v1.2.0" in which.stdout and "promoted by alice@example.com" in which.stdout
    check = _cli("check", "--verify-signatures", "--registry", repo, "--config", str(config))
    assert check.returncode == 1
    assert f"{MODEL}#prod#2: unsigned" in check.stdout
    assert "not an allowed signer" in check.stdout
    assert _cli("check", "--registry", repo).returncode == 0
    _check_show_and_history(repo, config)


def _check_unsigned_deregistration(server: ServerProcess, repo: str) -> None:
    """Deregistering prod's version takes it out of service as surely as an assignment
    puts one in: unsigned, it is refused and reported, and v1.2.0 keeps serving."""

    def refused() -> list[dict[str, object]]:
        return server.get(f"/models/{MODEL}").body["sync"]["untrusted"]  # type: ignore[no-any-return]

    withdrawn = _cli("deregister", MODEL, "--version", "v1.2.0", "--registry", repo)
    assert withdrawn.returncode == 0, withdrawn.stderr
    wait_until(lambda: len(refused()) == 1, 30, "the refused deregistration in /models")
    (dereg,) = refused()
    assert (dereg["event"], dereg["version"], dereg["status"]) == (
        "deregistration", "v1.2.0", "unsigned",
    )  # fmt: skip
    answer = server.predict(MODEL, {"inputs": example_rows(1)})
    assert answer.headers["x-model-version"] == "v1.2.0"


def _check_show_and_history(repo: str, config: Path) -> None:
    # Who signed what, and whether it verified, in `registry show` and `history`.
    show = _cli("show", MODEL, "--registry", repo, "--config", str(config))
    assert show.returncode == 0, show.stderr
    (prod_row,) = [line for line in show.stdout.splitlines() if line.startswith("prod ")]
    assert "v1.2.0" in prod_row and "verified: alice@example.com (SHA256:" in prod_row
    assert "not followed: deregistration" in show.stdout
    history = _cli("history", MODEL, "--registry", repo, "--config", str(config), "--json")
    assert history.returncode == 0, history.stderr
    signatures = {e["tag"]: e["signature"] for e in json.loads(history.stdout)}
    assert signatures[f"{MODEL}#prod#2"]["status"] == "unsigned"
    assert signatures[f"{MODEL}#prod#3"]["status"] == "untrusted"
    assert signatures[f"{MODEL}#prod#4"]["signed_by"].startswith("alice@example.com")
