"""What a model file may make the gateway do while it loads: nothing but build the model.

`policy.py` is the allowlist (which classes and functions a model file may name),
`unpickler.py` the restricted unpickler, `formula.py` the check of statsmodels formulas
(code that statsmodels evaluates on unpickling), `skops_file.py` the skops format and
`onnx_external.py` the containment of ONNX external data.
"""

from registry_sync.runtimes.safe_load.policy import ALLOWED_PACKAGES, LoadPolicy, RefusedError

__all__ = ["ALLOWED_PACKAGES", "LoadPolicy", "RefusedError"]
