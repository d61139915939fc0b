#!/usr/bin/env bash
# Job parallelism: the same small 2-seed study run with `snakemake --cores 1` and then with
# `--cores 2` (each PPO job has threads: 1 in the workflow, so --cores 2 runs two at once
# without oversubscription); prints both wall times and their ratio and writes them to
# benchmarks/history/<stamp>-cores.json. A fresh results/cores-bench each time; ~5 min on
# 2 cores. Usage: benchmarks/cores_bench.sh  (in the venv: snakemake and python on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=$(mktemp --suffix=.yaml)
trap 'rm -f "$cfg"; rm -rf results/cores-bench' EXIT
# the tuned recipe of configs/default.yaml, shortened: what --cores scales is the per-seed
# jobs (statistics, PPO, evaluation, pendulum); aggregation and figures run once either way
cat > "$cfg" <<'YAML'
study: cores-bench
seeds: [0, 1]
device: cpu
env: {id: InvertedDoublePendulum-v5, num_envs: 32}
obs_norm: {steps: 2000}
ppo: {total_frames: 98304, frames_per_batch: 4096, num_epochs: 4, minibatch_size: 512,
      num_cells: 64, depth: 2, lr: 0.0006, gamma: 0.98, lmbda: 0.8, reward_scale: 0.1,
      eval_interval_frames: 24576, checkpoint_interval_frames: 49152}
evaluation: {episodes: 5}
pendulum: {iterations: 200, batch_size: 64}
video: {enabled: false}
YAML
declare -A wall
for cores in 1 2; do
  rm -rf results/cores-bench
  start=$(date +%s.%N)
  snakemake --cores "$cores" --configfile "$cfg" --quiet > /dev/null 2>&1 \
    || { echo "snakemake --cores $cores failed: see results/cores-bench/logs"; exit 1; }
  wall[$cores]=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
  echo "--cores $cores: ${wall[$cores]} s"
done
ratio=$(python3 -c "print(round(${wall[1]} / ${wall[2]}, 2))")
echo "speed-up of --cores 2 over --cores 1: ${ratio}x (target >= 1.7x)"
stamp=$(date -u +%Y%m%dT%H%M%S)
python3 - "$stamp" "${wall[1]}" "${wall[2]}" "$ratio" <<'PY'
import json, os, subprocess, sys
stamp, one, two, ratio = sys.argv[1:]
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
out = {"measure": "2-seed study wall time, snakemake --cores 1 vs --cores 2",
       "cores_1_s": float(one), "cores_2_s": float(two), "ratio": float(ratio),
       "cpus": os.cpu_count(), "commit": commit, "date": stamp}
path = f"benchmarks/history/{stamp}-cores.json"
open(path, "w").write(json.dumps(out, indent=1) + "\n")
print("wrote", path)
PY
