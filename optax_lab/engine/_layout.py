"""Where a program's replicas run: the one-axis device mesh, the split of [seeds, points]
replicas over it, and the host <-> device moves (every process's shards in a multi-process run).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optax_lab.engine._inputs import Arrays
from optax_lab.records import ProgramSettings

__all__ = ["Layout", "fetch", "input_specs", "put", "replica_devices", "replica_inputs", "replica_layout"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a program's [seeds, points] replicas map to devices: `axis` (0 seeds, 1 points) split
    over the first `devices` local devices of a one-axis mesh; the data and the rest replicated."""

    devices: int = 1
    axis: int = 0

    def mesh(self) -> jax.sharding.Mesh:
        return _replica_mesh(self.devices)

    def specs(self, traced: tuple[str, ...]):
        """PartitionSpecs of (seeds, hyperparams, order seed, data), and of the outputs."""
        split = P("replicas")
        return (
            (split if self.axis == 0 else P(), dict.fromkeys(traced, split if self.axis == 1 else P()), P(), P()),
            split if self.axis == 0 else P(None, "replicas"),
        )

    def shardings(self, traced: tuple[str, ...]):
        """NamedShardings of (seeds, hyperparams, order seed, data)."""
        return jax.tree.map(
            lambda spec: NamedSharding(self.mesh(), spec), self.specs(traced)[0], is_leaf=lambda x: isinstance(x, P)
        )

    def local(self, settings: ProgramSettings) -> ProgramSettings:
        """The settings of one device's share: its seeds or points."""
        if self.devices == 1:
            return settings
        field = "num_seeds" if self.axis == 0 else "num_points"
        return dataclasses.replace(settings, **{field: getattr(settings, field) // self.devices})

    def shard(self, function: Callable, traced: tuple[str, ...]) -> Callable:
        """`function` (a program's train, written for `local` settings) on each device's share of
        the replicas (`jax.shard_map`): replicas never talk, so every device runs its own seeds
        or points alone, and no partitioner has to see through the program's loops."""
        inputs, outputs = self.specs(traced)
        # No collectives and no gradient through the map: the varying-axes check (which would
        # have every loop carry built from constants cast to varying) has nothing to protect.
        mapped = jax.shard_map(function, mesh=self.mesh(), in_specs=inputs, out_specs=outputs, check_vma=False)
        return jax.jit(mapped, in_shardings=self.shardings(traced))


@functools.cache  # one mesh per device count: every call of a chunked program reuses it
def _replica_mesh(devices: int) -> jax.sharding.Mesh:
    if jax.process_count() > 1:  # every process's devices (`replica_devices` makes it all of them)
        return jax.make_mesh((devices,), ("replicas",))
    return jax.make_mesh((devices,), ("replicas",), devices=jax.local_devices()[:devices])


def replica_devices(requested: int | None = None) -> int:
    """The devices a program's replicas are split over: `requested` local ones (default all);
    in a multi-process run every device of every process, so that each process holds a share."""
    if jax.process_count() > 1:
        return jax.device_count()
    return requested or jax.local_device_count()


def put(tree, shardings):
    """Host values onto the layout's devices. In a multi-process run each process builds the
    shards it holds of the one global array (every process passes the same values)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)
    return jax.tree.map(
        lambda value, sharding: jax.make_array_from_callback(
            np.shape(value),
            sharding,
            lambda index, value=np.asarray(value): value[index],  # noqa: B008 (bound per leaf)
        ),
        tree,
        shardings,
    )


def fetch(history) -> dict[str, np.ndarray]:
    """The history on the host: in a multi-process run, every process's shards gathered."""
    if jax.process_count() > 1:
        return {k: np.asarray(v) for k, v in multihost_utils.process_allgather(history, tiled=True).items()}
    return {k: np.asarray(v) for k, v in history.items()}


def replica_layout(num_seeds: int, num_points: int, devices: int) -> tuple[Layout, int, int]:
    """(layout, seeds, points) for S x P replicas on up to `devices` devices: the axis split is
    the one that needs less padding to a multiple of the device count (padded replicas repeat
    the last seed or point and are dropped)."""
    # A multi-process run uses every device even for few replicas: each process must hold a share.
    used = devices if jax.process_count() > 1 else min(devices, num_seeds * num_points)
    if used <= 1:
        return Layout(), num_seeds, num_points
    seeds, points = math.ceil(num_seeds / used) * used, math.ceil(num_points / used) * used
    if seeds * num_points <= num_seeds * points:
        return Layout(used, 0), seeds, num_points
    return Layout(used, 1), num_seeds, points


def input_specs(settings: ProgramSettings, traced: tuple[str, ...], data: Arrays, layout: Layout):
    """The program's abstract inputs, placed as the layout places them."""
    shapes = (
        jax.ShapeDtypeStruct((settings.num_seeds,), jnp.int32),
        dict.fromkeys(traced, jax.ShapeDtypeStruct((settings.num_points,), jnp.float32)),
        jax.ShapeDtypeStruct((), jnp.int32),
        jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), data),
    )
    if layout.devices == 1:
        return shapes
    shardings = layout.shardings(traced)
    shardings = (*shardings[:3], jax.tree.map(lambda _: shardings[3], data))
    return jax.tree.map(
        lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding), shapes, shardings
    )


def replica_inputs(
    seeds: tuple[int, ...],
    points: Sequence[Mapping[str, float]] = ({},),
    layout: Layout = Layout(),
    order_seed: int | None = None,
):
    """(seeds [S], traced hyperparameters {name: [P]}, shared-order seed: `order_seed`, else the
    first seed) on the device(s) as the layout splits them, ready before any clock. device_put,
    not jnp.asarray: building arrays from Python ints would compile tiny programs."""
    values = {name: np.asarray([point[name] for point in points], np.float32) for name in points[0]}
    inputs = (np.asarray(seeds, np.int32), values, np.int32(seeds[0] if order_seed is None else order_seed))
    if layout.devices > 1:
        return jax.block_until_ready(put(inputs, layout.shardings(tuple(values))[:3]))
    return jax.block_until_ready(jax.device_put(inputs))
