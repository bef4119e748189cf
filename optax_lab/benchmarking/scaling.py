"""Replica scaling: how one compiled program's throughput grows with its replicas.

A curve is one configuration (shuffling order, batch mode, one device or all) measured on a
ladder of 1, 2, 4, ... replicas (seeds of the lesson's Adam run), one compiled program per rung.
A rung's rate is replicas × epochs / its median call time (compile excluded): replica-epochs/s;
samples/s counts the training examples of all replicas. The ladder climbs while the next rung's
call (predicted as twice the last: at worst linear), its memory (XLA's figure for the compiled
rungs, extrapolated linearly) and the curve's wall time (compiles included) fit their budgets.

Peak: the highest rate measured. Saturation: the smallest replica count whose rate reaches
SATURATION (90 %) of the peak; past it, more replicas add little throughput. A curve whose
saturation is its top rung is still rising: its budget, not the machine, ended it.

Pure Python (matplotlib only to draw): `pytest bench/bench_scaling.py` measures with it and
`optax-lab compare` overlays machines with it, both from the same extra_info record.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from optax_lab.benchmarking.records import is_number
from optax_lab.benchmarking.table import DASH, markdown_table, mode_title, rate_text
from optax_lab.errors import UsageError

__all__ = [
    "BENCH_KIND",
    "SATURATION",
    "Curve",
    "Point",
    "curve_record",
    "ladder",
    "measure_point",
    "next_replicas",
    "overlay_markdown",
    "predicted_bytes",
    "scaling_curves",
    "scaling_markdown",
    "scaling_plot",
]

BENCH_KIND = "replica-scaling"  # extra_info["bench"] of a scaling curve
SATURATION = 0.9  # of the peak: where a curve counts as saturated


@dataclasses.dataclass(frozen=True)
class Point:
    """One rung: its replicas, the devices they were split over, the median of its timed calls
    (seconds), and the rates from that median."""

    replicas: int
    devices: int
    run_s: float
    rounds: int
    compile_s: float
    memory_bytes: int | None  # per device, XLA's figure for the compiled program (None: unknown)
    replica_epochs_per_s: float
    samples_per_s: float


def measure_point(
    replicas: int,
    devices: int,
    run_seconds: Sequence[float],
    epochs: int,
    n_train: int,
    compile_s: float,
    memory_bytes: int | None,
) -> Point:
    run_s = statistics.median(run_seconds)
    return Point(
        replicas,
        devices,
        run_s,
        len(run_seconds),
        compile_s,
        memory_bytes,
        replicas * epochs / run_s,
        replicas * epochs * n_train / run_s,
    )


@dataclasses.dataclass(frozen=True)
class Curve:
    """A measured ladder and what it measured: order, batch ('500' or 'full'), devices ('1' or
    'all'), device_count, epochs, dataset, ... and why it stopped."""

    info: Mapping[str, Any]
    points: tuple[Point, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return self.info["batch"], self.info["order"], self.info["devices"]

    @property
    def name(self) -> str:
        batch, order, devices = self.key
        return f"{mode_title(batch)}, {order}, {'1 device' if devices == '1' else 'all devices'}"

    @property
    def peak(self) -> Point:
        return max(self.points, key=lambda point: point.replica_epochs_per_s)

    @property
    def saturation(self) -> Point:
        top = self.peak.replica_epochs_per_s
        return next(point for point in self.points if point.replica_epochs_per_s >= SATURATION * top)

    @property
    def still_rising(self) -> bool:
        return self.saturation is self.points[-1]


def curve_record(info: Mapping[str, Any], points: Sequence[Point]) -> dict[str, Any]:
    """The extra_info of one curve: its info, its points, and the peak and saturation (for readers
    that take the figures without this module)."""
    curve = Curve(info, tuple(points))
    return {
        "bench": BENCH_KIND,
        "schema": 1,
        **info,
        "points": [dataclasses.asdict(p) for p in points],
        "peak_replica_epochs_per_s": curve.peak.replica_epochs_per_s,
        "peak_replicas": curve.peak.replicas,
        "saturation_replicas": curve.saturation.replicas,
        "still_rising": curve.still_rising,
    }


def scaling_curves(output: Mapping[str, Any], source: str = "the benchmark data") -> list[Curve]:
    """The scaling curves of a pytest-benchmark JSON object (other benchmarks are skipped)."""
    curves = []
    for entry in output.get("benchmarks") or ():
        info = entry.get("extra_info") if isinstance(entry, Mapping) else None
        if not isinstance(info, Mapping) or info.get("bench") != BENCH_KIND:
            continue
        try:
            points = tuple(Point(**{f.name: p[f.name] for f in dataclasses.fields(Point)}) for p in info["points"])
            curve = Curve({k: v for k, v in info.items() if k != "points"}, points)
            if not points or not all(is_number(p.replica_epochs_per_s) and p.replica_epochs_per_s > 0 for p in points):
                raise ValueError
            curve.key  # noqa: B018 - order, batch and devices must be there
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"{source}: scaling benchmark {entry.get('name', '?')!r} has no valid points: pass a "
                "file written by `pytest bench/bench_scaling.py --benchmark-json FILE`"
            ) from None
        curves.append(curve)
    return curves


# ---------------------------------------------------------------------------------------------
# The ladder


def ladder(cap: int, start: int = 1) -> list[int]:
    """start, 2·start, 4·start, ... up to `cap`."""
    return [start << i for i in range(max(0, int(math.log2(cap / start)) + 1))] if cap >= start else []


def predicted_bytes(points: Sequence[Point], replicas: int, devices: int) -> float | None:
    """Bytes per device of a rung of `replicas` over `devices`, extrapolated linearly in replicas
    per device from the last two rungs (one rung: proportionally, which errs high)."""
    known = [p for p in points if p.memory_bytes is not None]
    per_device = replicas / devices
    if not known:
        return None
    if len(known) == 1 or known[-1].replicas / known[-1].devices == known[-2].replicas / known[-2].devices:
        last = known[-1]
        return last.memory_bytes * per_device / (last.replicas / last.devices)
    (x0, y0), (x1, y1) = ((p.replicas / p.devices, p.memory_bytes) for p in known[-2:])
    return y1 + (y1 - y0) / (x1 - x0) * (per_device - x1)


def next_replicas(
    points: Sequence[Point],
    *,
    cap: int,
    device_count: int,
    call_budget_s: float,
    memory_budget_bytes: float,
    elapsed_s: float,
    curve_budget_s: float,
    calls_per_rung: int,
) -> tuple[int | None, str]:
    """(the next rung, '') or (None, why the curve stops): twice the last rung's replicas, if
    that fits the cap, one call of it (predicted: twice the last call) fits `call_budget_s`, its
    memory per device fits `memory_budget_bytes`, and its compile and calls fit what is left of
    the curve's `curve_budget_s`."""
    last = points[-1]
    replicas = 2 * last.replicas
    if replicas > cap:
        return None, f"the ladder's cap of {cap} replicas"
    call_s = 2 * last.run_s
    if call_s > call_budget_s:
        return None, f"time: a call of {replicas} would take ~{call_s:.1f} s, over the {call_budget_s:g} s budget"
    memory = predicted_bytes(points, replicas, min(device_count, replicas))
    if memory is not None and memory > memory_budget_bytes:
        return None, (
            f"memory: {replicas} would need ~{memory / 1e9:.3g} GB a device, over the "
            f"{memory_budget_bytes / 1e9:.3g} GB budget"
        )
    if elapsed_s + last.compile_s + calls_per_rung * call_s > curve_budget_s:
        return None, f"the curve's {curve_budget_s:g} s wall budget"
    return replicas, ""


