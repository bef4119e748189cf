#!/usr/bin/env bash
# One prepared check of optax-lab on a machine with an NVIDIA GPU, in at most 9 minutes:
#   1. installs this package and the CUDA build of the pinned jax into a venv;
#   2. runs the lesson (`optax-lab run --preset lesson`) on synthetic-imdb;
#   3. runs the replica-scaling bench (bench/bench_scaling.py, batch 500) up to at least 4096 replicas;
#   4. runs bench/bench_optimizers.py on a handful of optimizers;
#   5. runs bench/bench_workloads.py on the conv net (mnist-cnn) and, with OPTAX_LAB_IMDB_ARCHIVE
#      set, the char transformer (imdb-char-lm);
#   6. times a cold ranking of 16 programs compiled in turn and compiled ahead (--compile-workers 1);
# writes every report under reports/bench/ and prints a summary: each scaling curve's peak and
# saturation, and whether the target holds: on an H100/H200-class GPU, at least 20,000
# replica-epochs/s at 1024 replicas or more of the lesson's Adam run (batch 500, one GPU).
#
# Usage: scripts/gpu_check.sh        (from anywhere; it works in the repository root)
# Environment (all optional):
#   VENV               the venv to use or create (default: .venv)
#   PYTHON             the Python >= 3.11 that creates it (default: python3)
#   JAX_VERSION        the jax to install (default: the one in .venv, else 0.10.2, the version
#                      this repository's CPU reports were measured with: keep them comparable)
#   JAX_CUDA_EXTRA     cuda12 or cuda13 (default: from the CUDA version the driver supports)
#   PIP_ARGS           extra pip arguments, e.g. "--no-index --find-links /wheels" offline
#   GPU_CHECK_SECONDS  the whole check's budget (default: 540)
#   OPTAX_LAB_IMDB_ARCHIVE  the IMDB archive, for imdb-char-lm in step 5 (without it, mnist-cnn alone)
# Exit status: 0 when every step ran, 1 when one failed or timed out, 2 without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
deadline=${GPU_CHECK_SECONDS:-540}
# Seconds a step may take: at most $1, leaving $2 for the steps after it.
slot() {
  local seconds=$(( deadline - (SECONDS - start) - $2 ))
  (( seconds > $1 )) && seconds=$1
  echo "$seconds"
}

# --- the GPU --------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU found (nvidia-smi is missing or lists no GPU). Run this on a machine" \
       "with a CUDA GPU and its driver; on a CPU, run: pytest bench/bench_scaling.py" >&2
  exit 2
fi
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | sed -n 1p)
gpu_count=$(nvidia-smi -L | wc -l)
cuda_major=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p')
cuda_major=${cuda_major:-12}
extra=${JAX_CUDA_EXTRA:-$( (( cuda_major >= 13 )) && echo cuda13 || echo cuda12 )}
label=gpu-$(echo "$gpu_name" | tr '[:upper:]' '[:lower:]' | sed 's/[^a-z0-9][^a-z0-9]*/-/g; s/^-//; s/-$//')
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
out=reports/bench
prefix="$out/$label-$stamp"
mkdir -p "$out"
echo "gpu_check: $gpu_count × $gpu_name, driver for CUDA $cuda_major; reports: $prefix-*"

# --- 1. the venv: this package, and jax's CUDA build of the pinned version -----------------------
VENV=${VENV:-.venv}
if [ -z "${JAX_VERSION:-}" ]; then
  JAX_VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("jax"))' 2>/dev/null || echo 0.10.2)
fi
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "gpu_check: optax_lab needs Python >= 3.11: set PYTHON to one" >&2; exit 1; }
  "${PYTHON:-python3}" -m venv "$VENV"
fi
py="$VENV/bin/python"
failures=()
declare -A took
step() {  # step NAME SECONDS COMMAND...: run it under a timeout; a failure is noted, not fatal
  local name=$1 seconds=$2 rc=0 began=$SECONDS
  shift 2
  if (( seconds < 30 )); then
    echo "== $name: skipped, only ${seconds} s of the budget left"
    failures+=("$name: skipped (no time left)")
    return 0
  fi
  echo "== $name (at most ${seconds} s)"
  timeout --kill-after=10 "$seconds" "$@" || rc=$?
  took[$name]=$(( SECONDS - began ))
  if (( rc == 124 || rc == 137 )); then failures+=("$name: timed out after ${seconds} s")
  elif (( rc != 0 )); then failures+=("$name: exit status $rc"); fi
}

# shellcheck disable=SC2086  # PIP_ARGS is a list of arguments
step install "$(slot 200 340)" "$py" -m pip install -q ${PIP_ARGS:-} -e ".[dev]" "jax[$extra]==$JAX_VERSION"
if ! backend=$("$py" -c 'import jax; print(jax.default_backend(), jax.local_device_count())' 2>&1) \
    || [[ $backend != gpu* ]]; then
  echo "gpu_check: jax $JAX_VERSION in $VENV does not see the GPU ($backend): check the install above," \
       "or set JAX_CUDA_EXTRA (cuda12 for a CUDA 12 driver, cuda13 for CUDA 13)" >&2
  exit 1
fi
echo "jax $JAX_VERSION ($extra) sees: $backend"

# --- 2. the lesson on synthetic data ---------------------------------------------------------
step lesson "$(slot 80 260)" "$VENV/bin/optax-lab" run --preset lesson --dataset synthetic-imdb \
  --out "$prefix-lesson"

