#!/usr/bin/env bash
# compute-sanitizer over the CUDA kernels' tests, on a GPU machine with the extension built:
#   memcheck   out-of-bounds and misaligned global/shared accesses (odd B, C, D, strided and
#              misaligned operands, out-of-range labels are all in the tests)
#   racecheck  shared-memory hazards between the kernels' barriers
#   synccheck  invalid uses of __syncthreads / warp-synchronous primitives
# The PyTorch caching allocator is switched off so that every tensor is its own allocation and an
# access past its end is reported instead of landing in a neighbour's pooled memory.
# Usage: tests/gpu/run_memcheck.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."

SANITIZER="${COMPUTE_SANITIZER:-compute-sanitizer}"
if ! command -v "$SANITIZER" >/dev/null; then
    for candidate in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer; do
        if [ -x "$candidate" ]; then SANITIZER="$candidate"; break; fi
    done
fi
command -v "$SANITIZER" >/dev/null || { echo "compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2; exit 2; }
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA device: nothing to check" >&2; exit 2; }
python -c "from crfiqa_kernels.backends import cuda; import sys; sys.exit(0 if cuda.available('cuda') else 1)" \
    || { echo "the cuda backend is not available (extension not built for this GPU?)" >&2; exit 2; }

export PYTORCH_NO_CUDA_MEMORY_CACHING=1
TESTS=(tests/crfiqa_kernels/test_cuda_numerics.py tests/crfiqa_kernels/test_backends.py)

for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool"
    "$SANITIZER" --tool "$tool" --error-exitcode 86 --target-processes all \
        python -m pytest -q -x -p no:cacheprovider "${TESTS[@]}" -k cuda "$@"
done
echo "compute-sanitizer: memcheck, racecheck and synccheck clean"
