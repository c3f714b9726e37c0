"""Reading and validating model packages: every problem gets its own, named error."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from registry_sync.errors import (
    DigestMismatchError,
    ManifestError,
    MissingFileError,
    PackageError,
    SizeMismatchError,
)
from registry_sync.package.manifest import Manifest
from registry_sync.package.read import (
    encode_manifest,
    package_digest,
    read_package,
    sha256_file,
    write_manifest,
)
from tests.models import save_sklearn_package


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sklearn_package(tmp_path_factory.mktemp("saved") / "pkg", export_onnx=True)


@pytest.fixture
def package(saved: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid package that the test may break."""
    return Path(shutil.copytree(saved, tmp_path / "pkg"))


def edit_manifest(package: Path, change: dict) -> None:
    data = yaml.safe_load((package / "model.yaml").read_text())
    data.update(change)
    (package / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def test_valid_package_reads_with_digest_of_the_exact_manifest_bytes(package: Path) -> None:
    read = read_package(package)
    expected = "sha256:" + hashlib.sha256((package / "model.yaml").read_bytes()).hexdigest()
    assert read.digest == expected == package_digest(package)
    assert read.manifest.name == "cost_predictor"
    assert read.manifest.format == "sklearn"
    assert [f.path for f in read.manifest.files] == ["model.skops", "model.onnx"]
    assert read.path == package


def test_sha256_file_streams_to_the_same_digest_as_hashing_all_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000  # larger than one read chunk
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_a_file_instead_of_a_folder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text("name: x\n")
    with pytest.raises(ManifestError, match="not a folder"):
        read_package(tmp_path / "model.yaml")


def test_a_folder_without_model_yaml_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no model\.yaml"):
        read_package(tmp_path)


def test_yaml_that_does_not_parse_is_rejected(package: Path) -> None:
    (package / "model.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        read_package(package)


def test_unknown_field_is_named(package: Path) -> None:
    edit_manifest(package, {"colour": "blue"})
    with pytest.raises(ManifestError, match=r"model\.yaml: .*unknown field `colour`"):
        read_package(package)


def test_missing_field_is_named(package: Path) -> None:
    data = yaml.safe_load((package / "model.yaml").read_text())
    del data["signature"]
    (package / "model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match="missing required field `signature`"):
        read_package(package)


def test_mistyped_field_error_carries_the_path_inside_the_manifest(package: Path) -> None:
    data = yaml.safe_load((package / "model.yaml").read_text())
    data["signature"]["inputs"][0]["type"] = "decimal"
    (package / "model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError) as caught:
        read_package(package)
    assert r"model.yaml: $.signature.inputs[0].type: expected one of" in str(caught.value)
    assert caught.value.path == str(package)


def test_listed_file_that_is_absent_raises_missing_file(package: Path) -> None:
    (package / "model.onnx").unlink()
    with pytest.raises(MissingFileError) as caught:
        read_package(package)
    assert caught.value.file == "model.onnx"


def test_changed_bytes_of_the_same_size_raise_digest_mismatch(package: Path) -> None:
    data = bytearray((package / "model.skops").read_bytes())
    data[-2] ^= 0xFF
    (package / "model.skops").write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError) as caught:
        read_package(package)
    assert caught.value.file == "model.skops"
    assert caught.value.expected == read_package(package, verify_digests=False).expected_sha256(
        "model.skops"
    )
    assert caught.value.actual == sha256_file(package / "model.skops")


def test_a_file_of_the_wrong_size_raises_size_mismatch(package: Path) -> None:
    with (package / "model.skops").open("ab") as handle:
        handle.write(b"tail")
    with pytest.raises(SizeMismatchError, match=r"size of 'model\.skops' is \d+ bytes"):
        read_package(package)


def test_verify_digests_false_skips_hashing_but_not_presence(package: Path) -> None:
    with (package / "model.skops").open("ab") as handle:
        handle.write(b"tail")
    assert read_package(package, verify_digests=False).manifest.name == "cost_predictor"
    (package / "model.skops").unlink()
    with pytest.raises(MissingFileError):
        read_package(package, verify_digests=False)


@pytest.mark.parametrize("escaping", ["../model.pkl", "/etc/passwd", "sub/../../x", "a\\..\\b"])
def test_file_paths_that_escape_the_package_are_rejected(package: Path, escaping: str) -> None:
    data = yaml.safe_load((package / "model.yaml").read_text())
    data["files"][0]["path"] = escaping
    (package / "model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match="escapes the package folder"):
        read_package(package)


def test_a_symlink_leading_out_of_the_package_is_rejected(package: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.pkl"
    outside.write_bytes((package / "model.skops").read_bytes())
    (package / "model.skops").unlink()
    (package / "model.skops").symlink_to(outside)
    with pytest.raises(ManifestError, match=r"'model\.skops' escapes the package folder"):
        read_package(package)


def test_onnx_export_whose_file_is_not_listed_is_rejected(package: Path) -> None:
    data = yaml.safe_load((package / "model.yaml").read_text())
    data["files"] = [f for f in data["files"] if f["path"] != "model.onnx"]
    (package / "model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=r"onnx_export path 'model\.onnx' is not in files"):
        read_package(package)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"hp": 110.0, "wt": 2.6, "disp": 160.0}, "lacks required input 'qsec'"),
        ({"hp": 1.0, "wt": 1.0, "disp": 1.0, "qsec": 1.0, "extra": 1}, "not in the signature"),
        ({"hp": "fast", "wt": 1.0, "disp": 1.0, "qsec": 1.0}, "hp='fast' is not a double"),
    ],
)
def test_input_example_that_does_not_match_the_signature_is_rejected(
    package: Path, row: dict, message: str
) -> None:
    edit_manifest(package, {"input_example": [row]})
    with pytest.raises(ManifestError, match=message):
        read_package(package)


def test_every_package_error_is_a_package_error(package: Path) -> None:
    (package / "model.skops").unlink()
    with pytest.raises(PackageError, match=str(package)):
        read_package(package)


def test_written_manifest_decodes_back_to_an_equal_manifest(package: Path) -> None:
    manifest = read_package(package).manifest
    out = package.parent / "copy"
    out.mkdir()
    write_manifest(manifest, out)
    import msgspec

    again = msgspec.yaml.decode((out / "model.yaml").read_bytes(), type=Manifest)
    assert again == manifest
    assert encode_manifest(again) == (out / "model.yaml").read_bytes()


def test_manifest_yaml_is_readable_with_stable_key_order(package: Path) -> None:
    text = (package / "model.yaml").read_text()
    keys = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert keys[:4] == ["schema_version", "name", "format", "files"]
    assert "categories: null" not in text  # defaults are left out
    assert "labels: [mtcars, tests]" in text


def test_a_saved_package_states_its_positional_order(package: Path) -> None:
    data = yaml.safe_load((package / "model.yaml").read_text())
    names = [column["name"] for column in data["signature"]["inputs"]]
    assert data["signature"]["positional_order"] == names


def test_a_model_yaml_without_positional_order_loads_with_the_inputs_order(package: Path) -> None:
    # Packages written before the field existed: positional requests keep the meaning they had
    # (the order of `inputs`), and the bytes (so the digest) stay as written.
    data = yaml.safe_load((package / "model.yaml").read_text())
    del data["signature"]["positional_order"]
    (package / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    read = read_package(package)
    assert read.manifest.signature.positional_order is None
    names = tuple(spec.name for spec in read.manifest.signature.inputs)
    assert read.manifest.signature.positional() == names
    assert b"positional_order" not in encode_manifest(read.manifest)


def test_a_positional_order_that_does_not_fit_the_inputs_is_rejected(package: Path) -> None:
    data = yaml.safe_load((package / "model.yaml").read_text())
    data["signature"]["positional_order"] = ["hp", "hp"]
    (package / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ManifestError, match=r"\$\.signature\.positional_order: names an input"):
        read_package(package)
