"""The command line's operations from Python: `run`, `tune` and `load`, each giving a `Results`.

`run(**options)` takes `config.Config`'s fields as keyword arguments, `tune(**options)` those and
`sweep.Protocol`'s; a value may be given as the command line spells it (`optimizers="adam,sgd"`,
`batches="full,500"`, `sweeps=["learning_rate=log:1e-4:1e-1:8"]`, `order="shared"`,
`criterion="best-val-loss"`, `tuned="reports/tune/tuned.json"`) or as the field's own type. The
checks are the command line's: bad input is a one-line `UsageError`, raised before any data is
loaded or anything compiled. Runs train in this process and stay in memory; with `out=DIR` the
report is written there too, as `optax-lab run --out DIR` writes it (stopping and `--resume` are
the command line's). `load` and `Results` import no JAX: reading and tabulating a saved run is cheap.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optax_lab import tidy
from optax_lab.config import Config, ModelConfig, Tuned, check_seed_range, parse_batches
from optax_lab.errors import UsageError, closest
from optax_lab.grids import Sweep
from optax_lab.schema import upgrade_tuned
from optax_lab.sweep import Protocol, parse_sweep

if TYPE_CHECKING:
    import pandas

    from optax_lab.planning import Planner

__all__ = ["Results", "load", "run", "tune"]

TUNED_FILE = "tuned.json"


class Results:
    """One run's or tune's results: `data`, the results dict (what results.json holds); `tuned`,
    what tuned.json holds when they came from a tune (`tuned["points"]`: optimizer -> batch ->
    point), else None; `frame()`, the tidy table; `report(out)`, the report's files."""

    def __init__(self, data: Mapping[str, Any], tuned: Mapping[str, Any] | None = None):
        self.data, self.tuned = dict(data), None if tuned is None else dict(tuned)

    def frame(self) -> pandas.DataFrame:
        """One row per run x seed x epoch (the columns: `optax_lab.tidy`); needs the analysis extra."""
        return tidy.frame(self.data)

    def report(self, out: str | Path) -> Path:
        """Write report.md, its plots and results.json (and tuned.json from a tune) into `out`,
        atomically; the path of report.md."""
        from optax_lab.report import write_report

        return write_report(self.data, out, extra_files={TUNED_FILE: self.tuned} if self.tuned else None)

    def __repr__(self) -> str:
        runs = self.data.get("runs", ())
        return f"<optax_lab.Results {self.data.get('preset')!r}: {len(runs)} runs{', tuned' if self.tuned else ''}>"


