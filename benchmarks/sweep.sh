#!/usr/bin/env bash
# A small PPO settings sweep: each run pinned to its own pair of cores (a "2-core machine"),
# all at once, on a many-core box. Usage: benchmarks/sweep.sh OUT_DIR SEED FRAMES
# Each line of SETTINGS below is one run's overrides of configs/default.yaml.
set -euo pipefail
out=${1:?out dir}; seed=${2:-0}; frames=${3:-401408}
mkdir -p "$out"
SETTINGS=(
  ""
  "ppo.anneal_lr=true"
  "env.num_envs=16 ppo.frames_per_batch=2048 ppo.minibatch_size=512"
  "env.num_envs=16 ppo.frames_per_batch=2048 ppo.minibatch_size=256"
  "env.num_envs=32 ppo.frames_per_batch=4096 ppo.minibatch_size=1024 ppo.lr=0.001"
  "ppo.lr=0.001"
  "env.num_envs=16 ppo.frames_per_batch=2048 ppo.num_epochs=3 ppo.minibatch_size=512 ppo.lr=0.0006"
  "env.num_envs=32 ppo.frames_per_batch=4096 ppo.minibatch_size=512 ppo.lr=0.0006"
)
i=0
for s in "${SETTINGS[@]}"; do
  args=()
  for kv in $s; do args+=(--set "$kv"); done
  timeout "${RUN_TIMEOUT:-100000}" taskset -c $((2 * i)),$((2 * i + 1)) python3 benchmarks/ppo_bench.py worker \
    --config configs/default.yaml --seed "$seed" --frames "$frames" --threads 1 --final-eval \
    --set ppo.eval_interval_frames=25000 --set device=cpu "${args[@]}" > "$out/sweep_$i.json" 2> "/tmp/sweep_$i.err" &
  i=$((i + 1))
done
wait || true
for f in "$out"/sweep_*.json; do echo "== $f: $(grep -c '^progress' "$f") evaluations"; grep -E '^progress' "$f" | tail -n 2; done
