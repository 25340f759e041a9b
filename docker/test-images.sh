#!/usr/bin/env bash
# `make test-images`: the project's images on a real engine, then the pipelines inside them.
#
# 1. an engine: the one that answers, else Debian's started here (docker/engine.sh). Where none can be
#    started (no root, no Debian mirror, a machine that cannot run dockerd) this says so in one line and
#    exits 0: the container tests are skipped, not failed. From here on any failure fails.
# 2. `make images`: the Python base (pulled, or made from Debian's packages), the wheels, every image
#    and its SBOM; cached layers make a second run quick.
# 3. tests/images/: the services in their containers as k8s/base runs them, and dataset_c, procedure1
#    and the report under kfp's subprocess and Docker runners, compared on their outputs.
# Each stage prints its time. Every container the tests start is removed, and the engine is stopped
# again when this script started it.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE="${LUMBAR_ENGINE_DIR:-data/engine}"
BIN="${BIN:-.venv/bin}"
began=$SECONDS
say() { echo "test-images: $*"; }
timed() { say "$1: $(( SECONDS - $2 )) s"; }

had_engine_here=""
[ -f "$STATE/dockerd.pid" ] && had_engine_here=1
t=$SECONDS
if ! message="$(bash docker/engine.sh up)"; then
    say "skipped: no Docker engine can be started on this machine (${message#engine: })"
    exit 0
fi
echo "$message"
started_engine=""
[ -z "$had_engine_here" ] && [ -f "$STATE/dockerd.pid" ] && started_engine=1

cleanup() {
    local left
    left="$(docker ps -aq --filter label=lumbar.stack=1 2>/dev/null)"
    [ -n "$left" ] && docker rm --force --volumes $left >/dev/null 2>&1
    if [ -n "$started_engine" ]; then
        bash docker/engine.sh down
    fi
}
trap cleanup EXIT
timed "engine" "$t"

t=$SECONDS
if ! make --no-print-directory images; then
    say "failed: building the images failed (the lines above say which step)"
    exit 2
fi
timed "images (Python base, wheels, builds, SBOMs)" "$t"

t=$SECONDS
"$BIN/python" -m pytest -m images -q --durations=10 tests/images
status=$?
timed "pipelines and services in containers" "$t"
say "total: $(( SECONDS - began )) s"
exit $status
