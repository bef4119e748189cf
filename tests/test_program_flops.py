"""FLOPs counted on a program's jaxpr (`optax_lab.benchmarking.program_flops`): the rules on
hand-counted functions, agreement with XLA's cost analysis where XLA counts every operation (a
program without loops), and a whole training program against an analytic count of its MLP."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_lab import engine, workloads
from optax_lab.benchmarking.program_flops import Flops, function_flops, run_flops, training_flops
from optax_lab.data.synthetic import generate
from optax_lab.lessons import RunSpec
from optax_lab.records import RunResult, split_hyperparams

F32 = jnp.float32


def shape(*dims: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(dims, F32)


def test_a_matmul_and_a_convolution_are_two_flops_per_multiply_add():
    assert function_flops(jnp.matmul, shape(8, 16), shape(16, 4)) == Flops(2 * 8 * 16 * 4)

    def conv(x_BHWC, kernel_HWIO):
        return jax.lax.conv_general_dilated(
            x_BHWC, kernel_HWIO, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    # 2 x 8 x 8 x 5 outputs, each 3 x 3 x 3 multiply-adds.
    assert function_flops(conv, shape(2, 8, 8, 3), shape(3, 3, 3, 5)) == Flops(2 * (2 * 8 * 8 * 5) * 27)
    # Two feature groups: each output reads 3 x 3 x (4 / 2) inputs.
    grouped = function_flops(
        lambda x, k: jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2
        ),
        shape(1, 6, 6, 4),
        shape(3, 3, 2, 6),
    )
    assert grouped == Flops(2 * (6 * 6 * 6) * 18)


def test_arithmetic_counts_per_element_and_data_movement_and_dead_code_not_at_all():
    def function(x_NM, y_NM):
        unused = x_NM @ x_NM.T  # nothing reads it: XLA removes it, and so does the count
        del unused
        moved = jnp.transpose(x_NM).reshape(x_NM.shape)[::-1]  # data movement: no FLOPs
        return jnp.tanh(moved * y_NM).sum(axis=1), (jnp.arange(4) * 3).sum()  # integers: none

    # mul and tanh on 6 x 6 elements, then a reduction over its 36 inputs.
    assert function_flops(function, shape(6, 6), shape(6, 6)) == Flops(3 * 36)


def test_a_scan_counts_every_trip_a_while_loop_once_and_a_cond_its_costliest_branch():
    def scanned(c_NN, m_TNN):
        return jax.lax.scan(lambda c, m: (jnp.tanh(c @ m), None), c_NN, m_TNN)[0]

    one_trip = 2 * 16**3 + 16 * 16  # matmul and tanh
    assert function_flops(scanned, shape(16, 16), shape(10, 16, 16)) == Flops(10 * one_trip)
    assert function_flops(scanned, shape(16, 16), shape(50, 16, 16)) == Flops(50 * one_trip)

    def searched(c_NN, trips):  # a trip count known only at run time, like a line search
        return jax.lax.fori_loop(0, trips, lambda i, c: c @ c, c_NN)

    counted = function_flops(searched, shape(16, 16), jax.ShapeDtypeStruct((), jnp.int32))
    assert counted.total >= 2 * 16**3 and not counted.exact  # a lower bound
    branched = function_flops(
        lambda flag, c: jax.lax.cond(flag, lambda c: c @ c, lambda c: c + 1.0, c),
        jax.ShapeDtypeStruct((), jnp.bool_),
        shape(16, 16),
    )
    assert branched == Flops(2 * 16**3, exact=False)


def one_step_epoch(workload: workloads.Workload, data: engine.Arrays):
    """The full-batch epoch program of adam on `workload`, 2 seeds, no validation: one step and
    no loop, which XLA's cost analysis counts whole. (function, state, epoch index)."""
    spec = RunSpec("adam", "adam", {}, None)
    settings = dataclasses.replace(engine.program_settings(spec, data, 1, 2), validate=False)
    program = engine.make_program(spec.model_config(workload.base_model(None)), spec, settings, workload)
    inputs = engine.replica_inputs((0, 1), [split_hyperparams(spec)[1]])
    state, _ = jax.eval_shape(program.init, *inputs, data)
    return program.epoch, state, jnp.int32(0)


def digits(n_train: int, n_test: int) -> engine.Arrays:
    """Random images and labels of MNIST's shapes: what the count depends on."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_train + n_test, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, n_train + n_test)
    return engine.Arrays.from_numpy(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:])


@pytest.mark.parametrize("name", ["imdb-mlp", "mnist-cnn"])
def test_the_count_agrees_with_xla_on_a_program_without_loops(name):
    from optax_lab.benchmarking.roofline import xla_flops

    data = engine.Arrays.from_numpy(*generate(100, 0, 2_000, 500)) if name == "imdb-mlp" else digits(256, 64)
    epoch, state, index = one_step_epoch(workloads.get(name), data)
    counted = function_flops(epoch, state, index, data)
    reported = xla_flops(engine.aot_compile(epoch, state, index, data)[0])
    # The conventions differ only in the small change: XLA counts transcendentals apart.
    assert counted.exact and 0.95 * reported <= counted.total <= 1.05 * reported, (counted, reported)


def mlp_flops(widths: tuple[int, ...], examples: int) -> tuple[int, int]:
    """(forward, forward + backward) matmul FLOPs of a Dense stack (the first layer's input needs
    no gradient)."""
    layers = list(zip(widths, widths[1:], strict=False))
    forward = sum(2 * a * b for a, b in layers) * examples
    backward = sum((2 if i else 1) * 2 * a * b for i, (a, b) in enumerate(layers)) * examples
    return forward, forward + backward


def test_a_training_program_counts_its_epochs_steps_and_validation():
    """One more epoch adds one epoch's training steps and its validation, and nothing else."""
    n_train, n_test, seeds = 2_000, 500, 2
    data = engine.Arrays.from_numpy(*generate(100, 0, n_train, n_test))
    workload = workloads.get("imdb-mlp")
    spec = RunSpec("adam", "adam", {}, 500)
    model = spec.model_config(workload.base_model(None))

    def counted(epochs: int) -> Flops:
        return training_flops(workload, model, spec, engine.program_settings(spec, data, epochs, seeds), data)

    two, three = counted(2), counted(3)
    assert two.exact and three.exact
    validation, _ = mlp_flops((100, 32, 32, 1), n_test)
    _, training = mlp_flops((100, 32, 32, 1), n_train)
    epoch = seeds * (training + validation)  # the matmuls; elementwise work comes on top
    assert epoch <= three.total - two.total <= 1.25 * epoch, (three.total - two.total, epoch)
    # The init's gradient on the whole training set comes once, before the epochs.
    assert two.total - 2 * (three.total - two.total) >= seeds * training


def test_a_run_counts_every_call_of_its_program():
    data = engine.Arrays.from_numpy(*generate(100, 0, 1_000, 200))
    workload = workloads.get("imdb-mlp")
    spec = RunSpec("adam", "adam", {}, 500)
    model = spec.model_config(workload.base_model(None))
    settings = engine.program_settings(spec, data, 2, 2)
    one_call = training_flops(workload, model, spec, settings, data)
    result = RunResult(spec, workload, {}, settings, (0, 1, 2, 3), {}, 1.0, 2.0, model, program_calls=2)
    assert run_flops(result, data, workload) == Flops(2 * one_call.total)
