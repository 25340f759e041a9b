#!/usr/bin/env bash
# Print the Python base image `make images` builds on: $PYTHON_BASE when set; else the pinned slim image
# when the engine has it or can pull it; else, where no registry can be reached, the local base made from
# Debian's packages (built here by docker/base-image.sh when missing). Messages go to stderr.
set -uo pipefail
DEFAULT="${1:?usage: docker/python-base.sh DEFAULT LOCAL}"
LOCAL="${2:?usage: docker/python-base.sh DEFAULT LOCAL}"
if [ -n "${PYTHON_BASE:-}" ]; then
    echo "$PYTHON_BASE"
    exit 0
fi
if docker image inspect "$DEFAULT" >/dev/null 2>&1 || timeout 120 docker pull -q "$DEFAULT" >/dev/null 2>&1; then
    echo "$DEFAULT"
    exit 0
fi
echo "images: $DEFAULT cannot be pulled (no registry reachable); building on $LOCAL, made from Debian's packages" >&2
bash "$(dirname "$0")/base-image.sh" "$LOCAL" >&2 || exit 2
echo "$LOCAL"