# --- 3. replica scaling, to 4096 replicas and past -----------------------------------------
# The batch-500 curves: the lesson's run, the target's. Each curve gets an equal share of the
# step's time as its wall budget, which ends its climb (the timeout is only the backstop);
# `pytest bench/bench_scaling.py` alone measures the full-batch curves too.
scaling_s=$(slot 240 180)
curves=$(( gpu_count > 1 ? 4 : 2 ))  # one GPU: the all-devices curves are skipped
step scaling "$scaling_s" env XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}" \
  "$py" -m pytest bench/bench_scaling.py -q -p no:cacheprovider -k 500 \
  --scaling-budget 5 --scaling-curve-budget $(( (scaling_s - 40) / curves )) --scaling-max-replicas 16384 \
  --benchmark-json "$prefix-scaling.json" --bench-report "$prefix-scaling.md"

# --- 4. a handful of optimizers' step times ----------------------------------------------------
step optimizers "$(slot 70 110)" "$py" -m pytest bench/bench_optimizers.py -q -p no:cacheprovider \
  --optimizers adam,sgd,lion,lbfgs --batch 500,full \
  --benchmark-json "$prefix-optimizers.json" --bench-report "$prefix-optimizers.md"

# --- 5. the conv net and the transformer ---------------------------------------------------------
workloads=mnist-cnn${OPTAX_LAB_IMDB_ARCHIVE:+,imdb-char-lm}
step workloads "$(slot 70 40)" "$py" -m pytest bench/bench_workloads.py -q -p no:cacheprovider \
  --workloads "$workloads" --benchmark-json "$prefix-workloads.json" --bench-report "$prefix-workloads.md"

# --- 6. compiling ahead: the device runs while the host compiles the next program -----------------
ranking=(run --workloads imdb-mlp,quadratic-deep,rosenbrock,beale --optimizers sgd,adam,lion,lars
         --dataset synthetic-imdb --seeds 8 --epochs 5 --no-compile-cache --yes)
compile_s=$(slot 40 0)
step compile-in-turn "$compile_s" "$VENV/bin/optax-lab" "${ranking[@]}" --no-compile-ahead --out "$prefix-in-turn"
step compile-ahead "$compile_s" "$VENV/bin/optax-lab" "${ranking[@]}" --compile-workers 1 --out "$prefix-ahead"

# --- summary -------------------------------------------------------------------------------
echo
echo "== summary ($(( SECONDS - start )) s of ${deadline} s): $gpu_count × $gpu_name, jax $JAX_VERSION ($extra)"
for name in install lesson scaling optimizers workloads compile-in-turn compile-ahead; do
  if [ -n "${took[$name]:-}" ]; then echo "  $name: ${took[$name]} s"; fi
done
"$py" - "$prefix-scaling.json" <<'EOF' || failures+=("summary: the scaling results could not be read")
import sys
from pathlib import Path

from optax_lab.benchmarking.records import read_benchmark_json
from optax_lab.benchmarking.scaling import scaling_curves

TARGET, AT_LEAST = 20_000, 1024  # replica-epochs/s, replicas: an H100/H200-class GPU, batch 500, one GPU
path = Path(sys.argv[1])
if not path.exists():
    sys.exit(f"  scaling: no results ({path.name} was not written)")
curves = scaling_curves(read_benchmark_json(path), str(path))
for curve in sorted(curves, key=lambda c: c.key):
    rising = (f"not reached (still rising at {curve.points[-1].replicas})" if curve.still_rising
              else f"at {curve.saturation.replicas} replicas")
    print(f"  {curve.name}: peak {curve.peak.replica_epochs_per_s:,.0f} replica-epochs/s at {curve.peak.replicas} "
          f"replicas ({curve.peak.samples_per_s:,.0f} samples/s); saturation {rising}; "
          f"ladder {curve.points[0].replicas}-{curve.points[-1].replicas}, stopped by {curve.info.get('stopped')}")
if curves:
    best = max(curves, key=lambda c: c.peak.replica_epochs_per_s)
    print(f"  peak: {best.peak.replica_epochs_per_s:,.0f} replica-epochs/s ({best.name}, {best.peak.replicas} replicas)")
verdicts = []
for curve in (c for c in curves if c.key[0] == "500" and c.key[2] == "1"):
    big = [p for p in curve.points if p.replicas >= AT_LEAST]
    top = max(big, key=lambda p: p.replica_epochs_per_s, default=None)
    figure = f"{top.replica_epochs_per_s:,.0f} at {top.replicas}" if top else f"ladder ended at {curve.points[-1].replicas}"
    verdicts.append((top is not None and top.replica_epochs_per_s >= TARGET, f"{curve.key[1]} order: {figure}"))
met = [text for ok, text in verdicts if ok]
print(f"  target (>= {TARGET:,} replica-epochs/s at >= {AT_LEAST} replicas, batch 500, one GPU): "
      + ("MET" if met else "NOT MET") + " — " + ("; ".join(text for _, text in verdicts) or "no batch-500 curve ran"))
EOF
if [ -n "${took[compile-in-turn]:-}" ] && [ -n "${took[compile-ahead]:-}" ]; then
  echo "  cold ranking of 16 programs: ${took[compile-in-turn]} s compiled in turn, ${took[compile-ahead]} s compiled ahead"
fi
echo "  reports: $prefix-lesson/report.md, $prefix-scaling.md, $prefix-optimizers.md, $prefix-workloads.md," \
     "$prefix-in-turn/report.md, $prefix-ahead/report.md (JSON beside them)"
if (( ${#failures[@]} )); then
  printf '  FAILED: %s\n' "${failures[@]}"
  exit 1
fi
