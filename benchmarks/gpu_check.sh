#!/usr/bin/env bash
# The GPU check: one command on a GPU machine that reaches no registry (docs/benchmarks.md,
# "The GPU check"). Within BUDGET seconds (480 by default, 8 minutes):
#   1. joins the wheels carried in split parts (.whl/parts or $RL_WHEEL_PARTS) and installs
#      .whl/wheels/*.whl with pip --no-index into a folder on PYTHONPATH (the machine's own
#      torch stays);
#   2. runs the GPU tests (pytest -m cuda: the CUDA-graphed loop under torch's sync debug
#      mode, determinism and resume on CUDA, collector processes with CUDA, warp on CUDA
#      against warp on the CPU);
#   3. measures frames/s and time to 9,100 on 3 seeds of configs/gpu.yaml, of
#      configs/fast.yaml with device: cuda (CPU MuJoCo) and with device: cpu, and warp's
#      physics alone (benchmarks/gpu_bench.py), and writes one JSON to benchmarks/history/.
#
#   make gpu-wheels                            # beforehand, where pip reaches a registry
#   benchmarks/gpu_check.sh [--copy-to DIR]    # on the GPU machine
#   benchmarks/gpu_check.sh --device cpu --wheels .whl-cpu   # the rehearsal on a CPU
#
# Options: --device cuda|cpu, --python PY (default python3), --wheels DIR (default .whl),
# --parts DIR (default $RL_WHEEL_PARTS or /tmp/rl-wheels), --site DIR (the install folder,
# default /tmp/rl-site), --budget-s N, --copy-to DIR (a copy of the JSON, e.g. a folder that
# comes back from the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda PY=python3 WHEELS=.whl PARTS="${RL_WHEEL_PARTS:-/tmp/rl-wheels}" SITE=/tmp/rl-site
BUDGET=480 COPY_TO=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --parts) PARTS="$2"; shift 2 ;;
    --site) SITE="$2"; shift 2 ;;
    --budget-s) BUDGET="$2"; shift 2 ;;
    --copy-to) COPY_TO="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
phase() { echo "=== [$(elapsed)s] $*"; }
export PYTHONUNBUFFERED=1 MUJOCO_GL="${MUJOCO_GL:-egl}"
RESULT=$(mktemp -d)

phase "machine"
if [ "$DEVICE" = cuda ]; then nvidia-smi -L || true; fi
"$PY" -c 'import platform, torch; print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'

phase "wheels: join the split ones, install $WHEELS/wheels with pip --no-index into $SITE"
"$PY" benchmarks/gpu_wheels.py assemble --dest "$WHEELS" --parts "$PARTS"
rm -rf "$SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "$WHEELS"/wheels/*.whl
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torchrl, tensordict, gymnasium, mujoco, warp, mujoco_warp, jsonschema, rl.ppo.train; print("imports ok: torchrl", torchrl.__version__, "tensordict", tensordict.__version__, "warp", warp.config.version)'

phase "GPU tests"
if [ "$DEVICE" = cuda ]; then SELECT=(-m cuda); else SELECT=(-m "unit and not cuda"); fi
set +e
timeout 180 "$PY" -m pytest -q -p no:cacheprovider "${SELECT[@]}" \
  tests/unit/test_resident.py tests/workflow/test_resident_training.py tests/unit/test_warp_env.py \
  2>&1 | tee "$RESULT/tests.log"
TESTS_RC=${PIPESTATUS[0]}
set -e
"$PY" - "$RESULT" "$TESTS_RC" "$(elapsed)" <<'EOF'
import json, sys
folder, rc, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = [l for l in open(f"{folder}/tests.log").read().splitlines() if l.strip()]
summary = next((l for l in reversed(lines) if " in " in l and ("passed" in l or "failed" in l or "skipped" in l or "error" in l)), lines[-1] if lines else "")
failed = [l for l in lines if l.startswith(("FAILED", "ERROR"))]
json.dump({"tests": {"exit_code": rc, "summary": summary, "failed": failed, "done_at_s": seconds}}, open(f"{folder}/tests.json", "w"))
print("tests:", summary, "(exit code", rc, ")")
EOF

LEFT=$((BUDGET - $(elapsed) - 15))
phase "measurements (deadline in ${LEFT}s)"
"$PY" benchmarks/gpu_bench.py --device "$DEVICE" --deadline-s "$LEFT" \
  --extra "$RESULT/tests.json" --out benchmarks/history | tee "$RESULT/bench.log"
JSON=$(sed -n 's/^wrote //p' "$RESULT/bench.log" | tail -1)
if [ -n "$COPY_TO" ] && [ -n "$JSON" ]; then mkdir -p "$COPY_TO" && cp "$JSON" "$COPY_TO/"; fi
phase "done: $JSON"