def load(path: str | Path) -> Results:
    """The results of a saved run: a results.json, or the folder holding it (and tuned.json)."""
    from optax_lab.report import read_results

    path = Path(path).expanduser()
    file = path / "results.json" if path.is_dir() else path
    data = read_results(file)
    tuned_file = file.parent / TUNED_FILE
    tuned = None
    if "tuning" in data and tuned_file.is_file():
        try:
            tuned = upgrade_tuned(json.loads(tuned_file.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {tuned_file} ({error}): tune again, or move it away") from None
    return Results(data, tuned)


def run(
    *, compile_cache: bool = True, progress: Callable[[str, str, float], None] | None = None, **options: Any
) -> Results:
    """`optax-lab run` with `Config`'s fields as options, e.g.
    `run(optimizers="adam,sgd", batches="500", seeds=4, epochs=10)`. `progress(event, name,
    seconds)` hears of each program (see `runner.Progress`); warnings go to `warnings.warn`."""
    config = _config(_RUN_OPTIONS, options)
    from optax_lab.planning import RunPlanner

    return _train(lambda: RunPlanner(config), config, _command("run", options), compile_cache, progress)


def tune(
    *, compile_cache: bool = True, progress: Callable[[str, str, float], None] | None = None, **options: Any
) -> Results:
    """`optax-lab tune` with `Config`'s and `Protocol`'s fields as options, e.g.
    `tune(optimizers="adam,sgd", points=9, decades=3)`; the results' `tuned` holds the points,
    and `run(optimizers=..., tuned=results)` ranks at them."""
    protocol_fields = {field.name for field in dataclasses.fields(Protocol)} - {"criterion"}
    config = _config(_TUNE_OPTIONS, {k: v for k, v in options.items() if k not in protocol_fields})
    if not config.optimizers:
        raise UsageError("tune needs the optimizers to tune: add --optimizers, e.g. --optimizers all or adam,sgd")
    protocol = Protocol(
        **{k: _convert(k, v) for k, v in options.items() if k in protocol_fields}, criterion=config.criterion
    )
    asked = f"seed={config.seed} seeds={config.seeds} search_seeds={protocol.search_seeds} (which follow seeds)"
    check_seed_range(config.seed, config.seeds + protocol.search_seeds, asked)
    from optax_lab.tuning import TunePlanner

    return _train(lambda: TunePlanner(config, protocol), config, _command("tune", options), compile_cache, progress)


def _train(
    planner: Callable[[], Planner], config: Config, command: str, compile_cache: bool, progress: Callable | None
) -> Results:
    """The command line's path in one process: devices, the planner's programs, its extra files,
    and the report in `config.out` when given (checked writable before anything trains)."""
    from optax_lab import runner
    from optax_lab.devices import configure_devices
    from optax_lab.engine import enable_compile_cache
    from optax_lab.report import check_writable

    configure_devices(config.devices, distributed=False)
    if config.out is not None:
        check_writable(config.out)
    planned = planner()
    if compile_cache:
        enable_compile_cache()
    data = runner.run(
        planned,
        command=command,
        progress=progress,
        warn=lambda text: warnings.warn(text, stacklevel=2),
        compile_cache=compile_cache,
    )
    extra = planned.finish(data)
    results = Results(data, extra.get(TUNED_FILE))
    if config.out is not None:
        results.report(config.out)
    return results


def _config(accepted: frozenset[str], options: Mapping[str, Any]) -> Config:
    """The Config of these options, each converted from the command line's spelling; every value checked."""
    for name in options:
        if name not in accepted:
            hint = closest(name, sorted(accepted))
            raise UsageError(f"unknown option {name!r}: did you mean {hint}?" if hint else f"unknown option {name!r}")
    if options.get("preset") and options.get("optimizers"):
        raise UsageError(f"--preset {options['preset']} and --optimizers rank different things: give one of them")
    return Config(**{name: _convert(name, value) for name, value in options.items()})


def _command(name: str, options: Mapping[str, Any]) -> str:
    """How results.json records the call: the Python one, as the user made it, with absolute paths
    by file name only (as the command line's are), so that nothing shared names a machine's folders."""

    def shown(value: Any) -> Any:
        return Path(value).name if isinstance(value, (str, Path)) and Path(value).is_absolute() else value

    return f"optax_lab.{name}({', '.join(f'{key}={shown(value)!r}' for key, value in options.items())})"


def _convert(name: str, value: Any) -> Any:
    """`value` as the field `name` takes it: by the table below, else by the type of its default
    (an enum from its text, a number checked), else as given."""
    converter = _CONVERTERS.get(name) or _by_default(_DEFAULTS.get(name))
    return value if converter is None or value is None else converter(name, value)


def _by_default(default: Any) -> Callable[[str, Any], Any] | None:
    if isinstance(default, enum.Enum):
        return _choice(type(default))
    if isinstance(default, bool):
        return None
    return _integer if isinstance(default, int) else _number if isinstance(default, float) else None


def _names(name: str, value: str | Sequence[str]) -> tuple[str, ...]:
    """Names as text or a list: `"adam,sgd"` or `["adam", "sgd"]` -> `("adam", "sgd")`."""
    items = value.split(",") if isinstance(value, str) else value
    if not all(isinstance(item, str) for item in items):
        raise UsageError(f"{name}={value!r} is not a list of names: give e.g. {name}='adam,sgd'")
    return tuple(item.strip() for item in items if item.strip())


def _batches(name: str, value: Any) -> tuple[int | None, ...]:
    """Batch modes as --batch spells them or a list: `"full,500"`, `500`, `["full", 500]`."""
    items = [value] if isinstance(value, (str, int)) else list(value)
    return parse_batches(",".join("full" if item is None else str(item) for item in items))


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name}={value!r} must be an integer")
    return value


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{name}={value!r} must be a number")
    return float(value)


def _choice(kind: type[enum.Enum]) -> Callable[[str, Any], enum.Enum]:
    def choice(name: str, value: Any) -> enum.Enum:
        try:
            return kind(value)
        except ValueError:
            raise UsageError(f"{name}={value!r} is not one of {', '.join(str(item.value) for item in kind)}") from None

    return choice


def _sweeps(name: str, value: Any) -> tuple[Sweep, ...]:
    """Sweeps as --sweep spells them (`"learning_rate=log:1e-4:1e-1:8"`), or a list of those or of Sweeps."""
    items = [value] if isinstance(value, (str, Sweep)) else list(value)
    return tuple(item if isinstance(item, Sweep) else parse_sweep(str(item)) for item in items)


def _model(name: str, value: Any) -> ModelConfig:
    if isinstance(value, ModelConfig):
        return value
    fields = [field.name for field in dataclasses.fields(ModelConfig)]
    if not isinstance(value, Mapping) or set(value) - set(fields):
        unknown = sorted(set(value) - set(fields)) if isinstance(value, Mapping) else [repr(value)]
        raise UsageError(f"model={unknown}: give a ModelConfig or a dict of its fields ({', '.join(fields)})")
    return ModelConfig(**value)


def _tuned(name: str, value: Any) -> Mapping[str, Tuned]:
    """A tune's Results, tuned.json paths, or Config's own mapping -> workload -> its tuned points."""
    if isinstance(value, Results):
        if value.tuned is None:
            raise UsageError("tuned= takes the Results of optax_lab.tune (these have no tuned points)")
        record = value.tuned
        return {record["workload"]: Tuned(record["points"], "the Results of optax_lab.tune")}
    if isinstance(value, Mapping):
        return value
    from optax_lab.tuning import read_tuned_files

    return read_tuned_files([value] if isinstance(value, (str, Path)) else list(value))


# The fields whose default does not tell how to read them (None, a tuple, a record).
_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "optimizers": _names,
    "workloads": _names,
    "batches": _batches,
    "epochs": _integer,
    "num_words": _integer,
    "train_examples": _integer,
    "max_replicas": _integer,
    "devices": _integer,
    "model": _model,
    "sweeps": _sweeps,
    "tuned": _tuned,
    "out": lambda name, value: str(Path(value).expanduser()),
}
_DEFAULTS = {field.name: field.default for record in (Config, Protocol) for field in dataclasses.fields(record)}
_RUN_OPTIONS = frozenset(field.name for field in dataclasses.fields(Config))
# tune chooses the hyperparameters itself, on one ranking of --optimizers: no preset, sweeps or tuned points.
_TUNE_OPTIONS = (_RUN_OPTIONS - {"preset", "sweeps", "tuned"}) | {field.name for field in dataclasses.fields(Protocol)}
