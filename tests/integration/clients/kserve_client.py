"""Drive kserve's InferenceRESTClient (run by kserve_venv.py inside kserve's own venv).

    python kserve_client.py BASE_URL SCENARIO ARGS_JSON

Prints one JSON document: what the client returned, or the error it raised. Imports nothing
from stageserve: this is the user's side of the wire.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


def _inputs(columns: dict[str, list[float]], binary: bool) -> list[InferInput]:
    inputs = []
    for name, values in columns.items():
        tensor = InferInput(name=name, shape=[len(values)], datatype="FP64")
        tensor.set_data_from_numpy(np.asarray(values, dtype=np.float64), binary_data=binary)
        inputs.append(tensor)
    return inputs


async def _infer(base_url: str, args: dict[str, Any]) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        outputs = None
        if args.get("binary_outputs"):
            outputs = [RequestedOutput(name=args["output"], parameters={"binary_data": True})]
        request = InferRequest(
            model_name=args["model"],
            infer_inputs=_inputs(args["columns"], args["binary"]),
            request_id="kserve-1",
            request_outputs=outputs,
        )
        headers: dict[str, str] = {}
        response = await client.infer(
            base_url, request, model_name=args["model"], response_headers=headers
        )
        output = response.outputs[0]
        return {
            "id": response.id,
            "parameters": response.parameters,
            "name": output.name,
            "values": output.as_numpy().tolist(),
            "version": headers.get("x-model-version"),
            "server_ready": await client.is_server_ready(base_url),
            "server_live": await client.is_server_live(base_url),
            "model_ready": await client.is_model_ready(base_url, args["model"]),
        }
    except httpx.HTTPStatusError as exc:
        return {"error": str(exc), "status": exc.response.status_code}
    finally:
        await client.close()


def main() -> None:
    base_url, scenario, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    args = json.loads(raw)
    if scenario != "infer":
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(asyncio.run(_infer(base_url, args))))


if __name__ == "__main__":
    main()
