"""The optimizer registry: it covers every Optax optimizer, each one trains the MLP in one compiled
program, randomness is the seed's own, and bad names fail with a fix."""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from optax_lab import engine, optimizers, workloads
from optax_lab.config import ModelConfig
from optax_lab.data import synthetic
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.workloads import build_model

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

# --- Discovery: an optax upgrade that adds an optimizer must fail here -------------------------

# Modules of building blocks, not optimizers: a top-level name that is one of theirs is skipped.
BUILDING_BLOCK_MODULES = (
    optax.transforms,
    optax.schedules,
    optax.losses,
    optax.tree_utils,
    optax.tree,
    optax.projections,
    optax.second_order,
    optax.assignment,
    optax.perturbations,
    optax.microbatching,
)
# Name patterns of building blocks: scalings, clippings, adders, appliers, injectors, adapters.
BUILDING_BLOCK_PREFIXES = ("scale", "clip", "add_", "apply_", "inject_", "with_", "stateless")


def _returns_transformation(fn) -> bool:
    """Whether `fn(0.1)`, a learning rate, gives a GradientTransformation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return isinstance(fn(0.1), optax.GradientTransformation)
        except Exception:  # noqa: BLE001 - anything that cannot be built so is no optimizer
            return False


def _looks_like_optimizer(fn) -> bool:
    """Takes a learning rate, wraps a GradientTransformation, or is built from a learning rate."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return (
        any("learning_rate" in name for name in params)
        or any("GradientTransformation" in str(p.annotation) for p in params.values())
        or _returns_transformation(fn)
    )


def optax_optimizer_names() -> list[str]:
    """Public optax and optax.contrib functions that look like optimizer constructors."""
    blocks = {id(getattr(module, n)) for module in BUILDING_BLOCK_MODULES for n in dir(module)}
    names = []
    for module, prefix in ((optax, ""), (optax.contrib, "contrib.")):
        for name in dir(module):
            fn = getattr(module, name)
            if (
                name.startswith("_")
                or name.startswith(BUILDING_BLOCK_PREFIXES)
                or id(fn) in blocks
                or inspect.isclass(fn)
                or inspect.ismodule(fn)
                or not callable(fn)
            ):
                continue
            if _looks_like_optimizer(fn):
                names.append(prefix + name)
    return names


def test_every_optax_optimizer_is_registered_or_excluded():
    registered = {entry.optax_name for entry in optimizers.REGISTRY.values()}
    found = optax_optimizer_names()
    missing = [name for name in found if name not in registered and name not in optimizers.EXCLUDED]
    assert not missing, (
        f"optax {optax.__version__} has optimizers that are neither registered nor in "
        f"optimizers.EXCLUDED (with a reason): {', '.join(missing)}"
    )
    assert len(found) >= 55  # the rule still finds them: guards against a discovery that finds nothing


def test_registry_names_real_optax_functions_and_valid_defaults():
    for name in list(optimizers.EXCLUDED) + [e.optax_name for e in optimizers.REGISTRY.values() if e.optax_name]:
        module, _, attr = name.rpartition(".")
        assert callable(getattr(optax.contrib if module else optax, attr, None)), f"optax has no {name}"
    for reason in optimizers.EXCLUDED.values():
        assert reason
    for entry in optimizers.REGISTRY.values():
        assert set(entry.defaults) <= set(entry.accepted), f"{entry.name}: defaults name no hyperparameter"
        assert entry.needs <= set(optimizers.NEEDS), entry.name
        assert bool(entry.key_field) <= ("key" in entry.needs), entry.name
        assert entry.tags & {"core", "contrib", "keras"}, entry.name


def test_deprecated_and_variant_entries():
    assert "deprecated" in optimizers.get("optimistic_adam").tags
    assert optimizers.get("momentum").optax_name == optimizers.get("nesterov").optax_name == "sgd"
    assert optimizers.hyperparams("nesterov", {})["nesterov"] is True
    for name in ("mechanize_adam", "lookahead_adam", "sam_sgd", "reduce_on_plateau_adam", "schedule_free_adam"):
        assert "wrapper" in optimizers.get(name).tags


# --- Every entry steps, and trains the MLP -----------------------------------------------------

