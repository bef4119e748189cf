"""The workloads: each benchmark problem as data (its data, model, loss, metrics, target, default
epochs and batch modes, per-optimizer defaults), in one declarative registry like the optimizers'.
They sit where data meets model: a workload bundles both, and the program runs any of them the
same way.

`get(name)` returns a registered workload, an entry point of the group `optax_lab.workloads`, or
what a `module:function` reference returns; `Workload`, `Target` and `arrays_data` are what a
workload of your own is made of.
"""

from optax_lab.workloads._mlp import MLP, build_model, layer_names
from optax_lab.workloads._registry import ENTRY_POINTS, REGISTRY, TARGET_VAL_LOSS, forget_loaded, get, names
from optax_lab.workloads._workload import (
    BINARY_ACCURACY,
    DataRequest,
    Direction,
    Target,
    Workload,
    arrays_data,
    binary_accuracy,
    binary_cross_entropy,
    check_fits,
    model_output,
)

__all__ = [
    "BINARY_ACCURACY",
    "ENTRY_POINTS",
    "MLP",
    "REGISTRY",
    "TARGET_VAL_LOSS",
    "DataRequest",
    "Direction",
    "Target",
    "Workload",
    "arrays_data",
    "build_model",
    "layer_names",
    "binary_accuracy",
    "binary_cross_entropy",
    "check_fits",
    "forget_loaded",
    "get",
    "model_output",
    "names",
]
