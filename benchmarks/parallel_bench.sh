#!/usr/bin/env bash
# The PPO benchmark on a many-core machine, every run on its own pair of cores (taskset):
# time-to-solve of configs/default.yaml for SEEDS seeds at once, and the engineering-speed
# pair (ours with configs/tutorial.yaml beside the tutorial baseline, same frames) at the
# same time on two more pairs. Usage: benchmarks/parallel_bench.sh OUT BASELINE [SEEDS] [FRAMES]
set -euo pipefail
out=${1:?out dir}; baseline=${2:?tutorial_ppo.py}; seeds=${3:-5}; frames=${4:-20000}
mkdir -p "$out"
export OMP_NUM_THREADS=2  # a 2-core machine: torch would otherwise start one thread per core
pair() { echo "$((2 * $1)),$((2 * $1 + 1))"; }
for s in $(seq 0 $((seeds - 1))); do
  taskset -c "$(pair "$s")" python3 benchmarks/ppo_bench.py worker --config configs/default.yaml \
    --seed "$s" --threads 1 --final-eval --set device=cpu > "$out/solve_$s.json" 2> /dev/null &
done
(
  for rep in 0 1; do
    taskset -c "$(pair "$seeds")" python3 benchmarks/ppo_bench.py worker \
      --config configs/tutorial.yaml --seed "$rep" --frames "$frames" --set device=cpu \
      --set mlflow.enabled=false
  done > "$out/eng_ours.json" 2> /dev/null
) &
(
  for rep in 0 1; do
    CUDA_VISIBLE_DEVICES= taskset -c "$(pair $((seeds + 1)))" python3 "$baseline" "$frames" \
      InvertedDoublePendulum-v5 "$rep"
  done > "$out/eng_tutorial.json" 2> /dev/null
) &
wait
grep -h '^{' "$out"/*.json | cut -c1-400