# ---------------------------------------------------------------------------------------------
# Tables and plots


def _saturation_text(curve: Curve) -> str:
    if curve.still_rising:
        return f"not reached (still rising at {curve.points[-1].replicas})"
    return str(curve.saturation.replicas)


def _one_device_peers(curves: Sequence[Curve]) -> dict[tuple[str, str], Curve]:
    return {curve.key[:2]: curve for curve in curves if curve.key[2] == "1"}


def scaling_markdown(curves: Sequence[Curve], plot_name: str) -> str:
    """One machine's curves: a summary per curve (peak, saturation, all devices ÷ one), the
    rate at every rung, and the plot."""
    curves = sorted(curves, key=lambda c: c.key)
    first = curves[0].info
    lines = [
        f"The lesson's Adam run ({first.get('dataset', '?')}, {first.get('epochs', '?')} epochs with validation "
        "each, init included), its replicas one program: replica-epochs/s = replicas × epochs ÷ the median "
        f"call (of {'/'.join(sorted({str(p.rounds) for c in curves for p in c.points}))} timed calls, after a "
        "warm-up), compile excluded; samples/s counts training examples. Peak: the highest rate; "
        f"saturation: the fewest replicas reaching {SATURATION:.0%} of it. Each curve climbs 1, 2, 4, ... "
        "replicas while the next call, its memory and the curve's wall time fit their budgets.",
        "",
    ]
    peers = _one_device_peers(curves)
    head = [
        "Curve",
        "Devices",
        "Rungs",
        "Peak replica-epochs/s",
        "at replicas",
        "Samples/s at peak",
        "Saturation",
        "All ÷ 1 device",
        "Compile s (median)",
        "Stopped by",
    ]
    body = []
    for curve in curves:
        peer = peers.get(curve.key[:2])
        ratio = (
            f"{curve.peak.replica_epochs_per_s / peer.peak.replica_epochs_per_s:.2f}×"
            if curve.key[2] == "all" and peer
            else DASH
        )
        rungs = f"{curve.points[0].replicas}–{curve.points[-1].replicas}"
        body.append(
            [
                curve.name,
                curve.info.get("device_count", "?"),
                rungs,
                rate_text(curve.peak.replica_epochs_per_s),
                curve.peak.replicas,
                rate_text(curve.peak.samples_per_s),
                _saturation_text(curve),
                ratio,
                f"{statistics.median(p.compile_s for p in curve.points):.2f}",
                curve.info.get("stopped") or DASH,
            ]
        )
    aligns = ["---", "---:", "---:", "---:", "---:", "---:", "---", "---:", "---:", "---"]
    lines += markdown_table(head, body, aligns=aligns)
    lines += ["", f"![replica-epochs/s against replicas, log-log]({plot_name})", ""]
    replicas = sorted({p.replicas for c in curves for p in c.points})
    rate = {(c.key, p.replicas): p.replica_epochs_per_s for c in curves for p in c.points}
    lines += ["Replica-epochs/s at each rung:", ""]
    lines += markdown_table(
        ["Replicas", *(c.name for c in curves)],
        [[r, *(rate_text(rate.get((c.key, r))) for c in curves)] for r in replicas],
    )
    return "\n".join(lines) + "\n"


