"""Signed stage assignments under a trust policy, with real keys (ssh-keygen, gpg) and git.

Trusted, untrusted, unsigned, signed by a revoked key, and tags whose object was rewritten
or copied under another name: only trusted assignments count in a protected stage, so the
newest trusted one keeps serving, and each refusal says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_sync.errors import NoVersionInStageError, SettingsError
from registry_sync.registry import queries, writer
from registry_sync.registry.check import check_registry
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.trust import TagTrust, TrustPolicy, TrustRule
from tests.registry_packages import git, init_registry, write_package
from tests.signing_keys import (
    SshKey,
    gpg_available,
    make_gpg_key,
    make_ssh_key,
    stop_gpg_agent,
    write_signers,
)

MODEL = "cost_predictor"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    folder = tmp_path_factory.mktemp("keys")
    return {
        name: make_ssh_key(folder, f"{name}@example.com") for name in ("alice", "bob", "mallory")
    }


@pytest.fixture
def reg(tmp_path: Path, keys: dict[str, SshKey]) -> GitRegistry:
    registry = GitRegistry(init_registry(tmp_path / "registry"))
    for n in (1, 2, 3):
        package = write_package(tmp_path / f"pkg{n}", payload=f"weights v{n}".encode())
        writer.register(registry, MODEL, package, version=f"v1.{n}.0")
    signers = write_signers(tmp_path / "allowed_signers", keys["alice"], keys["bob"])
    revoked = tmp_path / "revoked_keys"
    revoked.write_text(keys["bob"].public + "\n")  # bob's key was compromised
    policy = TrustPolicy(
        [TrustRule(stages=["prod"], allowed_signers=str(signers), revoked_keys=str(revoked))]
    )
    registry.trust = TagTrust(registry.git, policy)
    return registry


def _plain(reg: GitRegistry) -> GitRegistry:
    """The same registry read without the trust policy (what gto sees)."""
    return GitRegistry(reg.path)


def test_a_trusted_assignment_serves_and_names_its_signer(
    reg: GitRegistry, keys: dict[str, SshKey]
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    found = queries.which(reg, MODEL, "prod")
    assert found.version == "v1.1.0"
    assert found.signed_by is not None and found.signed_by.startswith("alice@example.com (SHA256:")
    # Unprotected stages are not checked: an unsigned dev assignment counts.
    writer.assign(reg, MODEL, "dev", "v1.2.0")
    assert queries.which(reg, MODEL, "dev").version == "v1.2.0"
    assert queries.which(reg, MODEL, "dev").signed_by is None


@pytest.mark.parametrize(
    ("signer", "status", "reason"),
    [
        (None, "unsigned", "no signature"),
        ("mallory", "untrusted", "not an allowed signer"),
        ("bob", "untrusted", "revoked"),
    ],
)
def test_a_newer_assignment_that_is_not_trusted_is_not_followed(
    reg: GitRegistry, keys: dict[str, SshKey], signer: str | None, status: str, reason: str
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    sign = keys[signer].signing if signer else None
    written = writer.assign(reg, MODEL, "prod", "v1.2.0", sign=sign)
    assert queries.which(_plain(reg), MODEL, "prod").version == "v1.2.0"  # what gto would say
    assert queries.which(reg, MODEL, "prod").version == "v1.1.0"  # what the policy allows
    (refused,) = queries.refused_assignments(reg)
    assert (refused.tag, refused.version, refused.status) == (written.tag, "v1.2.0", status)
    assert reason in refused.reason
    assert refused.serving == "v1.1.0"
    assert refused.serving_signed_by and refused.serving_signed_by.startswith("alice@")
    assert "v1.1.0 keeps serving" in refused.describe()


def test_an_untrusted_unassignment_does_not_empty_a_protected_stage(
    reg: GitRegistry, keys: dict[str, SshKey]
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    writer.unassign(reg, MODEL, "prod")
    assert queries.which(reg, MODEL, "prod").version == "v1.1.0"


def test_a_tag_whose_object_was_rewritten_or_renamed_is_not_trusted(
    reg: GitRegistry, keys: dict[str, SshKey]
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    signed = writer.assign(reg, MODEL, "prod", "v1.2.0", sign=keys["alice"].signing)
    repo = reg.path
    text = git(repo, "cat-file", "tag", signed.tag)
    v3 = git(repo, "rev-list", "-n1", f"{MODEL}@v1.3.0").strip()
    # 1. The same signed text pointing at another commit, under a new, later name.
    forged = text.replace(signed.commit, v3).replace(signed.tag, f"{MODEL}#prod#90")
    obj = git(repo, "mktag", input_text=forged).strip()
    git(repo, "update-ref", f"refs/tags/{MODEL}#prod#90", obj)
    # 2. The untouched signed object copied under another name (a replay).
    git(
        repo, "update-ref", f"refs/tags/{MODEL}#prod#91", git(repo, "rev-parse", signed.tag).strip()
    )
    refused = {r.tag: r for r in queries.refused_assignments(reg)}
    assert set(refused) == {f"{MODEL}#prod#90", f"{MODEL}#prod#91"}
    assert refused[f"{MODEL}#prod#91"].reason.startswith("the signed tag object is named")
    assert queries.which(reg, MODEL, "prod").version == "v1.2.0"


def test_check_verify_signatures_reports_every_untrusted_tag_of_a_protected_stage(
    reg: GitRegistry, keys: dict[str, SshKey]
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    assert check_registry(reg, verify_signatures=True).ok
    untrusted = writer.assign(reg, MODEL, "prod", "v1.2.0", sign=keys["mallory"].signing)
    writer.assign(reg, MODEL, "prod", "v1.3.0", sign=keys["alice"].signing)
    report = check_registry(reg, verify_signatures=True)
    # Even superseded by a trusted assignment, an untrusted tag in a protected stage is named.
    assert [p.subject for p in report.problems] == [untrusted.tag]
    assert "not an allowed signer" in report.problems[0].message
    assert check_registry(_plain(reg)).ok  # without the flag, signatures are not checked


def test_gto_reads_signed_tags_like_any_other(reg: GitRegistry, keys: dict[str, SshKey]) -> None:
    written = writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    (event,) = [e for e in queries.history(_plain(reg), MODEL) if e.tag == written.tag]
    assert event.message == f"Assigning stage prod to artifact {MODEL} version v1.1.0"


def test_a_policy_naming_no_signers_or_missing_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no allowed_signers"):
        TrustPolicy([TrustRule(stages=["prod"])])
    with pytest.raises(SettingsError, match="no such file"):
        TrustPolicy([TrustRule(stages=["prod"], allowed_signers=str(tmp_path / "nope"))])


@pytest.mark.skipif(not gpg_available(), reason="gpg is not installed (.ci/run installs gnupg)")
def test_openpgp_signatures_count_only_for_the_listed_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = GitRegistry(init_registry(tmp_path / "registry"))
    for n in (1, 2):
        package = write_package(tmp_path / f"pkg{n}", payload=f"weights v{n}".encode())
        writer.register(registry, MODEL, package, version=f"v1.{n}.0")
    release = make_gpg_key(tmp_path, "release@example.com")
    stranger = make_gpg_key(tmp_path, "stranger@example.com")
    policy = TrustPolicy(
        [
            TrustRule(
                stages=["prod"],
                gpg_keys=[release.fingerprint],
                gpg_keyring=str(release.public_file),
            )
        ]
    )
    registry.trust = TagTrust(registry.git, policy)
    monkeypatch.setenv("GNUPGHOME", str(release.home))
    writer.assign(registry, MODEL, "prod", "v1.1.0", sign=release.signing)
    monkeypatch.setenv("GNUPGHOME", str(stranger.home))
    writer.assign(registry, MODEL, "prod", "v1.2.0", sign=stranger.signing)
    found = queries.which(registry, MODEL, "prod")
    assert found.version == "v1.1.0"
    assert found.signed_by is not None and "release@example.com" in found.signed_by
    (refused,) = queries.refused_assignments(registry)
    assert refused.version == "v1.2.0" and refused.status == "untrusted"
    registry.trust.close()
    for key in (release, stranger):
        stop_gpg_agent(key)


def test_an_unsigned_deregistration_of_the_version_serving_a_protected_stage_is_refused(
    reg: GitRegistry, keys: dict[str, SshKey]
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    writer.assign(reg, MODEL, "dev", "v1.2.0")
    unsigned = writer.deregister(reg, MODEL, "v1.1.0")
    # Without the policy (gto's view) prod is emptied; under it v1.1.0 keeps serving.
    with pytest.raises(NoVersionInStageError):
        queries.which(_plain(reg), MODEL, "prod")
    assert queries.which(reg, MODEL, "prod").version == "v1.1.0"
    (refused,) = queries.refused_assignments(reg)
    assert (refused.tag, refused.event, refused.stage) == (unsigned.tag, "deregistration", "prod")
    assert (refused.version, refused.status, refused.serving) == ("v1.1.0", "unsigned", "v1.1.0")
    assert refused.describe().startswith(f"deregistration {unsigned.tag} (v1.1.0) not followed")
    assert [p.subject for p in check_registry(reg, verify_signatures=True).problems] == [
        unsigned.tag
    ]
    # A version no protected stage serves is withdrawn without a signature (dev is open).
    writer.deregister(reg, MODEL, "v1.2.0")
    with pytest.raises(NoVersionInStageError):
        queries.which(reg, MODEL, "dev")
    assert len(queries.refused_assignments(reg)) == 1


@pytest.mark.parametrize("signer", ["mallory", "alice"])
def test_a_deregistration_of_prods_version_counts_only_when_an_allowed_signer_signed_it(
    reg: GitRegistry, keys: dict[str, SshKey], signer: str
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    writer.assign(reg, MODEL, "prod", "v1.2.0", sign=keys["alice"].signing)
    writer.deregister(reg, MODEL, "v1.2.0", sign=keys[signer].signing)
    served = queries.which(reg, MODEL, "prod").version
    if signer == "alice":  # trusted: gto's rule applies, prod falls back to v1.1.0
        assert served == "v1.1.0" and not queries.refused_assignments(reg)
    else:
        assert served == "v1.2.0"
        (refused,) = queries.refused_assignments(reg)
        assert refused.status == "untrusted" and "not an allowed signer" in refused.reason


def test_an_unsigned_deprecation_does_not_empty_a_protected_stage(
    reg: GitRegistry, keys: dict[str, SshKey]
) -> None:
    writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    writer.assign(reg, MODEL, "dev", "v1.2.0")
    unsigned = writer.deprecate(reg, MODEL)
    assert unsigned is not None
    assert _plain(reg).show(MODEL).deprecated  # what gto would say
    assert queries.which(reg, MODEL, "prod").version == "v1.1.0"
    assert queries.which(reg, MODEL, "dev").version == "v1.2.0"  # the model is not deprecated
    (refused,) = queries.refused_assignments(reg)
    assert (refused.tag, refused.event, refused.stage) == (unsigned.tag, "deprecation", "prod")
    assert (refused.version, refused.status) == ("v1.1.0", "unsigned")
    # Signed by an allowed signer, the deprecation counts: nothing serves.
    writer.deprecate(reg, MODEL, sign=keys["alice"].signing)
    with pytest.raises(NoVersionInStageError):
        queries.which(reg, MODEL, "prod")


def test_show_and_history_name_who_signed_each_assignment_and_whether_it_verified(
    reg: GitRegistry, keys: dict[str, SshKey]
) -> None:
    trusted = writer.assign(reg, MODEL, "prod", "v1.1.0", sign=keys["alice"].signing)
    refused = writer.assign(reg, MODEL, "prod", "v1.2.0", sign=keys["mallory"].signing)
    dev = writer.assign(reg, MODEL, "dev", "v1.3.0", sign=keys["mallory"].signing)

    detail = queries.show(reg, MODEL)
    stages = {a.stage: a for a in detail.assignments}
    assert (stages["prod"].tag, stages["prod"].version) == (trusted.tag, "v1.1.0")
    prod = stages["prod"].signature
    assert prod is not None and prod.status == "trusted"
    assert prod.signed_by and prod.signed_by.startswith("alice@example.com (SHA256:")
    # dev is not protected: its tag is signed, and nothing says it verified.
    assert stages["dev"].signed and stages["dev"].signature is None
    assert [(u.tag, u.status) for u in detail.untrusted] == [(refused.tag, "untrusted")]

    events = {e.tag: e for e in queries.history(reg, MODEL)}
    assert events[refused.tag].signature is not None  # a refused tag is history too
    assert events[refused.tag].signature.status == "untrusted"
    assert "not an allowed signer" in events[refused.tag].signature.describe()
    assert events[trusted.tag].signature == prod
    assert events[dev.tag].signed and events[dev.tag].signature is None
    registration = next(e for e in events.values() if e.event == "registration")
    assert not registration.signed and registration.signature is None
    # Without a policy: whether each tag is signed, nothing verified.
    plain = {e.tag: e for e in queries.history(_plain(reg), MODEL)}
    assert plain[trusted.tag].signed and plain[trusted.tag].signature is None
