#!/usr/bin/env bash
# Downloads the peers' wheels that the device call installs offline (tests/gpu/run_on_device.sh,
# step "peers"): Liger-Kernel and Cut Cross-Entropy, whose fused linear cross-entropy the short
# benchmark times. Both are pure-Python wheels (Triton kernels compiled at run time) that accept
# Triton 3.6, the one the GPU image's torch pins. They land in .peer-wheels/ (ignored by git), the
# path to name in the device call's `carry`:  carry: [".peer-wheels"]
# Usage: tests/gpu/fetch_peer_wheels.sh [REQUIREMENT ...]
#        (default: liger-kernel==0.8.5 cut-cross-entropy==25.1.1)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST="${PEER_WHEELS:-.peer-wheels}"
MAX_BYTES=1000000   # each must stay under 1 MB: the whole carried tree is limited to 64 MiB
PYTHON="${PYTHON:-python3}"
requirements=("$@")
[ ${#requirements[@]} -gt 0 ] || requirements=(liger-kernel==0.8.5 cut-cross-entropy==25.1.1)

mkdir -p "$DEST"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$DEST" "${requirements[@]}" \
    || { echo "pip download failed for: ${requirements[*]}" >&2; exit 1; }

status=0
for wheel in "$DEST"/*.whl; do
    name=$(basename "$wheel")
    bytes=$(stat -c %s "$wheel")
    if [[ "$name" != *-py3-none-any.whl ]]; then
        echo "REJECTED $name: not a pure-Python wheel (py3-none-any); it would not install on the GPU machine" >&2
        rm -f "$wheel"; status=1
    elif [ "$bytes" -ge "$MAX_BYTES" ]; then
        echo "REJECTED $name: $bytes bytes, not under $MAX_BYTES" >&2
        rm -f "$wheel"; status=1
    else
        echo "ok $name ($bytes bytes)"
    fi
done
echo "Carry \"$DEST\" in the device call: run(command='tests/gpu/run_on_device.sh', carry=['$DEST'])"
exit $status
