"""Fuzzing a real server: never a 5xx, and answers the served OpenAPI document allows.

schemathesis generates requests for every operation of `/schema` (valid ones and invalid
ones); hypothesis generates V2 inference bodies (tensors of any name, shape, datatype and
data). A bounded number of examples each, derandomized: the same run every time, seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate

from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import save_classifier_package, save_onnx_package, save_statsmodels_package

pytestmark = pytest.mark.slow

# Per operation and generation mode: the predict operations (/predict, /v2 .../infer,
# /invocations) get most; the V2 body fuzz below goes further into tensors.
EXAMPLES = {"POST": 15, "GET": 3}
V2_EXAMPLES = 80
_SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "suppress_health_check": list(HealthCheck),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    cache = root / "cache"
    cache.mkdir()
    entries = [
        entry("cost", "prod", "v1.0.0", save_onnx_package(root / "cost")),
        entry("cost", "dev", "v2.0.0", save_onnx_package(root / "cost2", offset=10)),
        entry("sm", "prod", "v1.0.0", save_statsmodels_package(root / "sm", name="sm")),
        entry("gearbox", "prod", "v1.0.0", save_classifier_package(root / "gear")),
    ]
    write_state(cache, entries)
    env = {"STAGESERVE_AUDIT_PATH": str(root / "audit.jsonl"), "STAGESERVE_MAX_ROWS": "100"}
    with ServerProcess(cache, env=env) as srv:
        wait_until(lambda: srv.get("/readyz").status == 200, 60, "ready")
        yield srv


def _no_5xx_in_log(server: ServerProcess) -> None:
    assert "Traceback" not in server.logs()


def test_the_served_document_is_valid_openapi_and_names_every_route(
    server: ServerProcess,
) -> None:
    doc = server.get("/schema").body
    validate(doc)  # openapi-spec-validator: raises on any violation of OpenAPI 3.1
    paths = set(doc["paths"])
    for path in (
        "/predict/cost",
        "/predict/gearbox",
        "/models",
        "/models/{model}",
        "/models/{model}/shadow",
        "/models/{model}/performance",
        "/feedback/{model}",
        "/schema",
        "/v2",
        "/v2/health/ready",
        "/v2/models/cost/infer",
        "/v2/models/cost/versions/{version}/infer",
        "/invocations",
        "/ping",
        "/ui/models/{model}",
    ):
        assert path in paths, path
    stage = doc["paths"]["/predict/cost"]["post"]["parameters"][0]
    assert stage["schema"]["enum"] == ["dev", "prod"]


def test_an_empty_stage_is_refused_as_the_document_says(server: ServerProcess) -> None:
    body = json.dumps({"inputs": [{"hp": 1.0, "wt": 2.0, "disp": 3.0, "qsec": 4.0}]}).encode()
    for path in ("/predict/cost?stage=", "/v2/models/cost/infer?stage="):
        answer = server.request("POST", path, body, {"content-type": "application/json"})
        assert answer.status == 404, path
    split = {"dataframe_split": {"columns": [], "data": [[]]}}
    refused = server.request(
        "POST", "/predict/cost", json.dumps(split).encode(), {"content-type": "application/json"}
    )
    assert refused.status == 422


def test_no_operation_of_the_document_answers_a_5xx(server: ServerProcess) -> None:
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error, status_code_conformance

    base = f"http://127.0.0.1:{server.port}"
    schema = schemathesis.openapi.from_url(f"{base}/schema")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            examples = EXAMPLES.get(operation.method.upper(), 3)

            @settings(max_examples=examples, **_SETTINGS)  # type: ignore[call-overload]
            @given(operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=base, timeout=30)
                case.validate_response(
                    response, checks=[not_a_server_error, status_code_conformance]
                )

            try:
                run()
            except Unsatisfiable:  # nothing invalid to send (a GET without parameters)
                continue
            except Exception as exc:  # collect all operations' failures, then report
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert failures == [], "\n".join(failures)
    _no_5xx_in_log(server)


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=16,
)
_tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["hp", "wt", "disp", "qsec", "input-0", "", "x"]),
        "shape": st.lists(st.integers(min_value=-2, max_value=2**40), max_size=3),
        "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "NOPE"]),
    },
    optional={
        "data": st.lists(_json_value, max_size=6),
        "parameters": st.dictionaries(st.text(max_size=8), _json_value, max_size=2),
    },
)
_random_body = st.fixed_dictionaries(
    {"inputs": st.lists(_tensor, max_size=5)},
    optional={
        "id": st.text(max_size=8),
        "parameters": st.dictionaries(st.text(max_size=8), _json_value, max_size=2),
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}), max_size=2),
    },
)


_FEATURES = ("hp", "wt", "disp", "qsec")


@st.composite
def _near_valid_body(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed tensors for cost's inputs, with values anywhere (huge, tiny, ints, ...)."""
    rows = draw(st.integers(min_value=1, max_value=4))
    value = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70)
    datatype = draw(st.sampled_from(["FP64", "FP32", "INT64"]))
    inputs = [
        {
            "name": name,
            "shape": [rows],
            "datatype": datatype,
            "data": draw(st.lists(value, min_size=rows, max_size=rows)),
        }
        for name in _FEATURES
    ]
    return {"inputs": inputs}


_v2_body = st.one_of(_random_body, _near_valid_body())


def test_generated_v2_bodies_never_get_a_5xx(server: ServerProcess) -> None:
    seen: dict[int, int] = {}

    @settings(max_examples=V2_EXAMPLES, **_SETTINGS)  # type: ignore[call-overload]
    @given(_v2_body)
    def run(body: dict[str, Any]) -> None:
        answer = server.request(
            "POST",
            "/v2/models/cost/infer",
            json.dumps(body).encode(),
            {"content-type": "application/json"},
        )
        seen[answer.status] = seen.get(answer.status, 0) + 1
        assert answer.status < 500, (answer.status, answer.body)

    run()
    assert 200 in seen and 422 in seen  # both answered and refused bodies were reached
    _no_5xx_in_log(server)
