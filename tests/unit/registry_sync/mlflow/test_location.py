from __future__ import annotations

import base64

import pytest

from registry_sync.errors import NotARegistryError
from registry_sync.mlflow.location import MlflowLocation


def test_a_token_from_the_environment_is_a_bearer_header_and_never_shown() -> None:
    found = MlflowLocation.parse(
        "mlflow+https://mlflow.example:5000/", {"MLFLOW_TRACKING_TOKEN": "s3cret"}
    )
    assert found.base_url == "https://mlflow.example:5000"
    assert found.authorization == "Bearer s3cret"
    assert "s3cret" not in found.display and "s3cret" not in repr(found)


def test_basic_auth_from_the_environment_or_the_url() -> None:
    env = {"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "pw"}
    found = MlflowLocation.parse("mlflow+http://127.0.0.1:5000", env)
    assert found.authorization == "Basic " + base64.b64encode(b"ann:pw").decode()
    in_url = MlflowLocation.parse("mlflow+http://bob:pa%40ss@127.0.0.1:5000/prefix", {})
    assert in_url.authorization == "Basic " + base64.b64encode(b"bob:pa@ss").decode()
    assert in_url.base_url == "http://127.0.0.1:5000/prefix"
    assert "pa" not in in_url.display.split("//")[1].split("@")[0]


def test_not_an_mlflow_uri() -> None:
    with pytest.raises(NotARegistryError):
        MlflowLocation.parse("http://127.0.0.1:5000", {})
