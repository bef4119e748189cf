"""Replicas split over devices: on 4 forced CPU devices (set before JAX starts, so in a process of
its own) a grid's histories equal the one-device run's, from one compile, and `--devices` reaches
results.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from optax_lab.engine import Layout, replica_layout

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from optax_lab import engine, workloads
    from optax_lab.cli import main
    from optax_lab.config import Order
    from optax_lab.lessons import RunSpec
    from optax_lab.data import synthetic
    from optax_lab.engine import Arrays
    IMDB_MLP = workloads.get("imdb-mlp")

    # The CLI sets the device count before JAX starts, and records it.
    assert main(["run", "--optimizers", "adam", "--batch", "500", "--sweep", "learning_rate=1e-3,1e-2,1e-1",
                 "--dataset", "synthetic-imdb", "--train-examples", "600", "--seeds", "3", "--epochs", "1",
                 "--devices", "4", "--out", sys.argv[1], "--no-compile-cache"]) == 0
    data = Arrays.from_numpy(*synthetic.generate(num_words=100, seed=0, num_train=1050, num_test=400))
    specs = [RunSpec(f"adam {lr}", "adam", {"learning_rate": lr}, 500) for lr in (1e-3, 1e-2, 1e-1)]
    out = {}
    for order in (Order.SHARED,):  # the shared-order path reads the first seed's key across devices
        one = engine.train_points(specs, data, workload=IMDB_MLP, seeds=(0, 1, 2), epochs=2, order=order, devices=1)
        with engine.counting_compiles() as compiles:
            four = engine.train_points(specs, data, workload=IMDB_MLP, seeds=(0, 1, 2), epochs=2, order=order,
                                       devices=4)
        out[order] = {"compiles": len(compiles), "devices": four[0].devices,
                      "max_difference": max(float(np.abs(a.history[k] - b.history[k]).max())
                                            for a, b in zip(one, four) for k in a.history)}
    # Calls whose points are padded to a multiple of the devices: 10 points in 2 calls of 5, each 8 wide.
    grid = [RunSpec(f"adam {i}", "adam", {"learning_rate": 10 ** (-4 + 0.3 * i)}, 500) for i in range(10)]
    alone = engine.train_points(grid, data, workload=IMDB_MLP, seeds=(0,), epochs=1, devices=1)
    with engine.counting_compiles() as compiles:
        padded = engine.train_points(grid, data, workload=IMDB_MLP, seeds=(0,), epochs=1, devices=4, max_replicas=5)
    out["padded points"] = {"compiles": len(compiles), "devices": padded[0].devices, "calls": padded[0].program_calls,
                            "replicas": padded[0].replicas_per_call,
                            "max_difference": max(float(np.abs(a.history[k] - b.history[k]).max())
                                                  for a, b in zip(alone, padded) for k in a.history)}
    print(json.dumps(out))
""")


def test_a_grid_split_over_four_cpu_devices_equals_one_device(tmp_path):
    # The CLI picks the device count; XLA_FLAGS keeps this session's quick compiles (conftest).
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**env, "OPTAX_LAB_CACHE": str(tmp_path / "cache")},
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    for order, found in json.loads(process.stdout.strip().splitlines()[-1]).items():
        assert found["devices"] == 4 and found["compiles"] == 1, (order, found)
        assert found["max_difference"] < 1e-5, (order, found)
        assert found.get("calls", 2) == 2 and found.get("replicas", 8) == 8, (order, found)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["device"]["device_count"] == 4
    assert [program["devices"] for program in results["programs"].values()] == [4]


def test_the_layout_splits_the_axis_that_pads_least():
    assert replica_layout(8, 1, 2) == (Layout(2, 0), 8, 1)  # seeds split evenly
    assert replica_layout(3, 1, 4) == (Layout(3, 0), 3, 1)  # never more devices than replicas
    assert replica_layout(2, 17, 4) == (Layout(4, 1), 2, 20)  # 2 x 20 beats 4 x 17
    assert replica_layout(3, 4, 4) == (Layout(4, 1), 3, 4)  # the points divide: no padding
    assert replica_layout(5, 5, 1) == (Layout(), 5, 5)


def test_an_optimizer_that_must_run_on_one_cpu_device_does(tmp_path):
    """galore's batched SVD waits on XLA:CPU's thread pool from inside it: on two CPU devices its
    grid deadlocked; the registry says so and the engine runs it on one (a hang fails by timeout)."""
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "optax_lab.cli",
        "run",
        "--optimizers",
        "galore",
        "--batch",
        "500",
        "--sweep",
        "learning_rate=0.005,0.01",
        "--dataset",
        "synthetic-imdb",
        "--train-examples",
        "500",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--devices",
        "2",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OPTAX_LAB_CACHE": str(tmp_path / "cache")}
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    [program] = json.loads((out / "results.json").read_text())["programs"].values()
    assert program["devices"] == 1 and len(program["runs"]) == 2
