"""The 2-D test functions' picture: every run's path on the contour plot of the noise-free loss,
one color per optimizer, each seed a thin line from the common start (a workload that declares
`trace_params` records its parameters after every step: history "trajectory" [seeds, epochs,
steps, 2] and "init_params" [seeds, 2]).

The contours are the workload's own loss on its (noise-free) test split, evaluated on a grid, so
any two-parameter workload is drawn the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from optax_lab.report.plotting import figure, png_bytes
from optax_lab.report.records import history

__all__ = ["paths", "trajectories_png"]

GRID = 160  # contour resolution per axis


def paths(run: Mapping) -> np.ndarray:
    """[seeds, 1 + epochs·steps, 2]: each seed's start and its parameters after every step;
    empty when the run recorded no 2-D trajectory."""
    steps, start = history(run, "trajectory"), history(run, "init_params")
    if steps.ndim != 4 or steps.shape[-1] != 2 or start.shape != (steps.shape[0], 2):
        return np.zeros((0, 0, 2))
    return np.concatenate([start[:, None], steps.reshape(steps.shape[0], -1, 2)], axis=1)


def _surface(workload_name: str, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """The workload's mean test loss at every (u, v) of the grid."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from optax_lab import workloads

    workload = workloads.get(workload_name)
    dataset, _ = workload.data(workloads.DataRequest(workload.name))
    module, x, y = workload.build(workload.base_model(None)), jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test)
    _, unravel = ravel_pytree(module.init(jax.random.key(0), x[:1])["params"])

    def loss(point):
        return workload.loss_and_metrics(module.apply({"params": unravel(point)}, x), y)[0]

    points = jnp.stack(np.meshgrid(us, vs), axis=-1).reshape(-1, 2).astype(jnp.float32)
    return np.asarray(jax.jit(jax.vmap(loss))(points)).reshape(len(vs), len(us))


def _bounds(all_paths: list[np.ndarray], minimum: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """The frame: the start and the minimum with a margin, widened for the paths' points up to
    twice that box on each side (a diverging path leaves the frame instead of shrinking the rest)."""
    points = np.concatenate([p.reshape(-1, 2) for p in all_paths if p.size] or [np.zeros((1, 2))])
    points = points[np.isfinite(points).all(axis=1)]
    anchors = points[:1] if minimum is None else np.vstack([points[:1], minimum])
    low, high = anchors.min(axis=0), anchors.max(axis=0)
    pad = np.maximum((high - low) * 0.25, 0.5)
    low, high = low - pad, high + pad
    reach = high - low
    near = points[((points >= low - reach) & (points <= high + reach)).all(axis=1)]
    low, high = np.minimum(low, near.min(axis=0)), np.maximum(high, near.max(axis=0))
    return low - 0.05 * (high - low), high + 0.05 * (high - low)


def trajectories_png(
    runs: Sequence[Mapping], workload: str, minimum: tuple[float, float] | None = None, title: str = ""
) -> bytes:
    """The contour plot of `workload`'s loss with each run's seeds' paths drawn on it; `minimum`
    (e.g. Rosenbrock's (1, 1)) is starred."""
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    drawn = [(run, paths(run)) for run in runs]
    low, high = _bounds([p for _, p in drawn], minimum)
    us, vs = np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID)
    surface = _surface(workload, us, vs)
    floor = max(float(np.nanmin(surface)), 1e-3)
    fig = figure(7.5, 6.0)
    ax = fig.subplots()
    levels = np.geomspace(floor, max(float(np.nanmax(surface)), floor * 10), 25)
    ax.contour(us, vs, np.maximum(surface, floor), levels=levels, norm=LogNorm(), cmap="Greys", linewidths=0.6)
    handles = []
    for index, (run, path) in enumerate(drawn):
        color = f"C{index % 10}"
        for seed in path:
            ax.plot(seed[:, 0], seed[:, 1], color=color, linewidth=0.6, alpha=0.55)
            ax.plot(seed[-1, 0], seed[-1, 1], "o", color=color, markersize=3)
        handles.append(Line2D([], [], color=color, label=str(run.get("optimizer") or run.get("name"))))
    if drawn and drawn[0][1].size:
        ax.plot(*drawn[0][1][0, 0], "ks", markersize=5, label="start")
    if minimum is not None:
        ax.plot(*minimum, "k*", markersize=10)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("u")
    ax.set_ylabel("v")
    ax.set_title(title or f"{workload}: every optimizer's path, one thin line per seed", fontsize=10)
    ax.legend(
        handles=handles
        + [
            Line2D([], [], color="k", marker="s", linestyle="", label="start"),
            Line2D([], [], color="k", marker="*", linestyle="", label="minimum"),
        ],
        fontsize=7,
        loc="best",
        frameon=False,
    )
    return png_bytes(fig, dpi=110)
