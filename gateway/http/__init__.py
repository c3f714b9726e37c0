"""The HTTP surface: predict (ours, MLflow's bodies), the Open Inference Protocol (V2, with
its binary tensor extension), MLflow's scoring routes (/invocations, /ping), /models, probes,
/metrics and /schema, and the one mapping of errors to responses.

Routes read the pool's route table and hand answered requests to telemetry and shadow;
nothing below this folder imports it. Entry points: `PredictRoute` (predict_route.py),
`v2_routes`, `mlflow_routes`, `models_routes`, `install_fast_lane`, `exception_handlers`
(errors.py). Every predict-like request (predict, V2 infer, /invocations) goes through
`PredictRoute.serve`: the one place a per-request check hooks in.
"""

__all__ = [
    "errors",
    "fast_lane",
    "mlflow_protocol",
    "mlflow_route",
    "models_routes",
    "openapi",
    "predict_errors",
    "predict_route",
    "request_ids",
    "request_io",
    "status",
    "v2_binary",
    "v2_protocol",
    "v2_route",
]
