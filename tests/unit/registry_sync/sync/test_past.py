"""The folder protocol between a sidecar gateway and the sync for past versions' packages."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from registry_sync.errors import HistoryQueryError
from registry_sync.sync.past import PastPackage, answer_pending, ask


class _Past:
    """Stands in for RegistryPastPackages: answers v1 of `cost`, nothing else."""

    def fetch(self, model: str, **what: object) -> PastPackage:
        if model != "cost":
            raise HistoryQueryError(f"{model} is not in the registry", reason="not_found")
        return PastPackage(model=model, version="v1", digest="sha256:d", package_path="/p")


def test_without_a_sync_listening_the_gateway_is_told_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(HistoryQueryError) as never:
        ask(tmp_path, "cost", version="v1", timeout_s=30)
    assert never.value.reason == "no_sync"
    alive = tmp_path / ".sync-alive"
    alive.touch()
    stale = time.time() - 60
    os.utime(alive, (stale, stale))
    with pytest.raises(HistoryQueryError) as gone:
        ask(tmp_path, "cost", version="v1", timeout_s=30)
    assert gone.value.reason == "unanswered"
    assert time.monotonic() - started < 5  # never the 30 s timeout
    assert list(tmp_path.glob("*.request.json")) == []


def test_requests_are_answered_and_failures_carry_their_reason(tmp_path: Path) -> None:
    import threading

    (tmp_path / ".sync-alive").touch()
    answered: list[PastPackage | HistoryQueryError] = []

    def gateway(model: str) -> None:
        try:
            answered.append(ask(tmp_path, model, version="v1", timeout_s=10))
        except HistoryQueryError as exc:
            answered.append(exc)

    threads = [threading.Thread(target=gateway, args=(m,)) for m in ("cost", "churn")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    done = 0
    while done < 2 and time.monotonic() < deadline:
        done += answer_pending(_Past(), tmp_path)  # type: ignore[arg-type]
        time.sleep(0.01)
    for t in threads:
        t.join(10)
    packages = [a for a in answered if isinstance(a, PastPackage)]
    errors = [a for a in answered if isinstance(a, HistoryQueryError)]
    assert [p.version for p in packages] == ["v1"]
    assert [e.reason for e in errors] == ["not_found"]
    assert not list(tmp_path.glob("*.json"))  # requests and answers are cleaned up
