"""Benchmark options, the optimizer × batch-mode parametrisation, and the session's outputs.

`pytest bench/` measures; `--smoke` shrinks every benchmark to a quick run that only proves it
still works (what CI runs, with --benchmark-disable). At the end of a measuring session the
optimizer benchmarks' markdown timing table goes to reports/bench/<machine>-<date>.md (with
--smoke: a temporary folder, unless --bench-report says where).
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from optax_lab import optimizers
from optax_lab.benchmarking.records import benchmark_rows
from optax_lab.benchmarking.table import report_path, section_header, timing_markdown
from optax_lab.config import batch_label, parse_batches
from optax_lab.errors import UsageError
from optax_lab.files import shareable_command, write_files

SMOKE_OPTIMIZERS = ("adam", "lbfgs")  # plain, and one with a data-dependent loop (FLOPs lower bound)
SMOKE_DATA = (2_000, 1_000)  # synthetic training / test examples under --smoke


@dataclasses.dataclass(frozen=True)
class Settings:
    optimizers: tuple[str, ...]
    batches: tuple[int | None, ...]
    seeds: int
    time_budget: float  # seconds of timed epochs per benchmark
    min_rounds: int
    max_rounds: int
    val_epochs: int  # the fixed short training whose val loss each row reports
    smoke: bool
    compile_cache: bool
    report: str | None


SETTINGS = pytest.StashKey[Settings]()
STATE = pytest.StashKey[dict]()  # start time, matmul peak, recorded benchmarks, report path


def pytest_addoption(parser):
    group = parser.getgroup("optax-lab benchmarks")
    group.addoption("--smoke", action="store_true", help="tiny sizes: check the benchmarks run, measure nothing")
    group.addoption(
        "--optimizers",
        metavar="all|NAME[,NAME...]",
        default=None,
        help=f"registry optimizers to benchmark (default: all; {','.join(SMOKE_OPTIMIZERS)} with --smoke)",
    )
    group.addoption("--batch", metavar="full|B[,...]", default="full,500", help="batch modes (default: full,500)")
    group.addoption(
        "--workloads",
        metavar="all|NAME[,NAME...]",
        default=None,
        help="bench_workloads.py: the workloads to time (default: all)",
    )
    group.addoption(
        "--seeds", type=int, default=None, help="seeds vmapped in each program (default: 8; 2 with --smoke)"
    )
    group.addoption(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="timed seconds per benchmark, which sets its rounds (default: 0.75, within 3-200 rounds)",
    )
    group.addoption(
        "--val-epochs",
        type=int,
        default=None,
        help="epochs of the fixed short training behind each row's val loss (default: 3; 2 with --smoke)",
    )
    group.addoption(
        "--compile-cache",
        action="store_true",
        help="use JAX's persistent compilation cache (default: off, every compile is cold)",
    )
    group.addoption(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="CPU devices to split the host into (default: one per core, unless JAX_NUM_CPU_DEVICES "
        "is set); benchmarks shard their replicas over them",
    )
    group.addoption(
        "--bench-report",
        metavar="PATH",
        default=None,
        help="where the markdown timing table goes (default: reports/bench/<machine>-<date>.md)",
    )
    # bench_scaling.py: the replica ladder's budgets (read there, not in Settings)
    group.addoption(
        "--scaling-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="scaling: the most seconds one call of the next rung may take, predicted (default: 2.5)",
    )
    group.addoption(
        "--scaling-curve-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="scaling: wall seconds per curve, compiles included (default: 70)",
    )
    group.addoption(
        "--scaling-max-replicas",
        type=int,
        default=None,
        metavar="N",
        help="scaling: the replica ladder's cap (default: 65536; 2 with --smoke)",
    )
    group.addoption(
        "--scaling-epochs",
        type=int,
        default=None,
        metavar="E",
        help="scaling: epochs of each call, validation each epoch (default: 5; 1 with --smoke)",
    )


def _settings(config) -> Settings:
    option = config.getoption
    smoke = option("--smoke")
    names = option("--optimizers") or ("all" if not smoke else ",".join(SMOKE_OPTIMIZERS))
    try:
        chosen = (
            tuple(optimizers.every_name())
            if names == "all"
            else tuple(optimizers.get(name.strip()).name for name in names.split(",") if name.strip())
        )
    except UsageError as error:
        raise pytest.UsageError(f"--optimizers: {error}") from None

    def pick(name, default, smoke_default):
        value = option(name)
        return value if value is not None else smoke_default if smoke else default

    # A smoke run checks the benchmarks at one batch mode (tests/test_benchmarks checks both).
    batches = _batches(option("--batch")) if not smoke or option("--batch") != "full,500" else (500,)
    settings = Settings(
        chosen,
        batches,
        pick("--seeds", 8, 2),
        pick("--time-budget", 0.75, 0.05),
        2 if smoke else 3,
        200,
        pick("--val-epochs", 3, 2),
        smoke,
        option("--compile-cache"),
        option("--bench-report"),
    )
    problems = [f"--optimizers {names!r} names no optimizer: give one, e.g. --optimizers adam"] if not chosen else []
    problems += [f"--seeds {settings.seeds} must be at least 1"] if settings.seeds < 1 else []
    problems += (
        [f"--val-epochs {settings.val_epochs} must be at least 2 (the first is the warm-up)"]
        if settings.val_epochs < 2
        else []
    )
    problems += [f"--time-budget {settings.time_budget} must be above 0 seconds"] if settings.time_budget <= 0 else []
    if problems:
        raise pytest.UsageError("; ".join(problems))
    return settings


def _batches(text: str) -> tuple[int | None, ...]:
    try:
        return tuple(dict.fromkeys(parse_batches(text)))
    except UsageError as error:
        raise pytest.UsageError(str(error)) from None


def _quick_compiles_only_when_smoke(smoke: bool) -> None:
    """A smoke run checks the benchmarks and measures nothing: it compiles quickly, like the tests.
    A measuring run must compile with the engine's own options, not the tests' quick ones."""
    from optax_lab.engine import QUICK_COMPILE_FLAGS, quick_compiles_in_env, use_quick_compiles

    if smoke:
        use_quick_compiles()
    elif quick_compiles_in_env():
        raise pytest.UsageError(
            f"XLA_FLAGS holds the tests' quick compile flags ({QUICK_COMPILE_FLAGS}): "
            "benchmarks would measure those; run `pytest bench` apart from `tests`, or add --smoke"
        )


def pytest_configure(config):
    from optax_lab.devices import configure_devices

    _quick_compiles_only_when_smoke(config.getoption("--smoke"))
    try:  # before anything starts JAX: like `optax-lab run`, all cores by default
        configure_devices(config.getoption("--devices"), distributed=False)
    except UsageError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[SETTINGS] = settings = _settings(config)
    config.stash[STATE] = {"start": time.perf_counter(), "recorded": [], "peak": None, "report": None, "sections": []}
    if settings.compile_cache:
        from optax_lab.engine import enable_compile_cache

        enable_compile_cache()


def pytest_generate_tests(metafunc):
    """Every selected optimizer × batch mode, with ids like `adam-500` for -k."""
    if {"optimizer", "batch_size"} <= set(metafunc.fixturenames):
        settings = metafunc.config.stash[SETTINGS]
        metafunc.parametrize(
            ("optimizer", "batch_size"),
            [
                pytest.param(name, batch, id=f"{name}-{batch_label(batch)}")
                for name in settings.optimizers
                for batch in settings.batches
            ],
        )


@pytest.fixture(scope="session")
def smoke(request) -> bool:
    return request.config.getoption("--smoke")


@pytest.fixture(scope="session")
def bench_settings(request) -> Settings:
    return request.config.stash[SETTINGS]


@pytest.fixture(scope="session")
def full_data():
    """(dataset name, Arrays): IMDB when an archive is available locally, else synthetic-imdb;
    loaded once per session for every benchmark file."""
    from optax_lab.data import load_dataset
    from optax_lab.engine import Arrays

    dataset, warning = load_dataset(None)
    if warning:
        print(f"\nwarning: {warning}")
    return dataset.name, Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)


@pytest.fixture(scope="session")
def bench_data(bench_settings, request):
    """The optimizer benchmarks' data: `full_data`, or under --smoke a small synthetic set."""
    from optax_lab.data.synthetic import generate
    from optax_lab.engine import Arrays

    if bench_settings.smoke:
        return "synthetic-imdb (smoke)", Arrays.from_numpy(*generate(100, 0, *SMOKE_DATA))
    return request.getfixturevalue("full_data")