def overlay_markdown(machines: Sequence[tuple[str, Sequence[Curve]]], plot_name: str) -> str:
    """Several machines' curves (label, curves; the first is the baseline): each curve's peak,
    where it saturates, and the peak's ratio to the baseline's; then the overlaid plot."""
    keys = sorted({c.key for _, curves in machines for c in curves})
    by = [{c.key: c for c in curves} for _, curves in machines]
    base = machines[0][0]
    head = [
        "Curve",
        *(f"{label} peak (at replicas)" for label, _ in machines),
        *(f"{label} saturation" for label, _ in machines),
        *(f"{label} ÷ {base}" for label, _ in machines[1:]),
    ]
    body = []
    for key in keys:
        present = [curves.get(key) for curves in by]
        name = next(c for c in present if c).name
        peaks = [
            f"{rate_text(c.peak.replica_epochs_per_s)} ({c.peak.replicas}"
            + (f" on {c.peak.devices} devices)" if c.peak.devices > 1 else ")")
            if c
            else DASH
            for c in present
        ]
        ratios = [
            f"{c.peak.replica_epochs_per_s / present[0].peak.replica_epochs_per_s:.2f}×" if c and present[0] else DASH
            for c in present[1:]
        ]
        body.append([name, *peaks, *(_saturation_text(c) if c else DASH for c in present), *ratios])
    epochs = {label: sorted({str(c.info.get("epochs")) for c in curves}) for label, curves in machines}
    note = (
        ""
        if len({tuple(v) for v in epochs.values()}) == 1
        else " ⚠ The machines ran different epochs per call ("
        + "; ".join(f"{k}: {'/'.join(v)}" for k, v in epochs.items())
        + "): init weighs differently."
    )
    lines = [
        "Replica-epochs/s of the lesson's Adam run against its replicas, one program per rung (see the bench "
        f"reports). Peak: the highest rate (its replicas in brackets); saturation: the fewest replicas reaching "
        f"{SATURATION:.0%} of it.{note}",
        "",
    ]
    lines += markdown_table(head, body) + ["", f"![replica-epochs/s against replicas, overlaid, log-log]({plot_name})"]
    return "\n".join(lines) + "\n"


