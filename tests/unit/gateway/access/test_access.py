"""Credentials and the access policy, one class at a time (no sockets)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from gateway.access import Access, Principal
from gateway.access.api_keys import ApiKeyStore
from gateway.access.jwt_tokens import JwtVerifier
from gateway.access.policy import AccessPolicy
from gateway.errors import ForbiddenError, SettingsError, UnauthorizedError, UnknownModelError
from gateway.settings import AccessRule
from tests.access_keys import SigningKey, write_jwks, write_keys

POLICY = {
    "pricing": [AccessRule(actions=["predict", "read"], models=["cost_*"], stages=["prod"])],
    "auditor": [AccessRule(actions=["read"])],
    "monitoring": [AccessRule(actions=["metrics"])],
}
MODELS = {"cost_predictor": ["dev", "prod"], "churn": ["prod"]}


def _access(tmp_path: Path, **kwargs: object) -> Access:
    keys = write_keys(
        tmp_path / "keys.yaml",
        {"k-pricing": ("pricing-svc", ["pricing"]), "k-prom": ("prometheus", ["monitoring"])},
    )
    return Access(AccessPolicy(POLICY), keys=ApiKeyStore(keys), **kwargs)  # type: ignore[arg-type]


def test_an_api_key_is_known_by_its_hash_only(tmp_path: Path) -> None:
    access = _access(tmp_path)
    assert "k-pricing" not in (tmp_path / "keys.yaml").read_text()
    assert access.authenticate(b"Bearer k-pricing", None).name == "pricing-svc"
    assert access.authenticate(None, b"k-pricing").roles == ("pricing",)
    with pytest.raises(UnauthorizedError) as caught:
        access.authenticate(b"Bearer wrong", None)
    assert caught.value.error == "invalid_token"
    with pytest.raises(UnauthorizedError) as caught:
        access.authenticate(None, None)
    assert caught.value.error is None
    with pytest.raises(UnauthorizedError):
        access.authenticate(b"Basic dXNlcjpwYXNz", None)


def test_the_key_file_is_reloaded_when_it_changes_and_a_broken_one_keeps_the_old_keys(
    tmp_path: Path,
) -> None:
    access = _access(tmp_path)
    assert access.keys is not None
    write_keys(tmp_path / "keys.yaml", {"k-new": ("new-svc", ["pricing"])})
    assert access.keys.refresh()
    assert access.authenticate(None, b"k-new").name == "new-svc"
    with pytest.raises(UnauthorizedError):
        access.authenticate(None, b"k-pricing")
    (tmp_path / "keys.yaml").write_text("- principal: x\n  sha256: not-hex\n")
    assert not access.keys.refresh()
    assert access.authenticate(None, b"k-new").name == "new-svc"


def test_a_bad_key_file_at_start_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text("- principal: x\n  sha256: 1234\n")
    with pytest.raises(SettingsError, match="api_keys_file"):
        ApiKeyStore(tmp_path / "keys.yaml")


def test_unknown_models_and_forbidden_ones_answer_alike_and_stages_get_403(
    tmp_path: Path,
) -> None:
    access = _access(tmp_path)
    pricing = access.authenticate(None, b"k-pricing")
    access.check(pricing, "predict", "cost_predictor", "prod", lambda: MODELS)
    with pytest.raises(ForbiddenError) as forbidden:
        access.check(pricing, "predict", "cost_predictor", "dev", lambda: MODELS)
    assert forbidden.value.details == {
        "action": "predict",
        "model": "cost_predictor",
        "stage": "dev",
    }
    hidden: list[UnknownModelError] = []
    for model in ("churn", "no_such_model"):
        with pytest.raises(UnknownModelError) as caught:
            access.check(pricing, "predict", model, "prod", lambda: MODELS)
        hidden.append(caught.value)
    # Another team's model and a model that does not exist: the same answer, and neither
    # lists the other team's names.
    assert hidden[0].details == {"models": {"cost_predictor": ["dev", "prod"]}}
    assert hidden[0].message.replace("churn", "X") == hidden[1].message.replace(
        "no_such_model", "X"
    )


def test_metrics_need_the_metrics_action(tmp_path: Path) -> None:
    access = _access(tmp_path)
    access.check_metrics(access.authenticate(None, b"k-prom"))
    with pytest.raises(ForbiddenError, match="metrics"):
        access.check_metrics(access.authenticate(None, b"k-pricing"))


@pytest.fixture(scope="module")
def signers() -> dict[str, SigningKey]:
    return {alg: SigningKey(alg, f"kid-{alg}") for alg in ("RS256", "ES256", "EdDSA")}


def _verifier(tmp_path: Path, signers: dict[str, SigningKey], **kwargs: object) -> JwtVerifier:
    jwks = write_jwks(tmp_path / "jwks.json", *signers.values())
    options = {"issuer": "https://idp.test", "audience": "stageserve"} | kwargs
    return JwtVerifier(str(jwks), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_jwts_of_each_algorithm_verify_offline_and_map_claims_to_roles(
    tmp_path: Path, signers: dict[str, SigningKey], algorithm: str
) -> None:
    verifier = _verifier(tmp_path, signers)
    token = signers[algorithm].token(roles=["pricing"], azp="billing-app")
    principal = verifier.verify(token)
    assert principal == Principal(name="alice", roles=("pricing",), client="billing-app", via="jwt")
    assert verifier.verify(token) is principal  # remembered until it expires


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": -120}, "expired"),  # times are seconds from now, taken when the test runs
        ({"nbf": 120}, "not valid yet"),
        ({"aud": "another-service"}, "another audience"),
        ({"iss": "https://evil.test"}, "another issuer"),
        ({"exp": None}, "invalid token"),
    ],
)
def test_jwt_claims_are_checked(
    tmp_path: Path, signers: dict[str, SigningKey], claims: dict[str, object], reason: str
) -> None:
    now = int(time.time())
    claims = {
        k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v for k, v in claims.items()
    }
    verifier = _verifier(tmp_path, signers)
    with pytest.raises(UnauthorizedError, match=reason):
        verifier.verify(signers["ES256"].token(**claims))


def test_small_clock_skew_is_tolerated(tmp_path: Path, signers: dict[str, SigningKey]) -> None:
    verifier = _verifier(tmp_path, signers, leeway_s=30.0)
    token = signers["RS256"].token(exp=int(time.time()) - 10, nbf=int(time.time()) + 10)
    assert verifier.verify(token).name == "alice"


def test_forged_and_confused_tokens_are_refused(
    tmp_path: Path, signers: dict[str, SigningKey]
) -> None:
    verifier = _verifier(tmp_path, {"RS256": signers["RS256"]})
    stranger = SigningKey("RS256", "kid-RS256")  # right kid, wrong key
    with pytest.raises(UnauthorizedError, match="invalid token"):
        verifier.verify(stranger.token())
    public_pem = signers["RS256"].jwk()["n"]  # HS256 with public material as the secret
    confused = jwt.encode({"sub": "x", "exp": time.time() + 60}, public_pem, algorithm="HS256")
    with pytest.raises(UnauthorizedError):
        verifier.verify(confused)
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none")
    with pytest.raises(UnauthorizedError):
        verifier.verify(unsigned)
    unknown = SigningKey("ES256", "kid-unknown")
    with pytest.raises(UnauthorizedError, match="signing key is not known"):
        verifier.verify(unknown.token())


def test_a_rotated_jwks_file_is_picked_up(tmp_path: Path, signers: dict[str, SigningKey]) -> None:
    verifier = _verifier(tmp_path, {"RS256": signers["RS256"]})
    newer = SigningKey("EdDSA", "kid-new")
    write_jwks(tmp_path / "jwks.json", newer)
    assert verifier.refresh()
    assert verifier.verify(newer.token()).name == "alice"
    with pytest.raises(UnauthorizedError):
        verifier.verify(signers["RS256"].token())