@pytest.fixture(scope="session")
def matmul_peak(request, bench_settings):
    """The machine's fp32 matmul peak, measured once in this session (the roofline)."""
    from optax_lab.benchmarking.roofline import matmul_peak as measure

    peak = measure(256, 3) if bench_settings.smoke else measure()
    request.config.stash[STATE]["peak"] = peak
    return peak


@pytest.fixture(scope="session")
def record_benchmark(request):
    """Keep a finished benchmark's pytest-benchmark record (stats + extra_info) for the table;
    nothing when benchmarks are disabled (no stats)."""
    recorded = request.config.stash[STATE]["recorded"]

    def record(benchmark) -> None:
        if benchmark.stats:
            recorded.append(benchmark.stats.as_dict(include_data=False))

    return record


@pytest.fixture(scope="session")
def report_section(request):
    """`report_section(title, render)`: add a section to the session's bench report, after the
    timing table. `render(stem)` returns (markdown, {file name: bytes or str}); the files are
    written beside the report as `<stem>-<name>` and the markdown links them by that name."""
    sections = request.config.stash[STATE]["sections"]

    def add(title: str, render) -> None:
        sections.append((title, render))

    return add


def pytest_benchmark_update_machine_info(config, machine_info):
    """pytest-benchmark records CPU and OS; add the JAX side and the measured matmul peak."""
    from optax_lab.metrics import device_info

    machine_info["jax"] = device_info()
    peak = config.stash[STATE]["peak"]
    if peak is not None:
        machine_info["fp32_matmul_peak"] = dataclasses.asdict(peak)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["optax_lab"] = {"command": _command(config), "settings": dataclasses.asdict(config.stash[SETTINGS])}


