#!/usr/bin/env bash
# Full-size SDXL timings on one NVIDIA GPU, from a fresh Linux machine with Python 3.11+.
#
#   bench/gpu.sh OUT_DIR
#
# Creates a venv (.venv-gpu), installs the CUDA build of torch and sdxl-mcp, runs
# `sdxl-mcp bench --full-size` (real SDXL configs, random weights: no download, the
# real FLOPs) for fp32, fp16 and bf16, and writes the JSON and a log into OUT_DIR.
# The same pass times the drafts-and-LoRA table (src/sdxl_mcp/bench/draft.py: 4-step Euler
# trailing at guidance 1.0, and 50-step CFG, without and with a random LoRA of
# SDXL-Lightning's shape, rank 64 on 788 layers; active, disabled, fused), then the
# samplers (each A1111 name at 30 steps) and the model switch (disk vs CPU RAM cache)
# tables (src/sdxl_mcp/bench/models.py), and the memory tiers on 8, 12 and 16 GB cards
# emulated with torch.cuda.set_per_process_memory_fraction (src/sdxl_mcp/bench/memory.py).
# Budget: under 10 minutes on an H100 (install ~2-3 min, the three dtypes ~2 min, the
# speed-settings table ~1 min plus torch.compile ~1-2 min, the edit and the variations
# one-by-one-vs-batched tables ~1 min, drafts and LoRA ~1 min, samplers ~1 min, the
# switch ~1 min with writing the second base, the memory tiers ~2 min, estimated).
# SKIP_COMPILE=1 drops compile.
# Offline machines: pre-populate a wheel folder and set PIP_FIND_LINKS / PIP_NO_INDEX.
set -euo pipefail
out=${1:?usage: bench/gpu.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
log="$out/gpu-bench.log"
exec > >(tee -a "$log") 2>&1
echo "== $(date -u +%FT%TZ) $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
VENV=${VENV:-.venv-gpu}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# The CUDA wheel of torch from PyPI (no constraints file: that pins the CPU build).
"$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[engine]'
"$VENV/bin/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name(0))"
time "$VENV/bin/sdxl-mcp" bench --full-size --dtypes "${DTYPES:-fp32,fp16,bf16}" \
  ${SKIP_COMPILE:+--skip-compile} --out "$out"
echo "== done: $out"