EPOCHS = 3
SEEDS = (0, 1)
# One entry per way the engine feeds or reads an optimizer: value + grad + value_fn (lbfgs; the
# loss value alone, as polyak_sgd takes it, is part of that), obj_fn + a state key (sophia),
# grad_fn (sam_sgd), per-example gradients + a state key (dpsgd), a constructor key (noisy_sgd),
# an averaged iterate to validate at (schedule_free_adamw), slow weights to validate at
# (lookahead_adam); plain gradients are every other training test's. CI trains these;
# `pytest -m slow` trains every entry.
ENGINE_KINDS = ("lbfgs", "sophia", "sam_sgd", "dpsgd", "noisy_sgd", "schedule_free_adamw", "lookahead_adam")


def test_the_engine_kinds_cover_every_need_and_evaluation_point():
    kinds = [optimizers.get(name) for name in ENGINE_KINDS]
    assert set().union(*(entry.needs for entry in kinds)) == set(optimizers.NEEDS)
    evaluation_points = {entry.eval_params for entry in optimizers.REGISTRY.values()}
    assert evaluation_points == {entry.eval_params for entry in kinds}
    assert any(entry.key_field for entry in kinds) and any("key" in e.needs and not e.key_field for e in kinds)


# Entries whose first update is zero by design (ADOPT fills its second moment, Rprop its previous
# gradient): their rate shows from the second step on.
FIRST_STEP_FILLS_STATE = ("adopt", "rprop")


def _float_leaves(tree) -> list[np.ndarray]:
    return [
        np.asarray(leaf)
        for leaf in jax.tree.leaves(tree)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
    ]


@pytest.fixture(scope="module")
def first_steps(optimizer_data):
    """The first steps of every entry, its main scale an input of the program (see _first_steps)."""
    return _first_steps(optimizer_data, every_real=False)


