"""`stageserve serve` refuses to start without something to serve, with one clear line."""

from __future__ import annotations

import pytest

from gateway.cli import main


def test_serve_without_cache_or_registry_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STAGESERVE_CACHE_DIR", raising=False)
    monkeypatch.delenv("STAGESERVE_REGISTRY", raising=False)
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "nothing to serve" in err


def test_a_bad_setting_names_its_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGESERVE_MAX_ROWS", "many")
    assert main(["serve", "--cache", "/nonexistent"]) == 1
    assert "max_rows" in capsys.readouterr().err


def test_registry_urls_are_logged_without_credentials() -> None:
    # serve logs the registry through the same redaction the registry's own errors use.
    from gateway.serve_cli import redact_url

    assert redact_url("https://bot:s3cret@git.example.com/models.git") == (
        "https://bot:***@git.example.com/models.git"
    )
    assert redact_url("/srv/registry") == "/srv/registry"
