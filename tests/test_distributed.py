"""Several processes under `jax.distributed`: 2 processes x 2 CPU devices on 127.0.0.1 give the
results of one process, only process 0 writes, and a half-set or unanswered environment is one
line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from optax_lab import devices
from optax_lab.cli import main
from optax_lab.errors import UsageError

RUN = [
    "run",
    "--dataset",
    "synthetic-imdb",
    "--optimizers",
    "adam",
    "--batch",
    "500",
    "--seeds",
    "3",
    "--epochs",
    "2",
    "--train-examples",
    "1000",
    "--no-compile-cache",
]
CLI = [sys.executable, "-c", "import sys; from optax_lab.cli import main; sys.exit(main())"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(**values) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in devices.DISTRIBUTED_ENV}
    return {**env, **{key: str(value) for key, value in values.items()}}


@pytest.mark.slow  # three programs compiled at -O1 in three processes: CI's 4-device test covers the sharding
def test_two_processes_of_two_devices_equal_one_process(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    processes = [
        subprocess.Popen(
            [*CLI, *RUN, "--out", str(tmp_path / f"out{index}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_environment(
                JAX_NUM_CPU_DEVICES=2, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=index
            ),
        )
        for index in (0, 1)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert not (tmp_path / "out1").exists()  # only process 0 writes
    merged = json.loads((tmp_path / "out0" / "results.json").read_text())
    assert (merged["device"]["process_count"], merged["device"]["device_count"]) == (2, 4)
    assert [program["devices"] for program in merged["programs"].values()] == [4]

    assert main([*RUN, "--out", str(tmp_path / "single")]) == 0  # this process: one device
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    assert single["device"]["process_count"] == 1
    for one, other in zip(single["runs"], merged["runs"], strict=True):
        assert one["seeds"] == other["seeds"] == [0, 1, 2]
        for key, values in one["history"].items():
            np.testing.assert_allclose(other["history"][key], values, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"},
            "JAX_COORDINATOR_ADDRESS is set but JAX_NUM_PROCESSES and JAX_PROCESS_ID are not",
        ),
        (
            {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
            "JAX_PROCESS_ID='2' must be an integer from 0 to JAX_NUM_PROCESSES - 1 (1)",
        ),
        (
            {"JAX_COORDINATOR_ADDRESS": "nohost", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
            "JAX_COORDINATOR_ADDRESS='nohost' must be host:port",
        ),
    ],
)
def test_a_half_set_environment_is_one_line(monkeypatch, values, message):
    for name in devices.DISTRIBUTED_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        devices.initialize_distributed()


def test_a_coordinator_that_never_answers_is_one_line_after_the_timeout(tmp_path, monkeypatch, error_line):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    for name, value in (("JAX_COORDINATOR_ADDRESS", address), ("JAX_NUM_PROCESSES", "2"), ("JAX_PROCESS_ID", "1")):
        monkeypatch.setenv(name, value)
    assert main([*RUN, "--coordinator-timeout", "0.5", "--out", str(tmp_path / "out")]) == 2
    assert error_line() == (
        f"optax-lab: error: the coordinator JAX_COORDINATOR_ADDRESS={address} did not answer within 0.5 s: "
        "start process 0 there first, or fix the address"
    )
    assert not (tmp_path / "out").exists()