def _first_steps(optimizer_data, every_real: bool):
    """One jitted program that builds every registry entry and takes its first step on an MLP
    with what its update() asks for: (params, {name: (updates, state before, state after, second
    step)}, {name: exception} for an entry that failed to build or trace, the outputs again at
    twice each main scale). The main scale, or with `every_real` every real hyperparameter that
    has a default, is an input of the program, as in a sweep. One program for all entries, at
    LLVM -O0: one compile is much cheaper than 57."""
    # A small MLP of the same build (10 words, 4 units): the check is the entry's, and compiling
    # every optimizer on the lesson's 100-32-32 net costs half again as much.
    model = build_model(ModelConfig(widths=(4,)))
    x, y = optimizer_data.x_train[:8, :10], optimizer_data.y_train[:8]
    params = model.init(jax.random.key(0), x[:1])["params"]

    def loss(p):
        return optax.sigmoid_binary_cross_entropy(model.apply({"params": p}, x), y).mean()

    def example_loss(p, xi, yi):
        return optax.sigmoid_binary_cross_entropy(model.apply({"params": p}, xi[None]), yi[None]).mean()

    failed: dict[str, Exception] = {}

    def first_step(name, params, key, traced):
        entry = optimizers.get(name)
        tx = optimizers.build(name, traced, key=key)
        state = tx.init(params)
        value, grad = jax.value_and_grad(loss)(params)
        extra = {
            "value": value,
            "grad": grad,
            "value_fn": loss,
            "obj_fn": loss,
            "grad_fn": lambda p, _: jax.grad(loss)(p),
        }
        per_example = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))
        grads = per_example(params, x, y) if "per_example_grads" in entry.needs else grad
        needed = {k: extra[k] for k in entry.needs if k in extra}
        updates, new_state = tx.update(grads, state, params, **needed)
        if name not in FIRST_STEP_FILLS_STATE:
            return updates, state, new_state, updates
        second, _ = tx.update(grads, new_state, optax.apply_updates(params, updates), **needed)
        return updates, state, new_state, second

    def every_first_step(params, key, traced):
        outputs = {}
        for name in optimizers.REGISTRY:
            try:
                outputs[name] = first_step(name, params, key, traced[name])
            except Exception as error:  # noqa: BLE001 - reported by that entry's test
                failed[name] = error
        return outputs

    # The program runs twice, the second time at twice each entry's main scale (no second compile).
    traced = {
        name: {k: v for k, v in optimizers.split(name, entry.all_defaults)[1].items() if every_real or k == entry.main}
        for name, entry in optimizers.REGISTRY.items()
    }
    doubled = {
        name: {
            **values,
            **({optimizers.get(name).main: 2 * values[optimizers.get(name).main]} if optimizers.get(name).main else {}),
        }
        for name, values in traced.items()
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`optimistic_adam` is deprecated")
        compiled = jax.jit(every_first_step).lower(params, jax.random.key(1), traced).compile(engine.compiler_options())
    return params, compiled(params, jax.random.key(1), traced), failed, compiled(params, jax.random.key(1), doubled)


@pytest.mark.parametrize("name", sorted(optimizers.REGISTRY))
def test_each_entry_takes_a_jitted_step(name, first_steps):
    """Every entry builds, initialises and updates the MLP's params in a jitted program: the
    update has the params' structure and is finite, and the step moves the params or, where the
    first step only gathers statistics (ADOPT's second moment), the optimizer state."""
    params, outputs, failed, _ = first_steps
    if name in failed:
        raise failed[name]
    updates, before, after, _ = outputs[name]
    assert jax.tree.structure(updates) == jax.tree.structure(params), name
    assert all(np.isfinite(leaf).all() for leaf in _float_leaves(updates)), f"{name}: a non-finite first update"
    moved = any(np.abs(leaf).max() > 0 for leaf in _float_leaves(updates))
    learned = any(not np.array_equal(a, b) for a, b in zip(_float_leaves(before), _float_leaves(after), strict=False))
    assert moved or learned, f"{name}: the first step changed neither the params nor the optimizer state"


@pytest.mark.parametrize("name", sorted(optimizers.REGISTRY))
def test_each_entry_sweeps_its_main_scale_traced(name, first_steps):
    """The main scale is an input of the program (a sweep compiles once) and it matters: doubling
    it changes the first step (the second, where the first only fills the state). (Every other
    real hyperparameter: `test_every_real_hyperparameter_is_traceable`, slow.)"""
    entry = optimizers.get(name)
    _, outputs, failed, doubled = first_steps
    if name in failed:
        raise failed[name]
    if not entry.main:
        assert entry.no_main, f"{name} has no main scale and does not say why"
        return
    assert optimizers.is_traced(name, entry.main, entry.all_defaults[entry.main]), f"{name}: {entry.main} is static"
    once, twice = (_float_leaves(steps[name][::3]) for steps in (outputs, doubled))
    assert any(not np.allclose(a, b) for a, b in zip(once, twice, strict=False)), (
        f"{name}: {entry.main} x2 changed nothing"
    )


@pytest.mark.slow  # CI time (~30 s): CI traces each entry's main scale, this every real hyperparameter
def test_every_real_hyperparameter_is_traceable(optimizer_data):
    """Any real hyperparameter can be swept: with all of them inputs of one program, every entry
    still builds and steps (a Python branch on one fails here; declare it in the entry's `static`)."""
    _, outputs, failed, _ = _first_steps(optimizer_data, every_real=True)
    assert not failed, {name: f"{type(error).__name__}: {error}"[:200] for name, error in failed.items()}
    for name, (updates, _, _, _) in outputs.items():
        assert all(np.isfinite(leaf).all() for leaf in _float_leaves(updates)), name


def test_cocob_has_no_main_scale_because_its_rate_changes_nothing():
    steps = {}
    for rate in (1.0, 10.0):
        tx, params = optimizers.build("cocob", {"learning_rate": rate}), PARAMS
        state, steps[rate] = tx.init(params), []
        for _ in range(3):
            updates, state = tx.update(jax.tree.map(lambda g: g.mean(0), EXAMPLE_GRADS), state, params)
            params = optax.apply_updates(params, updates)
            steps[rate].append(updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), steps[1.0], steps[10.0])


def test_every_hyperparameter_has_a_domain_that_holds_its_default():
    for entry in optimizers.REGISTRY.values():
        for hyperparam in entry.accepted:
            domain = entry.domain(hyperparam)  # KeyError: add it to DOMAINS or the entry's `domains`
            default = entry.all_defaults.get(hyperparam)
            if hyperparam in entry.all_defaults:
                assert domain.reason(default) is None, f"{entry.name}.{hyperparam}={default!r}: {domain.describe()}"
            assert domain.reason(domain.example()) is None, (entry.name, hyperparam)
        assert entry.static <= set(entry.accepted), entry.name


