"""`train_and_evaluate(config)`: the main job, stage by stage (the Flax examples' entry point).

config -> data -> one compiled program per distinct run -> metrics. Writing the report is the
caller's (the CLI's) last step, so tests can check results without touching the disk.
"""

from __future__ import annotations

from collections.abc import Callable

from optax_lab.config import Config
from optax_lab.data import load_dataset
from optax_lab.metrics import results_dict
from optax_lab.train import Arrays, program_shape, train

# progress(event, run_name, seconds): "compiled" after a program compiles, "trained" after it ran.
Progress = Callable[[str, str, float], None]


def train_and_evaluate(config: Config, *, command: str = "", progress: Progress | None = None,
                       warn: Callable[[str], None] | None = None, compile_cache: bool = False) -> dict:
    config.validate()
    dataset, warning = load_dataset(config.dataset, config.num_words, config.imdb_archive)
    if warning and warn:
        warn(warning)
    data = Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    seeds = tuple(range(config.seed, config.seed + config.seeds))
    for spec in config.runs:  # every batch size checked against the data before any training
        program_shape(spec, data, config.epochs, len(seeds), config.shared_order)
    results = []
    for spec in config.runs:
        def compiled(seconds, name=spec.name):
            if progress:
                progress("compiled", name, seconds)

        result = train(spec, data, seeds=seeds, epochs=config.epochs, shared_order=config.shared_order,
                       model_config=config.model, on_compiled=compiled)
        if progress:
            progress("trained", spec.name, result.run_s)
        results.append(result)
    dataset_info = {"name": dataset.name, "source": dataset.source, "n_train": int(dataset.x_train.shape[0]),
                    "n_test": int(dataset.x_test.shape[0]), "num_words": dataset.num_words}
    return results_dict(config, dataset_info, results, command, compile_cache)
