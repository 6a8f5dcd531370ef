#!/usr/bin/env bash
# The GPU work of the project, for a machine with an NVIDIA GPU, in named steps so that each call
# stays inside a time limit:
#   build     compile crfiqa_kernels._C in place (nvcc, CMake, ninja, pybind11 must be installed)
#   tests     the kernel and bench tests with the gpu-marked ones (faiss-free: search tests skipped
#             where faiss is not installed)
#   memcheck  tests/gpu/run_memcheck.sh (compute-sanitizer over the CUDA kernels' tests)
#   bench     python -m bench --preset gpu, gpu-stats (needs faiss-gpu) and gpu-scale
# Logs and benchmark results go to $OUT (default /tmp/gpu-run); bench results also to bench/results.
# Usage: tests/gpu/run_on_device.sh build tests [memcheck] [bench]
# Triton older than setup.py's floor (3.8) is not supported: install a newer wheel first where the
# machine's image holds an older one.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/gpu-run}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
status=0

run_step() {
    local name=$1
    shift
    echo "== $name: $*"
    if ! "$@" 2>&1 | tee "$OUT/$name.log"; then
        echo "== $name failed" >&2
        status=1
    fi
}

for step in "$@"; do
    case "$step" in
        build)
            run_step build env CRFIQA_BUILD_CUDA=1 "$PYTHON" -m pip install --no-deps --no-build-isolation -e . ;;
        tests)
            ignore=()
            "$PYTHON" -c "import faiss" 2>/dev/null || ignore=(--ignore tests/crfiqa_kernels/test_search.py)
            run_step tests "$PYTHON" -m pytest -q -rs tests/crfiqa_kernels tests/bench "${ignore[@]}" ;;
        memcheck)
            run_step memcheck tests/gpu/run_memcheck.sh ;;
        bench)
            for preset in gpu gpu-stats gpu-scale; do
                run_step "bench-$preset" "$PYTHON" -m bench --preset "$preset"
                cp bench/results/"$preset".* "$OUT"/ 2>/dev/null
            done ;;
        *)
            echo "unknown step: $step (build, tests, memcheck, bench)" >&2
            exit 2 ;;
    esac
done
exit $status
