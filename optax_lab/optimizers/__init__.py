"""The optimizer stage: every Optax optimizer as data in one registry, never if/elif branches.

Each entry names an Optax constructor, its default hyperparameters for the IMDB MLP, what its
`update()` needs beyond gradients (the engine supplies it inside the compiled program), and tags.
`build()` turns an entry plus overrides into a `GradientTransformationExtraArgs`.

Coverage: every optimizer of optax 0.2.8 (top level and `optax.contrib`), the contrib wrappers
each around a reasonable base, and the Keras-matched variants of the lesson. `EXCLUDED` names the
optax constructors left out on purpose; tests/test_optimizers.py fails on any other one, so an
optax upgrade that brings a new optimizer is noticed.

Optimizers of your own (`_user.py`): `--optimizers module:function` names a factory returning an
`optax.GradientTransformation`, and the entry-point group `optax_lab.optimizers` registers one
for good; `get` reads either into an entry like the registry's, and `declare` says what a
factory's signature cannot.

Each hyperparameter has a domain (`_domains.py`): real ones are traced (inputs of the compiled
program, so a sweep over them compiles once), the others are compiled in.

Default main scales (learning rates) are the tuned points of `optax-lab tune ... --batch 500` on
real IMDB (reports/tune-imdb/) for the 32 optimizers tuned so far, else the 5-point sweep of
reports/lr-sweep.md; the other defaults are optax's own where they suit a 100-32-32-1 MLP at
batch 500, else as noted.
"""

from optax_lab.optimizers._domains import DOMAINS, Domain, Kind
from optax_lab.optimizers._entry import EXTRA_INPUTS, NEEDS, OptimizerEntry, current_params
from optax_lab.optimizers._registry import (
    EXCLUDED,
    REGISTRY,
    build,
    check_value,
    get,
    hyperparams,
    is_traced,
    main_scale,
    split,
)
from optax_lab.optimizers._user import (
    ENTRY_POINTS,
    Declaration,
    check_on_params,
    declare,
    entry_point_names,
    forget_loaded,
    provenance,
    source_digest,
)
from optax_lab.optimizers._variants import keras_adagrad


def every_name() -> list[str]:
    """What `--optimizers all` names: the registry's entries, then those other packages registered."""
    return sorted(REGISTRY) + [name for name in entry_point_names() if name not in REGISTRY]


__all__ = [
    "DOMAINS",
    "ENTRY_POINTS",
    "EXCLUDED",
    "EXTRA_INPUTS",
    "NEEDS",
    "REGISTRY",
    "Declaration",
    "Domain",
    "Kind",
    "OptimizerEntry",
    "build",
    "check_on_params",
    "check_value",
    "current_params",
    "declare",
    "entry_point_names",
    "every_name",
    "forget_loaded",
    "get",
    "hyperparams",
    "is_traced",
    "keras_adagrad",
    "main_scale",
    "provenance",
    "source_digest",
    "split",
]
