#!/usr/bin/env bash
# GPU check: what this project can only show on a CUDA machine, in about 8 minutes on one GPU.
#
#   bash bench/gpu_check.sh            # from the repository root, in the project's environment
#   OUT=/tmp/gpu-check TREE=/scratch/aln-full bash bench/gpu_check.sh
#
# 1. the tests that exercise CUDA (metrics on the device against the CPU, tiny training runs, which take the
#    GPU by train.device=auto);
# 2. bench/scale.py with the paper networks on the synthetic full-size Aff-Wild2 tree (2.8 M crops, built with
#    hard links in about a minute): train.py of configs/affwild2.yaml in bf16 (s/iter, samples/s, peak GPU
#    memory), the training loader with 8 workers, validation's per-frame cost before/after on the GPU, and the
#    preset's time measured, not projected;
# 3. nvidia-smi and the versions, so a figure can be traced to its machine.
# Everything printed also goes to $OUT (default /tmp/aln-gpu-check).
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
OUT=${OUT:-/tmp/aln-gpu-check}
TREE=${TREE:-/tmp/aln-full}
mkdir -p "$OUT"
start=$(date +%s)

python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device visible to torch')"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/machine.txt"

echo "== CUDA tests"
timeout 240 python -m pytest -q -x tests/test_image_quality.py tests/test_restoration.py tests/test_end_to_end.py \
    tests/test_models.py 2>&1 | tail -5 | tee "$OUT/tests.txt"

echo "== scale benchmark, paper networks, on $TREE"
timeout 330 python bench/scale.py --tree "$TREE" --networks paper --val-frames 8192 --workers 4 8 \
    2>&1 | grep -v "^INFO" | tee "$OUT/scale.txt"

echo "gpu_check: done in $(( $(date +%s) - start )) s; figures in $OUT"
