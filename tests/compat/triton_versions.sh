#!/usr/bin/env bash
# The Triton version policy (DESIGN §8): the Triton tests pass under every release from the one
# torch 2.11 pins (3.6.0) to the newest. For each version this makes a throwaway virtual
# environment that reuses the installed torch (--system-site-packages), installs that Triton in it,
# runs the Triton tests there — the interpreter tests and the offline sm_90 compile, i.e. every
# test under tests/crfiqa_kernels whose name or module mentions triton, gpu-marked ones deselected
# — and prints one verdict line per version. Exits 0 only when every version passed.
#
# Usage: tests/compat/triton_versions.sh [VERSION ...]     (default: 3.6.0 and the newest release)
# Environment:
#   CRFIQA_COMPAT_DIR     where the venvs and logs go (default ${TMPDIR:-/tmp}/crfiqa-triton-compat;
#                         outside the repository; delete it at will)
#   PYTHON                the interpreter whose torch is reused (default python3)
#   COMPAT_TIMEOUT        seconds allowed per version's test run (default 1800)
#   COMPAT_PYTEST_ARGS    replaces the test selection (default: tests/crfiqa_kernels -k triton -m "not gpu")
#   PIP_FIND_LINKS etc.   as usual: a folder of downloaded wheels works offline
#
# Cost, measured on the 2 shared cores of the development machine (load 8-10): 3.6.0 374 s (the
# tests fail fast there today), 3.9.0 1,280 s; each venv takes ~670 MB (the 3.6.0 wheel is 188 MB).
# In CI only the oldest needs this script: CI's own environment is the newest and its pytest run
# already covers it. So `tests/compat/triton_versions.sh 3.6.0` adds about the Triton tests' share of
# today's ~3-minute CI plus one wheel download, well inside the 20-minute CI budget — once the
# kernels pass under 3.6.0 (until then it would turn CI red).
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
PYTHON="${PYTHON:-python3}"
BASE="${CRFIQA_COMPAT_DIR:-${TMPDIR:-/tmp}/crfiqa-triton-compat}"
TIMEOUT="${COMPAT_TIMEOUT:-1800}"
OLDEST=3.6.0   # what torch 2.11 pins
mkdir -p "$BASE" || { echo "cannot create $BASE" >&2; exit 2; }

newest_release() {
    # `pip index versions` prints "triton (X.Y.Z)"; without an index, fall back to the installed one.
    local found
    found=$("$PYTHON" -m pip index versions triton 2>/dev/null | sed -n 's/^triton (\([^)]*\)).*/\1/p' | head -1)
    if [ -z "$found" ]; then
        found=$("$PYTHON" -c "import triton; print(triton.__version__)" 2>/dev/null)
        [ -n "$found" ] && echo "(no package index answered: the newest release is taken to be the installed $found)" >&2
    fi
    echo "$found"
}

if [ $# -gt 0 ]; then
    versions=("$@")
else
    newest=$(newest_release)
    [ -n "$newest" ] || { echo "cannot tell the newest Triton release (no index, none installed); name the versions" >&2; exit 2; }
    versions=("$OLDEST")
    [ "$newest" != "$OLDEST" ] && versions+=("$newest")
fi

if [ -n "${COMPAT_PYTEST_ARGS:-}" ]; then
    read -r -a selection <<<"$COMPAT_PYTEST_ARGS"
else
    selection=(tests/crfiqa_kernels -k triton -m "not gpu")
fi

verdicts=()
status=0
for version in "${versions[@]}"; do
    venv="$BASE/triton-$version"
    log="$BASE/triton-$version.log"
    start=$(date +%s)
    : >"$log"
    if [ ! -x "$venv/bin/python" ]; then
        "$PYTHON" -m venv --system-site-packages "$venv" >>"$log" 2>&1 \
            || { verdicts+=("triton $version: SETUP FAILED (venv; see $log)"); status=1; continue; }
    fi
    # --ignore-installed: the system's Triton stays where it is; the venv's copy shadows it.
    if ! "$venv/bin/python" -m pip install -q --no-deps --ignore-installed "triton==$version" >>"$log" 2>&1; then
        verdicts+=("triton $version: SETUP FAILED (pip install triton==$version; see $log)")
        status=1
        continue
    fi
    got=$(cd / && "$venv/bin/python" -c "import triton, numpy; print(triton.__version__, numpy.__version__)" 2>>"$log")
    imported="${got%% *}"
    if [ "$imported" != "$version" ]; then
        verdicts+=("triton $version: SETUP FAILED (the venv imports triton ${imported:-none}; see $log)")
        status=1
        continue
    fi
    echo "== triton $version (numpy ${got##* }): pytest ${selection[*]}  [log: $log]"
    # The repository first on the path: an editable install elsewhere must not shadow this checkout.
    PYTHONPATH="$REPO:$REPO/python${PYTHONPATH:+:$PYTHONPATH}" timeout "$TIMEOUT" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider -o addopts="" -rfE "${selection[@]}" >>"$log" 2>&1
    rc=$?
    seconds=$(( $(date +%s) - start ))
    summary=$(grep -E '(passed|failed|errors?|skipped|deselected|no tests ran).* in [0-9.]+s' "$log" | tail -1 | sed 's/^=* //; s/ =*$//')
    if [ $rc -eq 0 ]; then
        verdicts+=("triton $version (numpy ${got##* }): PASS — ${summary:-no summary} (${seconds}s)")
    else
        [ $rc -eq 124 ] && summary="timed out after ${TIMEOUT}s"
        failed=$(grep -E '^(FAILED|ERROR) ' "$log" | sed 's/ - .*//; s/^\(FAILED\|ERROR\) //' | head -3 | tr '\n' ' ')
        reasons=$(grep -E '^E +[A-Za-z.]*(Error|Exception)' "$log" | sed 's/^E *//' | cut -c1-120 | sort | uniq -c \
                  | sort -rn | head -2 | sed 's/^ *//' | paste -sd ';' -)
        verdicts+=("triton $version (numpy ${got##* }): FAIL — ${summary:-pytest exit $rc} (${seconds}s); first: ${failed:-see log}; most frequent: ${reasons:-see log}; log: $log")
        status=1
    fi
done

echo "== Triton version policy (DESIGN §8), $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo 'no git')"
printf '%s\n' "${verdicts[@]}"
exit $status
