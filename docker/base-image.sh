#!/usr/bin/env bash
# `make base-image`: a Python 3.11 base image made from Debian's packages, for machines that reach no
# container registry (the images' default base, python:3.11.*-slim-bookworm, cannot be pulled there).
#
# debootstrap installs a minimal Debian bookworm (python3 3.11, python3-venv, ca-certificates) from the
# mirror apt already uses, and `docker import` turns the folder into an image. Needs root (debootstrap),
# a running engine (`make engine`) and the Debian mirror. Usage: docker/base-image.sh NAME [--force]
set -uo pipefail

NAME="${1:?usage: docker/base-image.sh NAME [--force]}"
FORCE="${2:-}"
SUITE=bookworm

if ! docker info >/dev/null 2>&1; then
    echo "base-image: no Docker engine answers: run \`make engine\` first"
    exit 2
fi
if [ -z "$FORCE" ] && docker image inspect "$NAME" >/dev/null 2>&1; then
    echo "base-image: $NAME exists already (--force builds it again)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "base-image: debootstrap needs root: run as root, or give PYTHON_BASE an image you can pull"
    exit 2
fi
if ! command -v debootstrap >/dev/null; then
    echo "base-image: installing Debian's debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 \
        || { echo "base-image: installing debootstrap failed; is the Debian mirror reachable?"; exit 2; }
fi
# the mirror apt uses here (deb822 sources or a one-line sources.list), else Debian's own
mirror="$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -n 1 | awk '{print $2}')"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
started=$SECONDS
echo "base-image: debootstrap $SUITE from $mirror (about a minute)"
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$root" "$mirror" \
    >"$root.log" 2>&1; then
    echo "base-image: debootstrap failed (see $root.log)"
    exit 2
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
if ! tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$NAME" >/dev/null; then
    echo "base-image: docker import failed"
    exit 2
fi
rm -f "$root.log"
echo "base-image: built $NAME from Debian $SUITE in $((SECONDS - started)) s ($(docker run --rm --network host "$NAME" python3 -V))"
