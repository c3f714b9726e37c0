from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_sync.errors import FetchError
from registry_sync.package import uri_fetch


def test_a_file_uri_is_verified_before_it_is_put_in_place(tmp_path: Path) -> None:
    source = tmp_path / "blob"
    source.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    dest = tmp_path / "pkg" / "model.pkl"
    done = uri_fetch.fetch_uri(source.as_uri(), dest, sha256=digest, size_bytes=7)
    assert dest.read_bytes() == b"weights" and done.attempts == 1
    wrong = tmp_path / "pkg" / "other.pkl"
    with pytest.raises(FetchError, match="sha256"):
        uri_fetch.fetch_uri(source.as_uri(), wrong, sha256="0" * 64, size_bytes=7)
    with pytest.raises(FetchError, match="records 8"):
        uri_fetch.fetch_uri(source.as_uri(), wrong, sha256=digest, size_bytes=8)
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == ["model.pkl"]


def test_transient_failures_are_retried_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def flaky(uri: str, expected: int) -> Iterator[bytes]:
        calls.append(1)
        if len(calls) < 3:
            raise uri_fetch._TransientError("HTTP 503")
        yield b"ok"

    monkeypatch.setattr(uri_fetch, "_chunks", flaky)
    digest = hashlib.sha256(b"ok").hexdigest()
    slept: list[float] = []
    done = uri_fetch.fetch_uri(
        "https://store.example/m", tmp_path / "m", sha256=digest, size_bytes=2, sleep=slept.append
    )
    assert done.attempts == 3 and slept == [0.5, 1.0]
    calls.clear()
    with pytest.raises(FetchError, match="gave up after 2 attempts: HTTP 503"):
        uri_fetch.fetch_uri(
            "https://store.example/m", tmp_path / "n", sha256=digest, size_bytes=2,
            retries=2, sleep=slept.append,
        )  # fmt: skip


def test_credentials_and_signatures_never_appear_in_what_is_shown() -> None:
    shown = uri_fetch.redact_uri("https://user:pw@store.example/a/b.pkl?X-Amz-Signature=abc")
    assert shown == "https://store.example/a/b.pkl"


def test_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="scheme 'ftp'"):
        uri_fetch.fetch_uri("ftp://x/y", tmp_path / "y", sha256="0" * 64, size_bytes=1)
