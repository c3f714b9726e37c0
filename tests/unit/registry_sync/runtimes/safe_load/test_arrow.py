"""pyarrow in a pickle: only its array and type reconstructors, and only with pyarrow there.
(Loading real pyarrow-backed models: tests/integration/test_model_file_arrow.py.)"""

from __future__ import annotations

import importlib.util

import pytest

from registry_sync.runtimes.safe_load.policy import RefusedError
from registry_sync.runtimes.safe_load.unpickler import restricted_loads


def _calling(module: str, name: str) -> bytes:
    """A protocol-0 pickle that calls module.name() (built by hand: no pyarrow needed)."""
    return f"c{module}\n{name}\n(tR.".encode()


@pytest.mark.parametrize(
    ("module", "name"),
    [("pyarrow.fs", "LocalFileSystem"), ("pyarrow.lib", "memory_map"), ("pyarrow", "csv")],
)
def test_anything_of_pyarrow_but_its_reconstructors_is_refused_before_import(
    module: str, name: str
) -> None:
    with pytest.raises(RefusedError, match="'pyarrow' is not a library the runtimes load"):
        restricted_loads(_calling(module, name))


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow is here")
def test_a_pyarrow_array_without_pyarrow_installed_says_how_to_get_it() -> None:
    with pytest.raises(RefusedError, match=r"stageserve\[arrow\]") as caught:
        restricted_loads(_calling("pyarrow.lib", "_restore_array"))
    assert caught.value.subject == "pyarrow.lib._restore_array"
