#!/usr/bin/env bash
# The one device call (DESIGN §8): everything the project needs from a GPU, in order of value, each
# step under its own `timeout`, 8 minutes in all, its output in at most 8 files under $OUT.
#
#   tests/gpu/run_on_device.sh              every step while time remains (the device call)
#   tests/gpu/run_on_device.sh --dry-run    on any machine: the steps, their limits and estimates,
#                                           and a check that every file and package they need is here
#   tests/gpu/run_on_device.sh STEP ...     only the named steps (same limits)
#
# The device call, from the repository root (peer wheels: tests/gpu/fetch_peer_wheels.sh first):
#   run(command="tests/gpu/run_on_device.sh", carry=[".peer-wheels"], timeout_s=600)
# What comes back: $OUT/summary.md (each step's status, time, the test failures, the benchmark
# tables), $OUT/steps.tsv (one line per step) and $OUT/run.tar.gz (every log, the junit XML, the
# benchmark JSON/markdown/PNG). The archive is rewritten after each step, so a call cut short still
# returns what ran.
#
# Time: the first five steps (env, build, peers, gpu-tests, bench-bf16) have limits that fit the
# 480 s budget together; the later ones (fp32, Shard, compute-sanitizer, scale search) run only
# while time remains, each clamped to what is left. Estimates are for an H200 host (16 cores), see
# ESTIMATE_NOTES below; a step that fails or times out is recorded and the run goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
PYTHON="${PYTHON:-python3}"
BUDGET="${GPU_RUN_BUDGET:-480}"        # seconds, all steps together
RESERVE=10                             # kept back for the final archive and summary
PEER_WHEELS="${PEER_WHEELS:-.peer-wheels}"
OUT="${OUT:-/tmp/gpu-run}"
WORK="${GPU_RUN_WORK:-${TMPDIR:-/tmp}/crfiqa-gpu-run}"

# name | limit s | estimate s | minimum s worth starting with | what
STEPS=(
    "env|15|5|5|versions: nvidia-smi, nvcc, torch, triton, the Python packages the steps use"
    "build|90|45|60|CRFIQA_BUILD_CUDA=1 pip install -e . (crfiqa_kernels._C for sm_90a only, ninja on every core)"
    "peers|30|10|10|install the carried peer wheels (Liger-Kernel, Cut Cross-Entropy) offline into a target folder"
    "gpu-tests|150|90|60|pytest -m gpu -k 'triton or cuda' tests/crfiqa_kernels: both GPU backends against the float64 oracle"
    "bench-bf16|180|150|90|python -m bench --preset gpu-short: S, L, XL in bf16, fwd and fwd+bwd, every peer and both floors"
    "tune|75|45|30|python -m bench.tune: the Triton backward's candidate configs at L and Shard in bf16"
    "bench-fp32|150|110|60|the same benchmark in fp32"
    "bench-shard|90|45|40|the same benchmark at Shard (B=4,096, C=257,489) in bf16"
    "sanitizer|120|90|30|tests/gpu/run_memcheck.sh: compute-sanitizer memcheck, racecheck, synccheck (may be refused)"
    "scale|150|60|40|python -m bench --preset gpu-scale (bf16): the largest C whose training step fits"
)
# How the estimates were made (H200 host, 16 cores; nothing of ours has run there yet):
ESTIMATE_NOTES=(
    "build: measured on a 2-core CPU machine (nvcc 13.0): the slowest source takes"
    "  40 s of CPU for sm_80 + sm_90a and 23 s for sm_90a alone (the step builds sm_90a only: CRFIQA_CUDA_ARCHS=90a,"
    "  the H200's); CMake's configure 24 s wall under load. On 16 idle cores ninja compiles the 4 sources at once:"
    "  ~10 s configure + ~25 s slowest source + link and pip ~10 s = ~45 s."
    "gpu-tests, bench: dominated by compiles, not by the GPU work. Triton's offline sm_90 compile of one kernel"
    "  variant took ~7 s here on a loaded core (tests/crfiqa_kernels: test_kernels_compile_for_hopper, 15 variants"
    "  in 106 s); counted ~4 s on the device and ~10-15 variants in the GPU tests. torch.compile of the authors'"
    "  formulation: ~20 s per graph (fwd and fwd+bwd, a recompile when the shape changes). The GPU work itself is"
    "  modeled (python -m bench.model): under 1 s per shape for our kernels and the floors, seconds for the"
    "  materializing peers at XL, 2 warm-ups + 10 repeats + 1 memory pass each."
    "sanitizer: memcheck slows kernels 10-100x and runs 3 tools; the limit, not the estimate, bounds it."
    "scale: ~10 bisection steps per implementation, each a 2-step training run of at most a few seconds."
    "tune: 5 backward configurations x 2 shapes, a Triton compile each (~4 s) and 11 timed launches (ms)."
)
REQUIRED_FILES=(setup.py CMakeLists.txt csrc pyproject.toml crfiqa_kernels/ops.py tests/conftest.py
                tests/crfiqa_kernels tests/gpu/run_memcheck.sh bench/__main__.py bench/presets.py bench/scale.py)
