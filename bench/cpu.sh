#!/usr/bin/env bash
# The CPU benchmarks behind docs/PERFORMANCE.md (tiny models; about 20 minutes on 2 quiet cores).
#   bench/cpu.sh [OUT_DIR]     (default docs/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench}
mkdir -p "$out"
b=.venv/bin/sdxl-mcp
$b bench --startup --runs 5 --out "$out"
$b bench --overhead --runs 5 --size 1024 --steps 20 --out "$out"
$b bench --overhead --runs 5 --size 512 --steps 20 --out "$out"
$b bench --hotpath --runs 10 --size 1024 --out "$out"
$b bench --sweep --out "$out"
$b bench --scaling --runs 4 --size 256 --steps 20 --concurrency 4 --out "$out"