def _command(config) -> str:
    return shareable_command("pytest", config.invocation_params.args)


def _machine_info(config) -> dict[str, Any]:
    machine_info = config.hook.pytest_benchmark_generate_machine_info(config=config)
    config.hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine_info)
    return machine_info


def pytest_sessionfinish(session, exitstatus):
    """The bench report: the timing table of the optimizer benchmarks that ran and measured, then
    the sections other benchmarks added (scaling curves, peers)."""
    config, state = session.config, session.config.stash.get(STATE, None)
    if not state or not (state["recorded"] or state["sections"]):
        return
    settings = config.stash[SETTINGS]
    machine_info = _machine_info(config)
    meta = {
        "command": _command(config),
        "wall_s": time.perf_counter() - state["start"],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if settings.report:
        path = Path(settings.report)
    elif settings.smoke:  # smoke runs must not leave files in the work tree
        path = report_path(tempfile.mkdtemp(prefix="optax-lab-bench-"), machine_info)
    else:
        path = report_path(config.rootpath / "reports" / "bench", machine_info)
    try:
        rows = benchmark_rows({"machine_info": machine_info, "benchmarks": state["recorded"]})
        markdown = timing_markdown(machine_info, rows, meta) if rows else section_header(machine_info, meta)
        files: dict[Path, bytes | str] = {}
        for title, render in state["sections"]:
            text, extra = render(path.stem)
            markdown += f"\n## {title}\n\n{text.strip()}\n"
            files.update({path.parent / f"{path.stem}-{name}": content for name, content in extra.items()})
        write_files({**files, path: markdown}, fix="choose a writable --bench-report path")
        state["report"] = f"bench report: {path}"
    except UsageError as error:
        state["report"] = f"timing table not written: {error}"


def pytest_terminal_summary(terminalreporter):
    state = terminalreporter.config.stash.get(STATE, None)
    if state and state["report"]:
        terminalreporter.write_line(state["report"])