REQUIRED_MODULES=(torch triton numpy pytest hypothesis matplotlib)
BUILD_TOOLS=(nvcc cmake ninja)        # commands; pybind11 is checked as a module
GPU_TEST_ARGS=(-m gpu -k "triton or cuda" tests/crfiqa_kernels)

field() { local IFS='|'; read -r -a parts <<<"$1"; echo "${parts[$2]}"; }
step_names() { for step in "${STEPS[@]}"; do field "$step" 0; done; }
find_step() { for step in "${STEPS[@]}"; do [ "$(field "$step" 0)" = "$1" ] && { echo "$step"; return 0; }; done; return 1; }

print_table() {
    local core=0 sum=0 estimate=0
    printf '%-12s %7s %9s  %s\n' step "limit s" "estimate" what
    for step in "${STEPS[@]}"; do
        printf '%-12s %7s %9s  %s\n' "$(field "$step" 0)" "$(field "$step" 1)" "$(field "$step" 2)" "$(field "$step" 4)"
        sum=$((sum + $(field "$step" 1))); estimate=$((estimate + $(field "$step" 2)))
        case "$(field "$step" 0)" in env|build|peers|gpu-tests|bench-bf16) core=$((core + $(field "$step" 1)));; esac
    done
    echo "total: the run stops at $BUDGET s (GPU_RUN_BUDGET), $RESERVE s of it kept for the archive; the first five steps' limits"
    echo "       sum to $core s, so they always get theirs; the later ones share what is left (limits sum to $sum s,"
    echo "       estimates to $estimate s). Each step's limit is clamped to what remains; a step needing more than that is skipped."
}

