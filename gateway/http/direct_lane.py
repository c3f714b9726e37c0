"""The predict routes on the direct lane (gateway/edge/direct.py): `POST /predict/{model}`,
`POST /v2/models/{model}[/versions/{version}]/infer` and `POST /invocations` are answered
from the connection's protocol, past ASGI and Litestar; anything else, and any request the
lane leaves (as-of requests, other methods), is served by the app as before."""

from __future__ import annotations

from gateway.edge.direct import DirectHandler
from gateway.http.mlflow_route import Invocations
from gateway.http.predict_route import PredictRoute
from gateway.http.v2_route import V2_MODELS_PREFIX, V2Infer, v2_infer_target

__all__ = ["PredictLane"]

_PREDICT = "/predict/"
_V2_CUT = len(V2_MODELS_PREFIX) - 1


class PredictLane:
    """The `DirectLane` of the predict routes."""

    def __init__(self, predict: PredictRoute, v2: V2Infer, invocations: Invocations) -> None:
        self.max_body_bytes = predict.max_body_bytes
        self._predict: DirectHandler = predict.predict_direct
        self._v2: DirectHandler = v2.direct
        self._invocations: DirectHandler = invocations.direct

    def handler_for(self, method: str, path: str, query: bytes) -> DirectHandler | None:
        if method != "POST":
            return None  # 405 and its Allow header: the routes' own answer
        if query and b"as_of=" in query:
            return None  # as-of requests: their own path (asof_route.py), the ASGI way
        if path.startswith(_PREDICT):
            return self._predict
        if path.startswith(V2_MODELS_PREFIX):
            return self._v2 if v2_infer_target(path[_V2_CUT:]) is not None else None
        if path == "/invocations":
            return self._invocations
        return None