def scaling_plot(machines: Sequence[tuple[str, Sequence[Curve]]]) -> bytes:
    """PNG: one log-log panel per batch mode, replica-epochs/s against replicas; a colour per
    machine and devices, a line style per order; each curve's saturation point ringed."""
    from matplotlib import ticker

    from optax_lab.report.plotting import figure, png_bytes

    modes = sorted({c.key[0] for _, curves in machines for c in curves}, key=lambda m: (m != "full", m))
    fig = figure(6.0 * len(modes), 4.4)
    axes = fig.subplots(1, len(modes), squeeze=False)[0]
    styles = {"shared": "-", "per-seed": "--"}
    for axis, mode in zip(axes, modes, strict=False):
        for m, (label, curves) in enumerate(machines):
            for curve in sorted((c for c in curves if c.key[0] == mode), key=lambda c: c.key):
                _, order, devices = curve.key
                color = f"C{(2 * m + (devices == 'all')) % 10}"
                xs = [p.replicas for p in curve.points]
                ys = [p.replica_epochs_per_s for p in curve.points]
                where = f"{curve.info.get('device_count', '?')} devices" if devices == "all" else "1 device"
                prefix = f"{label}: " if len(machines) > 1 else ""
                axis.plot(
                    xs,
                    ys,
                    styles.get(order, ":"),
                    color=color,
                    marker="o",
                    markersize=3,
                    linewidth=1.4,
                    label=f"{prefix}{order}, {where}",
                )
                axis.plot(
                    [curve.saturation.replicas],
                    [curve.saturation.replica_epochs_per_s],
                    "o",
                    markersize=9,
                    markerfacecolor="none",
                    markeredgecolor=color,
                )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        # Plain numbers on the rate axis, and at least a decade of it: flat curves look flat.
        axis.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: rate_text(value)))
        axis.yaxis.set_minor_formatter(ticker.NullFormatter())
        low, high = axis.get_ylim()
        middle = math.sqrt(low * high)
        if high / low < 10:
            axis.set_ylim(middle / math.sqrt(10), middle * math.sqrt(10))
        axis.set_xlabel("replicas (one compiled program)")
        axis.set_ylabel("replica-epochs/s (median call)")
        axis.set_title(f"{mode_title(mode)} (ringed: saturation, {SATURATION:.0%} of the peak)", fontsize=9)
        axis.grid(True, which="both", linewidth=0.3, alpha=0.5)
        axis.legend(fontsize=7, loc="best")
    return png_bytes(fig, dpi=110)
