"""Every hyperparameter value is checked against the domain its registry entry declares, before
any work: the table walk (every entry, every hyperparameter, every default, a value outside each
domain), the same check behind --set, --sweep, tuned files and the workloads' defaults, and the
other bad input a careful user tries (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import math

import pytest

from optax_lab import optimizers, planning, workloads
from optax_lab.cli import main
from optax_lab.errors import UsageError
from optax_lab.optimizers import Domain, Kind
from optax_lab.schema import SCHEMA
from optax_lab.sweep import parse_sweep
from optax_lab.tuning import TUNED_KIND


def _outside(domain: Domain) -> list:
    """Values outside `domain`, one per way a value can be wrong there."""
    values: list = [] if domain.optional else [None]
    if domain.kind is Kind.BOOLEAN:
        return values + [1, 0.0, "yes"]
    if domain.kind is Kind.OTHER:
        return values + (["no-such-choice"] if domain.choices else [])
    values += ["abc", "nan", "inf", math.nan, math.inf, -math.inf, True, [1.0]]
    if math.isfinite(domain.low):
        values.append(domain.low if domain.low_open else domain.low - 1)
    if math.isfinite(domain.high):
        values.append(domain.high if domain.high_open else domain.high + 1)
    if domain.kind is Kind.INTEGER:
        values.append(domain.example() + 0.5)
    return values


def _walk():
    """(entry, hyperparameter, domain) for every hyperparameter of every registry entry."""
    for entry in optimizers.REGISTRY.values():
        for hyperparam in entry.accepted:
            yield entry, hyperparam, entry.domain(hyperparam)  # KeyError: declare it (DOMAINS or `domains`)


def test_every_registry_hyperparameter_declares_a_domain_holding_its_default_and_example():
    walked = list(_walk())
    assert len(walked) > 57 * 3
    for entry, hyperparam, domain in walked:
        assert isinstance(domain, Domain) and isinstance(domain.kind, Kind), (entry.name, hyperparam)
        if hyperparam in entry.all_defaults:
            default = entry.all_defaults[hyperparam]
            assert domain.reason(default) is None, f"{entry.name}.{hyperparam}={default!r}: {domain.describe()}"
        assert domain.reason(domain.example()) is None, (entry.name, hyperparam, domain)
    assert all(entry.static <= set(entry.accepted) for entry in optimizers.REGISTRY.values())


def test_every_value_outside_every_declared_domain_is_one_line_naming_it_all():
    checked = 0
    for entry, hyperparam, domain in _walk():
        for value in _outside(domain):
            with pytest.raises(UsageError) as raised:
                optimizers.check_value(entry.name, hyperparam, value)
            message = str(raised.value)
            assert "\n" not in message
            assert message.startswith(f"{entry.name}.{hyperparam}={value!r} is "), message
            assert f"takes {domain.describe()}, e.g. {entry.name}.{hyperparam}=" in message, message
            # the example is our own repr of a number, text or None
            example = eval(message.rpartition(f"e.g. {entry.name}.{hyperparam}=")[2])
            assert domain.reason(example) is None, message  # the example is itself a valid value
            checked += 1
    assert checked > 1000


def test_the_registry_accepts_what_its_domains_hold_and_hands_optax_integers():
    assert optimizers.check_value("adam", "b1", 0.0) == 0.0
    assert optimizers.check_value("sgd", "momentum", None) is None  # optional: off
    assert optimizers.check_value("lookahead_adam", "sync_period", 6.0) == 6
    assert type(optimizers.hyperparams("galore", {"rank": 4.0})["rank"]) is int
    with pytest.raises(UsageError, match=r"takes no hyperparameter 'lr': it accepts learning_rate"):
        optimizers.check_value("adam", "lr", 0.1)
    with pytest.raises(UsageError, match=r"adam\.learning_rate=10\*\*400|is not finite"):
        optimizers.check_value("adam", "learning_rate", 10**400)


def test_every_workload_default_is_inside_its_domain():
    for workload in workloads.REGISTRY.values():
        for name, values in workload.optimizer_defaults.items():
            for hyperparam, value in values.items():
                assert optimizers.check_value(name, hyperparam, value) == value, (workload.name, name, hyperparam)


def test_a_workload_of_your_own_with_a_bad_default_fails_while_planning():
    import dataclasses

    bad = dataclasses.replace(workloads.get("imdb-mlp"), name="mine", optimizer_defaults={"adam": {"b1": 2}})
    with pytest.raises(UsageError, match=r"^workload mine's optimizer_defaults: adam\.b1=2 is outside the domain"):
        planning.ranking_lessons(("adam",), (500,), workload=bad)


def test_swept_integers_reach_optax_as_integers():
    points = planning.sweep_points("galore", [parse_sweep("galore.rank=4,8")], {})
    assert points == [{"rank": 4}, {"rank": 8}] and all(type(p["rank"]) is int for p in points)


def _tuned(path, point) -> str:
    path.write_text(
        json.dumps({"schema": SCHEMA, "kind": TUNED_KIND, "workload": "imdb-mlp", "points": {"adam": {"500": point}}})
    )
    return str(path)


BAD_VALUES = [  # (options, what the one line must say): --set, --sweep and tuned files alike
    (["--set", "adam.learning_rate=nan"], "adam.learning_rate='nan' is not a number"),
    (["--set", "adam.learning_rate=inf"], "adam.learning_rate='inf' is not finite"),
    (["--set", "adam.learning_rate=1e999"], "adam.learning_rate=inf is not finite"),
    (["--set", "adam.learning_rate=abc"], "adam.learning_rate='abc' is not a number: learning_rate takes a number"),
    (
        ["--set", "adam.learning_rate=-1"],
        (
            "adam.learning_rate=-1 is outside the domain: learning_rate takes a "
            "number in (0, inf), e.g. adam.learning_rate="
        ),
    ),
    (["--set", "adam.b1=2"], "adam.b1=2 is outside the domain: b1 takes a number in [0, 1), e.g. adam.b1=0.9"),
    (["--set", "adam.eps=None"], "adam.eps=None is not allowed: eps takes a number in [0, inf)"),
    (["--set", "adam.nesterov=yes"], "adam.nesterov='yes' is not True or False"),
    (["--set", 'adam.learning_rate="0.1"'], "adam.learning_rate='0.1' is text, not a number"),
    (
        ["--set", "lookahead_adam.sync_period=1.5", "--optimizers", "lookahead_adam"],
        "lookahead_adam.sync_period=1.5 is not an integer",
    ),
    (["--sweep", "adam.b1=0.9,1.5"], "--sweep adam.b1=0.9,1.5: adam.b1=1.5 is outside the domain"),
    (["--sweep", "learning_rate=lin:0:1:3"], "adam.learning_rate=0.0 is outside the domain"),
    (["--sweep", "adam.nesterov=0,1"], "adam.nesterov=0.0 is not True or False"),
    (["--tuned", "{tmp}/neg.json"], "adam.learning_rate=-0.1 is outside the domain"),
    (["--tuned", "{tmp}/text.json"], "adam.learning_rate='fast' is not a number"),
    (["--tuned", "{tmp}/lr.json"], "takes no hyperparameter 'lr'"),
]


@pytest.mark.parametrize("options, needle", BAD_VALUES)
def test_a_bad_value_anywhere_is_one_line_exit_2_and_nothing_written(options, needle, tmp_path, error_line):
    _tuned(tmp_path / "neg.json", {"learning_rate": -0.1})
    _tuned(tmp_path / "text.json", {"learning_rate": "fast"})
    _tuned(tmp_path / "lr.json", {"lr": 0.1})
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    chosen = [] if "--optimizers" in options else ["--optimizers", "adam", "--batch", "500"]
    out = tmp_path / "out"
    assert main(["run", *chosen, *options, "--dataset", "synthetic-imdb", "--out", str(out)]) == 2
    assert needle in error_line()
    assert not out.exists()


BAD_INPUT = [  # what a careful new user tries next
    (["run", "--optimizers", "adam,adam"], "names adam twice: give each once, e.g. --optimizers adam"),
    (["run", "--optimizers", "all,adam"], "all already names every optimizer"),
    (["run", "--optimizers", "adam", "--batch", "500,500"], "--batch 500,500 names a batch mode twice"),
    (["run", "--optimizers", "adam", "--batch", "full,full"], "e.g. --batch full"),
    (["run", "--optimizers", "adam", "--l2", "inf"], "l2 penalty inf must be a finite non-negative number"),
    (["run", "--optimizers", "adam", "--sweep", "learning_rate=around:1000:3"], "at most 30"),
    (["tune", "--optimizers", "adam", "--decades", "inf"], "--decades inf: the grid spans a positive number"),
    (["tune", "--optimizers", "cocob"], "optimizer 'cocob' has no main scale to sweep"),
    (["tune", "--optimizers", "lbfgs"], "leave it out of --optimizers"),
    (["tune", "--optimizers", "adam", "--search-seeds", "0"], "--search-seeds 0: stage 1 needs at least 1 seed"),
    (["tune", "--optimizers", "adam", "--extend", "-1"], "--extend -1: a grid grows by 0 or more decades"),
]


@pytest.mark.parametrize("args, needle", BAD_INPUT)
def test_other_bad_input_is_one_line_exit_2_and_nothing_written(args, needle, tmp_path, error_line):
    out = tmp_path / "out"
    assert main([*args, "--dataset", "synthetic-imdb", "--out", str(out)]) == 2
    assert needle in error_line()
    assert not out.exists()


@pytest.mark.parametrize("option, example", [("--optimizers", "adam,sgd"), ("--workloads", "imdb-mlp,rosenbrock")])
def test_a_list_of_no_names_is_one_line(option, example, tmp_path, error_line):
    out = tmp_path / "out"
    arguments = ["run", option, ","] + (["--optimizers", "adam"] if option == "--workloads" else [])
    assert main([*arguments, "--out", str(out)]) == 2
    error = error_line()
    assert f"argument {option}: ',' names none" in error and example in error
    assert not out.exists()
