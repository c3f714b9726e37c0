"""refuse_duplicate_keys: the ':' count proves most bodies clean; the exact parse decides
the rest. Checked on arbitrary JSON (hypothesis), with and without a repeated key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InputValidationError, MalformedRequestError
from gateway.schema.duplicate_keys import refuse_duplicate_keys

_text = st.text(alphabet=st.sampled_from('ab:"\\ {}[],'), max_size=4)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=12,
)


def _keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys(v) for v in value)
    return 0


@given(_json, st.sampled_from([", ", ","]))
def test_a_body_without_repeated_keys_passes_whatever_its_strings_hold(
    value: Any, separator: str
) -> None:
    body = json.dumps(value, separators=(separator, ": ")).encode()
    refuse_duplicate_keys(body, _keys(value))
    refuse_duplicate_keys(body, 0)  # any lower bound will do: then it parses exactly


@given(st.dictionaries(_text, _json, min_size=1, max_size=3), _json)
def test_a_repeated_key_is_always_found(obj: dict[str, Any], again: Any) -> None:
    key = next(iter(obj))
    body = json.dumps(obj)[:-1] + ", " + json.dumps(key) + ": " + json.dumps(again) + "}"
    with pytest.raises(InputValidationError, match="appears twice"):
        refuse_duplicate_keys(body.encode(), _keys(obj))


def test_too_deep_for_the_exact_parse_is_malformed() -> None:
    body = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b', "b": "x:y"}'
    with pytest.raises(MalformedRequestError):
        refuse_duplicate_keys(body, 2)