@pytest.mark.parametrize(
    "value, reason",
    [
        ("abc", "not a number"),
        (float("nan"), "not finite"),
        (float("inf"), "not finite"),
        (-1, "outside"),
        (0, "outside"),
    ],
)
def test_a_rate_outside_its_domain_is_one_line_with_an_example(value, reason):
    with pytest.raises(
        UsageError, match=rf"adam\.learning_rate=.* is {reason}.*\(0, inf\).*e\.g\. adam\.learning_rate="
    ):
        optimizers.hyperparams("adam", {"learning_rate": value})


def test_betas_integers_and_switches_are_checked():
    for name, hyperparam, value in (
        ("adam", "b1", 1.0),
        ("adam", "b2", -0.1),
        ("lookahead_adam", "sync_period", 1.5),
        ("lookahead_adam", "sync_period", 0),
        ("sgd", "nesterov", 1),
        ("polyak_sgd", "variant", "sps++"),
    ):
        with pytest.raises(UsageError, match=rf"{name}\.{hyperparam}="):
            optimizers.hyperparams(name, {hyperparam: value})
    assert optimizers.hyperparams("sgd", {"momentum": None, "learning_rate": 1})["learning_rate"] == 1
    assert optimizers.split("lookahead_adam", {"sync_period": 6, "learning_rate": 0.1}) == (
        {"sync_period": 6},
        {"learning_rate": 0.1},
    )


@pytest.mark.filterwarnings("ignore:`optimistic_adam` is deprecated:DeprecationWarning")  # tagged so
@pytest.mark.parametrize(
    "name",
    [
        name if name in ENGINE_KINDS else pytest.param(name, marks=pytest.mark.slow)
        for name in sorted(optimizers.REGISTRY)
    ],
)
def test_each_optimizer_trains_the_mlp(name, optimizer_data, count_compiles):
    entry = optimizers.get(name)
    result = engine.train(RunSpec(name, name, {}, 500), optimizer_data, workload=IMDB_MLP, seeds=SEEDS, epochs=EPOCHS)
    assert len(count_compiles) <= 1, f"{name} compiled {len(count_compiles)} programs, not one"
    loss = result.history["train_loss"]
    assert loss.shape == (len(SEEDS), EPOCHS)
    assert np.all(np.isfinite(loss[:, -1])), f"{name}: final train loss {loss[:, -1]}"
    assert np.all(np.isfinite(result.history["val_loss"][:, -1]))
    if not entry.expected_slow:
        assert np.all(loss[:, 0] > loss[:, -1]), (
            f"{name} did not lower the train loss in {EPOCHS} epochs "
            f"(per seed {loss.tolist()}); fix its defaults or give it "
            "an expected_slow reason"
        )


# --- Randomness is the seed's own --------------------------------------------------------------

NOISY = ("noisy_sgd", "dpsgd", "sophia")


@pytest.mark.parametrize("name", NOISY)
def test_noisy_optimizers_are_deterministic_per_seed(name, optimizer_data):
    # Same program as the training test above (2 seeds): a cache hit, no new compile.
    result = engine.train(RunSpec(name, name, {}, 500), optimizer_data, workload=IMDB_MLP, seeds=(3, 3), epochs=EPOCHS)
    for history in result.history.values():
        np.testing.assert_array_equal(history[0], history[1])


PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.array([0.5, -0.5])}
# Per-example gradients (DP-SGD clips each), 4 examples.
EXAMPLE_GRADS = jax.tree.map(lambda p: jax.random.normal(jax.random.key(7), (4, *p.shape)), PARAMS)


def _coupled(params):
    """A loss whose Hessian is not diagonal, so Hutchinson's estimate depends on its probes."""
    return jnp.sum(jnp.array([jnp.sum(leaf) for leaf in jax.tree.leaves(params)])) ** 2


