"""unpickle_trust_signed: only a version whose assignment was signed by an allowed signer
loads without the allowlist; everything else stays restricted."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ModelLoadError
from gateway.pool.loaded import load_version
from registry_sync.package.read import read_package
from registry_sync.sync.snapshot import DesiredEntry
from tests.models import save_statsmodels_package
from tests.payloads import EvalPayload, payload_package, pickled


def _entry(package: Path, signed_by: str | None) -> DesiredEntry:
    return DesiredEntry(
        model="cost_predictor",
        stage="prod",
        version="v9.0.0",
        package_path=str(package),
        digest=read_package(package).digest,
        signed_by=signed_by,
    )


@pytest.mark.parametrize(
    ("signed_by", "trust_signed", "runs"),
    [(None, True, False), ("alice@example.com", False, False), ("alice@example.com", True, True)],
)
def test_only_signed_versions_load_unrestricted_and_only_when_asked(
    tmp_path: Path, signed_by: str | None, trust_signed: bool, runs: bool
) -> None:
    marker = tmp_path / "ran"
    good = save_statsmodels_package(tmp_path / "good")
    evil = payload_package(good, tmp_path / "evil", pickled(EvalPayload(marker)))
    with pytest.raises(ModelLoadError) as caught:  # the payload is no model: it fails anyway
        load_version(_entry(evil, signed_by), trust_signed=trust_signed)
    assert marker.exists() is runs
    assert ("refused builtins.eval" in caught.value.reason) is not runs
