"""The engine: a planned program in, its runs' histories and timings out.

Each configuration is one jitted program with seeds x hyperparameter points on `jax.vmap` axes,
the epochs and steps in `lax.scan`, split over devices with `jax.shard_map`; it is compiled once
(`compile_program`, through the one compile function `aot_compile`) and timed apart from its
compile. Private modules, each a stage of one program, behind this face:

`_inputs` (the data on the device and the settings a run compiles to) -> `_ops` (pure array
operations) -> `_state` (what a program carries) -> `_program` (its functions: init, step, epoch, evaluate) -> `_memory`
(what a program needs before it is compiled; `_activations`, an example's share) -> `_compiling` (XLA options, caches,
counting compiles) -> `_layout` (replicas over devices) -> `_executables` (each program compiled once,
from any thread) -> `_train` (prepare, run, time).
"""

from optax_lab.engine._compiling import (
    BACKEND_COMPILE_EVENT,
    COMPILED_KEPT,
    QUICK_COMPILE_FLAGS,
    aot_compile,
    compiler_options,
    counting_compiles,
    enable_compile_cache,
    forget_compiled,
    quick_compiles_in_env,
    use_quick_compiles,
)
from optax_lab.engine._executables import compile_program, program_id
from optax_lab.engine._inputs import Arrays, program_settings, word_budgets
from optax_lab.engine._layout import Layout, replica_devices, replica_inputs, replica_layout
from optax_lab.engine._memory import (
    HEADROOM,
    MemoryEstimate,
    check_results_fit,
    estimate_memory,
    gigabytes,
    replicas_per_call,
)
from optax_lab.engine._ops import (
    distinct_units,
    flat_params,
    layer_grad_norms,
    per_example_grads,
    shuffled_indices,
    take_examples,
)
from optax_lab.engine._program import make_program
from optax_lab.engine._state import PointState, Program, SeedState, seed_keys
from optax_lab.engine._train import (
    Prepared,
    call_shape,
    points_per_call,
    prepare_points,
    run_prepared,
    train,
    train_points,
)

__all__ = [
    "BACKEND_COMPILE_EVENT",
    "COMPILED_KEPT",
    "HEADROOM",
    "QUICK_COMPILE_FLAGS",
    "Arrays",
    "Layout",
    "MemoryEstimate",
    "PointState",
    "Prepared",
    "Program",
    "SeedState",
    "aot_compile",
    "call_shape",
    "check_results_fit",
    "compile_program",
    "compiler_options",
    "counting_compiles",
    "distinct_units",
    "enable_compile_cache",
    "estimate_memory",
    "flat_params",
    "forget_compiled",
    "gigabytes",
    "layer_grad_norms",
    "make_program",
    "per_example_grads",
    "points_per_call",
    "program_id",
    "prepare_points",
    "program_settings",
    "quick_compiles_in_env",
    "replica_devices",
    "replica_inputs",
    "replica_layout",
    "replicas_per_call",
    "run_prepared",
    "seed_keys",
    "shuffled_indices",
    "take_examples",
    "train",
    "train_points",
    "use_quick_compiles",
    "word_budgets",
]
