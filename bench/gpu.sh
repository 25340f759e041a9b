#!/usr/bin/env bash
# The one prepared script for a GPU machine that has JAX with CUDA but no TensorFlow and no network:
# installs only the wheels shipped in bench/wheels/ (keras and the small dependencies that machine
# lacks, built for CPython 3.12 manylinux x86-64) into a temporary folder, then runs bench/gpu.py on
# the JAX backend for the four backbones and writes gpu.json, gpu.md and gpu.log to the output folder.
#
#   bash bench/gpu.sh OUTPUT_DIR          # on the GPU machine (or set OUT); about 7 minutes on one H200
#   bash bench/gpu.sh --smoke OUTPUT_DIR  # CPU dry run at tiny sizes (uses .venv/bin/python when present)
#   bash bench/gpu.sh OUTPUT_DIR --backbones vgg16   # options after the folder go to bench/gpu.py
#
# PYTHON picks the interpreter (default python3; .venv/bin/python for --smoke when it exists).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
smoke=()
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=(--smoke)
    shift
fi
out="${1:-${OUT:-}}"
if [[ $# -gt 0 ]]; then
    shift  # what follows the output folder goes to bench/gpu.py
fi
if [[ -z "$out" ]]; then
    echo "usage: bash bench/gpu.sh [--smoke] OUTPUT_DIR (or set OUT)" >&2
    exit 2
fi
if [[ -z "${PYTHON:-}" ]]; then  # the first interpreter that has JAX
    candidates=(python3 python)
    if [[ ${#smoke[@]} -gt 0 ]]; then
        candidates=("$root/.venv/bin/python" "${candidates[@]}")
    fi
    for candidate in "${candidates[@]}"; do
        if command -v "$candidate" >/dev/null && "$candidate" -c "import jax" 2>/dev/null; then
            PYTHON="$candidate"
            break
        fi
    done
    if [[ -z "${PYTHON:-}" ]]; then
        echo "no python with jax found (set PYTHON)" >&2
        exit 2
    fi
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
site="$(mktemp -d "${TMPDIR:-/tmp}/lumbar-gpu-site.XXXXXX")"
trap 'rm -rf "$site"' EXIT

# a wheel is installed only when the interpreter cannot already import its module (keras, namex,
# optree, typing_extensions): what the machine has stays as it is
for wheel in "$here"/wheels/*.whl; do
    module="$(basename "$wheel")"
    module="${module%%-*}"
    if "$PYTHON" -c "import $module" 2>/dev/null; then
        echo "using the installed $module"
        continue
    fi
    echo "installing $(basename "$wheel")"
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
        "$PYTHON" -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$site" "$wheel"
    else  # no pip: a wheel is a zip of what goes into site-packages
        "$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$site"
    fi
done

export PYTHONPATH="$site:$root/src${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax
export KERAS_HOME="$site/keras-home"
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL=2
if [[ ${#smoke[@]} -gt 0 ]]; then
    export JAX_PLATFORMS=cpu
fi
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    "$PYTHON" -c 'import platform, jax, keras; print("python", platform.python_version(), "jax", jax.__version__, "keras", keras.__version__, "devices", jax.devices())'
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm --format=csv || true
    fi
} 2>&1 | tee "$out/device.txt"
if [[ ${#smoke[@]} -gt 0 ]]; then
    options=(--smoke)
else  # ResNet50 trained end to end as well (comparable with published figures); stop in time for 540 s
    options=(--full --budget "${BUDGET:-470}")
fi
"$PYTHON" "$here/gpu.py" --out "$out" "${options[@]}" "$@" 2>&1 | tee "$out/gpu.log"
