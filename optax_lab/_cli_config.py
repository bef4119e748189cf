"""The parsed options of `optax-lab run` and `tune` as the records the library takes: a
`Config` (which checks itself) and the tuner's `Protocol`. Checks that only the command line can
make (two flags that exclude each other) are made here, in one line each.
"""

from __future__ import annotations

import ast

from optax_lab.config import DEFAULT_WORKLOAD, Config, ModelConfig, Order
from optax_lab.errors import UsageError
from optax_lab.sweep import Protocol

__all__ = ["config_from", "protocol_from"]

_MODEL_OPTIONS = (
    "depth",
    "width",
    "widths",
    "activation",
    "kernel_init",
    "bias_init",
    "dropout",
    "residual",
    "normalization",
    "l2",
)


def _model(args) -> ModelConfig | None:
    """The MLP the model options describe (unset ones take ModelConfig's defaults), or None when
    none is given: then each workload trains its own."""
    if args.residual is False and all(
        getattr(args, option) is None for option in _MODEL_OPTIONS if option != "residual"
    ):
        return None
    if args.widths is not None and args.depth is not None:
        raise UsageError("--widths and --depth both set the hidden layers: give one of them")
    depth = 2 if args.depth is None else args.depth
    if depth < 1:
        raise UsageError(f"--depth {depth} must be at least 1 hidden layer, e.g. --depth 2")
    widths = args.widths if args.widths is not None else (32 if args.width is None else args.width,) * depth
    given = {
        field: getattr(args, field)
        for field in ("activation", "kernel_init", "bias_init", "dropout", "normalization", "l2")
        if getattr(args, field) is not None
    }
    return ModelConfig(widths, residual=args.residual, **given)


def _overrides(items: list[str]) -> dict[str, dict]:
    """`adam.b1=0.95` -> {"adam": {"b1": 0.95}}; values are Python literals, else strings."""
    overrides: dict[str, dict] = {}
    for item in items:
        target, _, text = item.partition("=")
        name, _, hyperparam = target.rpartition(".")  # an optimizer of one's own may be pkg.module:factory
        if not (name and hyperparam and text):
            raise UsageError(f"--set {item!r} is not OPTIMIZER.HYPERPARAMETER=VALUE, e.g. --set adam.b1=0.95")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides.setdefault(name, {})[hyperparam] = value
    return overrides


def _workloads(args) -> tuple[str, ...]:
    """--workloads and --workload together (--workload module:function adds one of your own)."""
    named = args.workloads if args.workloads is not None else (() if args.workload else (DEFAULT_WORKLOAD,))
    return tuple(dict.fromkeys(named + tuple(args.workload)))


def config_from(args) -> Config:
    """The run's configuration from the shared options; every value checked."""
    if getattr(args, "preset", None) and args.optimizers:
        raise UsageError(f"--preset {args.preset} and --optimizers rank different things: give one of them")
    chosen = _workloads(args)
    if getattr(args, "preset", None) and chosen != (DEFAULT_WORKLOAD,):
        raise UsageError(
            f"--preset {args.preset} runs on {DEFAULT_WORKLOAD}, not on {','.join(chosen)}: drop "
            "--preset, or --workloads (to rank optimizers there, give --optimizers)"
        )
    tuned = None
    if getattr(args, "tuned", None):
        from optax_lab.tuning import read_tuned_files

        tuned = read_tuned_files(args.tuned)
    return Config(
        preset=getattr(args, "preset", None) or "lesson",
        optimizers=args.optimizers,
        workloads=chosen,
        batches=args.batch,
        overrides=_overrides(args.overrides),
        dataset=args.dataset,
        imdb_archive=args.imdb_archive,
        num_words=args.num_words,
        train_examples=args.train_examples,
        seeds=args.seeds,
        seed=args.seed,
        epochs=args.epochs,
        order=Order.SHARED if args.shared_order else Order.PER_SEED,
        model=_model(args),
        out=args.out,
        sweeps=tuple(getattr(args, "sweep", ())),
        tuned=tuned,
        criterion=args.criterion,
        devices=args.devices,
        max_replicas=args.max_replicas,
    )


def protocol_from(args) -> Protocol:
    """The tune's protocol. A grid's option with a sampled search, or a sampled search's with the
    grid, is one line: it would be silently ignored."""
    sampled = args.search.sampled
    options = (
        ("--points", "points", args.points, False),
        ("--extend", "max_extensions", args.extend, False),
        ("--trials", "trials", args.trials, True),
        ("--studies", "studies", args.studies, True),
        ("--space", "", args.space, True),
    )
    for flag, _, value, of_sampled in options:
        if value is not None and of_sampled != sampled:
            fix = "use --search grid" if not of_sampled else "add --search halton or random"
            raise UsageError(f"{flag} does not apply to --search {args.search}: drop it, or {fix}")
    given = {field: value for _, field, value, _ in options if field and value is not None}
    return Protocol(
        decades=args.decades, search_seeds=args.search_seeds, criterion=args.criterion, search=args.search, **given
    )