# ---------------------------------------------------------------------------------------------
# --dry-run: what would run, and whether this checkout and interpreter have what it needs.
# ---------------------------------------------------------------------------------------------
dry_run() {
    local missing=0
    echo "== tests/gpu/run_on_device.sh --dry-run (budget $BUDGET s)"
    print_table
    printf '%s\n' "${ESTIMATE_NOTES[@]}" | sed 's/^/   /'
    echo "== files"
    for path in "${REQUIRED_FILES[@]}"; do
        if [ -e "$path" ]; then echo "ok      $path"; else echo "MISSING $path"; missing=1; fi
    done
    [ -x tests/gpu/run_memcheck.sh ] || { echo "MISSING execute permission on tests/gpu/run_memcheck.sh"; missing=1; }
    echo "== build tools (the GPU image has them: device KINDS.md; absent here only warns)"
    for tool in "${BUILD_TOOLS[@]}"; do
        if command -v "$tool" >/dev/null; then echo "ok      $tool"; else echo "absent  $tool (step build needs it on the device)"; fi
    done
    echo "== peer wheels ($PEER_WHEELS; optional)"
    local wheels=("$PEER_WHEELS"/*.whl)
    if [ -e "${wheels[0]}" ]; then
        for wheel in "${wheels[@]}"; do
            local bytes; bytes=$(stat -c %s "$wheel")
            if [[ "$wheel" == *-py3-none-any.whl ]] && [ "$bytes" -lt 1000000 ]; then
                echo "ok      $(basename "$wheel") ($bytes bytes; carry \"$PEER_WHEELS\")"
            else
                echo "BAD     $(basename "$wheel"): the peer wheels must be pure Python and under 1 MB"; missing=1
            fi
        done
        for peer in liger_kernel cut_cross_entropy; do
            ls "$PEER_WHEELS"/"$peer"-*.whl >/dev/null 2>&1 \
                || echo "absent  $peer wheel: that peer will be recorded as not installed"
        done
    else
        echo "absent  peer wheels in $PEER_WHEELS: liger and cut_cross_entropy will be recorded as not installed" \
             "(tests/gpu/fetch_peer_wheels.sh fetches them)"
    fi
    # One interpreter for the packages and the harness's selections (each start imports torch).
    echo "== Python packages ($PYTHON) and the steps' selections"
    PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$REPO:$REPO/python" "$PYTHON" - "${REQUIRED_MODULES[@]}" <<'EOF' || missing=1
import importlib
import sys

bad = []
for module in sys.argv[1:]:
    try:
        found = importlib.import_module(module)
        print(f"ok      {module} {getattr(found, '__version__', '')}")
    except Exception as error:  # noqa: BLE001 — any failure to import is a missing package
        bad.append(f"{module} ({type(error).__name__}: {error})")
for module, why in (("pybind11", "absent  pybind11: step build needs it on the device (--no-build-isolation)"),
                    ("faiss", "absent  faiss: not needed (the GPU image has none; its tests skip)")):
    try:
        importlib.import_module(module)
        print(f"ok      {module}")
    except Exception:  # noqa: BLE001
        print(why)
if not bad or not any(line.startswith("torch") for line in bad):
    from bench.impls import get_implementation
    from bench.presets import PRESETS
    from bench.problems import get_dtype
    from bench.shapes import get_shape

    for name in ("gpu-short", "gpu-scale"):
        preset = PRESETS.get(name)
        if preset is None:
            bad.append(f"preset {name} in bench/presets.py")
            continue
        for key, lookup in (("impls", get_implementation), ("shapes", get_shape), ("dtypes", get_dtype)):
            for item in filter(None, str(preset.get(key, "")).split(",")):
                try:
                    lookup(item)
                except ValueError as error:
                    bad.append(f"preset {name}: {error}")
        print(f"ok      preset {name}: {preset.get('impls')}")
    get_shape("Shard")
    import bench.tune  # noqa: F401 — step tune
    print("ok      bench.tune")
print("".join(f"MISSING {line}\n" for line in bad), end="")
sys.exit(1 if bad else 0)
EOF
    local collected
    collected=$(PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$REPO:$REPO/python" timeout 300 "$PYTHON" -m pytest -q \
        --collect-only -p no:cacheprovider "${GPU_TEST_ARGS[@]}" 2>&1 | grep -Eo '^[0-9]+(/[0-9]+)? tests? (collected|selected)' | tail -1)
    if [ -n "$collected" ] && [ "${collected%%[/ ]*}" -gt 0 ]; then
        echo "ok      gpu-tests selection: pytest ${GPU_TEST_ARGS[*]} → $collected"
    else
        echo "MISSING gpu-tests selection: pytest ${GPU_TEST_ARGS[*]} collects nothing"; missing=1
    fi
    if [ $missing -ne 0 ]; then
        echo "dry run: NOT READY (see MISSING / BAD above)"
        return 1
    fi
    echo "dry run: ready"
}

# ---------------------------------------------------------------------------------------------
# The steps. Each runs in $WORK with its log in $WORK/logs/<step>.log.
# ---------------------------------------------------------------------------------------------
run_env() {
    date -u +"date %Y-%m-%dT%H:%M:%SZ"
    if commit=$(git rev-parse HEAD 2>/dev/null); then
        echo "commit $commit$(git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
    else
        echo "commit ${CRFIQA_COMMIT:-unknown (no .git here: pass CRFIQA_COMMIT=<hash> in the call)}"
    fi
    nvidia-smi || true
    nvcc --version || true
    "$PYTHON" - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
for name in ("triton", "numpy", "pytest", "hypothesis", "pybind11", "cmake", "ninja", "faiss-cpu", "faiss-gpu",
             "liger-kernel", "cut-cross-entropy", "matplotlib"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
EOF
}

run_build() {
    env CRFIQA_BUILD_CUDA=1 MAX_JOBS="$(nproc)" CRFIQA_CUDA_ARCHS="$CRFIQA_CUDA_ARCHS" \
        "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index -e . \
        && "$PYTHON" -c "from crfiqa_kernels.backends import cuda; import sys; ok = cuda.available('cuda'); print('cuda backend available:', ok); sys.exit(0 if ok else 1)"
}

run_peers() {
    local wheels=("$PEER_WHEELS"/*.whl)
    if [ ! -e "${wheels[0]}" ]; then
        echo "no peer wheels in $PEER_WHEELS: liger and cut_cross_entropy will be recorded as not installed"
        return 0
    fi
    "$PYTHON" -m pip install -q --no-deps --no-index --no-compile --target "$WORK/peers" "${wheels[@]}" || return 1
    # What bench/impls/fused_peers.py imports; a peer that fails here is recorded as failed by the bench.
    "$PYTHON" - <<'EOF'
for module, attribute in (("liger_kernel.transformers.functional", "liger_fused_linear_cross_entropy"),
                          ("cut_cross_entropy", "linear_cross_entropy")):
    try:
        getattr(__import__(module, fromlist=[attribute]), attribute)
        print(f"{module}.{attribute}: imports")
    except Exception as error:  # noqa: BLE001
        print(f"{module}.{attribute}: does not import ({type(error).__name__}: {error}); its records will say why")
EOF
}

run_gpu_tests() {
    "$PYTHON" -m pytest -q -rfEs -p no:cacheprovider --junitxml="$WORK/logs/gpu-tests.xml" "${GPU_TEST_ARGS[@]}"
}

bench() { "$PYTHON" -m bench --out "$WORK/bench" "$@"; }
run_bench_bf16() { bench --preset gpu-short --name short-bf16; }
run_tune() { "$PYTHON" -m bench.tune --out "$WORK/bench/tune"; }
run_bench_fp32() { bench --preset gpu-short --dtypes fp32 --name short-fp32; }
run_bench_shard() { bench --preset gpu-short --shapes Shard --name short-shard; }
run_sanitizer() { tests/gpu/run_memcheck.sh -x; }
run_scale() { bench --preset gpu-scale --dtypes bf16 --impls authors_eager,triton,cuda --name scale-bf16; }

archive() {
    tar -czf "$OUT/run.tar.gz.partial" -C "$WORK" logs bench 2>/dev/null && mv "$OUT/run.tar.gz.partial" "$OUT/run.tar.gz"
}

summarize() {
    {
        echo "# Device run — tests/gpu/run_on_device.sh"
        echo
        grep -E '^(date|commit|python) ' "$WORK/logs/env.log" 2>/dev/null | sed 's/^/    /'
        echo
        echo "| step | status | seconds | limit s | estimate s |"
        echo "| --- | --- | ---: | ---: | ---: |"
        awk -F'\t' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}' "$OUT/steps.tsv"
        if [ -f "$WORK/logs/gpu-tests.log" ]; then
            echo; echo "## gpu-tests"; echo
            grep -E '^(FAILED|ERROR) |passed|failed' "$WORK/logs/gpu-tests.log" | tail -40 | sed 's/^/    /'
        fi
        for table in "$WORK"/bench/*.md; do
            [ -e "$table" ] || continue
            echo; echo "## $(basename "$table" .md)"; echo
            sed '1{/^# /d}' "$table"
        done
        for step in build peers sanitizer; do
            [ -f "$WORK/logs/$step.log" ] || continue
            echo; echo "## $step (last lines)"; echo
            tail -15 "$WORK/logs/$step.log" | sed 's/^/    /'
        done
    } >"$OUT/summary.md"
}

main_run() {
    local selected=("$@")
    [ ${#selected[@]} -gt 0 ] || mapfile -t selected < <(step_names)
    for name in "${selected[@]}"; do
        find_step "$name" >/dev/null || { echo "unknown step: $name (known: $(step_names | tr '\n' ' '))" >&2; exit 2; }
    done
    mkdir -p "$OUT" || { echo "cannot create OUT=$OUT" >&2; exit 2; }
    rm -rf "$WORK"; mkdir -p "$WORK/logs" "$WORK/bench" "$WORK/peers"
    : >"$OUT/steps.tsv"
    export PYTHONUNBUFFERED=1 PYTHON WORK OUT PEER_WHEELS
    # The H200's architecture alone: half the build time. Exported, so that the extension's tests
    # expect this list instead of the default "80;90a".
    export CRFIQA_CUDA_ARCHS="${CRFIQA_CUDA_ARCHS:-90a}"
    export PYTHONPATH="$WORK/peers:$REPO:$REPO/python${PYTHONPATH:+:$PYTHONPATH}"
    # The harness compiles in-process by default (a 2-core habit); the device has cores to spare.
    export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-$(nproc)}"
    local start failures=0
    start=$(date +%s)
    for name in "${selected[@]}"; do
        local step limit estimate minimum left status rc began took
        step=$(find_step "$name")
        limit=$(field "$step" 1); estimate=$(field "$step" 2); minimum=$(field "$step" 3)
        left=$(( BUDGET - RESERVE - ($(date +%s) - start) ))
        (( limit > left )) && limit=$left
        if (( limit < minimum )); then
            status="skipped: ${left}s left, needs ${minimum}s"
            printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" 0 "$(field "$step" 1)" "$estimate" >>"$OUT/steps.tsv"
            echo "== $name: $status"
            continue
        fi
        echo "== $name (limit ${limit}s, estimate ${estimate}s): $(field "$step" 4)"
        began=$(date +%s)
        # This script again, under `timeout`, running that one step (--internal-step; settings exported).
        timeout --kill-after=5 "$limit" "$REPO/tests/gpu/run_on_device.sh" --internal-step "$name" \
            >"$WORK/logs/$name.log" 2>&1
        rc=$?
        took=$(( $(date +%s) - began ))
        case $rc in
            0) status=ok ;;
            124|137) status="timed out at ${limit}s"; failures=1 ;;
            *) status="failed (exit $rc)"; failures=1 ;;
        esac
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$took" "$limit" "$estimate" >>"$OUT/steps.tsv"
        echo "== $name: $status in ${took}s"
        tail -5 "$WORK/logs/$name.log" | sed 's/^/   /'
        archive
    done
    summarize
    archive
    echo "== done in $(( $(date +%s) - start ))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
    return $failures
}

case "${1:-}" in
    --dry-run) dry_run; exit $? ;;
    --list) print_table; exit 0 ;;
    --internal-step) find_step "${2:-}" >/dev/null || exit 2; name=${2//-/_}; "run_$name"; exit $? ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) main_run "$@"; exit $? ;;
esac