@jax.jit(static_argnums=0)  # one compile instead of an eager op-by-op run
def _two_steps(name: str, key: jax.Array):
    """The float leaves of updates and optimizer state after two steps with `key`."""
    tx = optimizers.build(name, {}, key=key)
    per_example = "per_example_grads" in optimizers.get(name).needs
    grads = EXAMPLE_GRADS if per_example else jax.tree.map(lambda g: g.mean(0), EXAMPLE_GRADS)
    state, outputs = tx.init(PARAMS), []
    for _ in range(2):
        updates, state = tx.update(grads, state, PARAMS, obj_fn=_coupled)
        outputs.append(updates)
    return [leaf for leaf in jax.tree.leaves((outputs, state)) if jnp.issubdtype(leaf.dtype, jnp.floating)]


@pytest.mark.parametrize("name", NOISY)
def test_noise_comes_from_the_seed_key(name):
    first, again, other = (_two_steps(name, jax.random.key(seed)) for seed in (1, 1, 2))
    for a, b in zip(first, again, strict=False):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=False)), (
        f"{name}: seeds 1 and 2 drew the same noise"
    )


def test_build_wants_the_key_of_a_noisy_optimizer():
    with pytest.raises(ValueError, match="noisy_sgd"):
        optimizers.build("noisy_sgd", {})


# --- Engine pieces the registry relies on ------------------------------------------------------


def test_per_example_grads_average_to_the_batch_gradient_and_mask_padding():
    from optax_lab.config import ModelConfig
    from optax_lab.workloads import binary_cross_entropy, build_model

    x, y, _, _ = synthetic.generate(num_words=20, seed=1, num_train=8, num_test=1)
    model = build_model(ModelConfig())
    params = jax.jit(model.init)(jax.random.key(0), x[:1])["params"]
    weights = jnp.array([1.0] * 6 + [0.0] * 2)

    def logits_of(p, inputs, dropout_key=None):
        return model.apply({"params": p}, inputs)

    @jax.jit
    def both(params):
        batch = jax.grad(lambda p: IMDB_MLP.loss_and_metrics(logits_of(p, x), y, weights)[0])(params)
        per_example = engine.per_example_grads(
            logits_of,
            lambda p: 0.0,
            params,
            x,
            y,
            weights,
            None,
            lambda outputs, targets: binary_cross_entropy(outputs, targets).mean(),
        )
        return per_example, batch

    per_example, batch = both(params)
    for g, mean in zip(jax.tree.leaves(per_example), jax.tree.leaves(batch), strict=False):
        assert g.shape[0] == 8 and np.all(np.asarray(g[6:]) == 0)
        np.testing.assert_allclose(g.sum(0) / 6, mean, rtol=1e-5, atol=1e-6)


def test_lookahead_adapter_matches_optax_lookahead():
    grads = jax.tree.map(lambda g: g.mean(0), EXAMPLE_GRADS)
    ours = optimizers.build("lookahead_adam", {"sync_period": 2, "learning_rate": 0.01})
    theirs = optax.lookahead(optax.adam(0.01), 2, 0.5)
    params, state = PARAMS, ours.init(PARAMS)
    both = optax.LookaheadParams.init_synced(PARAMS)
    their_state = theirs.init(both)
    for _ in range(5):
        updates, state = ours.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        their_updates, their_state = theirs.update(grads, their_state, both)
        both = optax.apply_updates(both, their_updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), params, both.fast)
    slow = optimizers.get("lookahead_adam").eval_params(state, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), slow, both.slow)


def test_schedule_free_validates_at_its_averaged_iterate():
    entry = optimizers.get("schedule_free_adamw")
    assert entry.eval_params is optax.contrib.schedule_free_eval_params
    assert optimizers.get("adam").eval_params(None, PARAMS) is PARAMS


# --- Bad names fail with their fix -------------------------------------------------------------


def test_unknown_optimizer_names_the_closest():
    with pytest.raises(UsageError, match=r"unknown optimizer 'adamww'.*adamw"):
        optimizers.get("adamww")


def test_unknown_hyperparameter_names_the_accepted_ones():
    with pytest.raises(UsageError, match=r"'lr'.*learning_rate, b1, b2"):
        optimizers.hyperparams("adam", {"lr": 0.1})
    with pytest.raises(UsageError, match=r"'seed'"):  # the key is the engine's, not a hyperparameter
        optimizers.hyperparams("noisy_sgd", {"seed": 1})
