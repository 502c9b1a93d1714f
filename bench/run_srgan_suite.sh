#!/usr/bin/env bash
# The SRGAN x4 benchmark suite behind BENCHMARKS.md (one thread per job so two jobs can share the
# 2-core machine without OpenMP contention). Results accumulate in bench/out/srgan/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
python bench/sr_benchmark.py --threads 1 --budgets "${BUDGETS:-1/10}" --methods "${METHODS:-agd,uniform}" --out bench/out/srgan
