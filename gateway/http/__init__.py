"""The HTTP surface: predict (ours, MLflow's bodies), the Open Inference Protocol (V2),
/models, probes, /metrics and /schema, and the one mapping of errors to responses.

Routes read the pool's route table and hand answered requests to telemetry and shadow;
nothing below this folder imports it. Entry points: `PredictRoute` (predict_route.py),
`v2_routes`, `models_routes`, `install_fast_lane`, `exception_handlers` (errors.py).
"""

__all__ = [
    "errors",
    "fast_lane",
    "models_routes",
    "openapi",
    "predict_errors",
    "predict_route",
    "request_ids",
    "request_io",
    "status",
    "v2_protocol",
    "v2_route",
]
