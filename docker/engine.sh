#!/usr/bin/env bash
# `make engine` / `make engine-down`: a Docker engine for `make images` and the container tests.
#
# up:   where an engine answers already (Docker Desktop on a laptop, a CI service, one started earlier),
#       nothing is done. Otherwise, as root on Debian, Debian's docker.io is installed when missing and
#       dockerd is started with the settings that work on machines without iptables, a network bridge or
#       cgroup v2 controllers: no iptables rules, no bridge (containers and builds use the host's
#       network), the cgroupfs driver, and container limits below the machine's open-files limit.
# down: stops the engine only when `up` started it (its pid file is in the state folder).
#
# Every failure is one line saying what to do. State: $LUMBAR_ENGINE_DIR (default data/engine).
set -uo pipefail

STATE="${LUMBAR_ENGINE_DIR:-data/engine}"
PIDFILE="$STATE/dockerd.pid"

answers() { docker info >/dev/null 2>&1; }

up() {
    if command -v docker >/dev/null && answers; then
        echo "engine: a Docker engine answers already; using it"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "engine: no Docker engine answers, and starting one here needs root: start Docker, or run as root"
        return 2
    fi
    mkdir -p "$STATE"
    if ! command -v dockerd >/dev/null; then
        if ! command -v apt-get >/dev/null; then
            echo "engine: no Docker engine answers and there is no apt-get to install one: install Docker"
            return 2
        fi
        echo "engine: installing Debian's docker.io (log: $STATE/apt.log)"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >"$STATE/apt.log" 2>&1; then
            echo "engine: installing docker.io failed (see $STATE/apt.log); is the Debian mirror reachable?"
            return 2
        fi
    fi
    # setsid: the engine outlives the make process that started it, until `make engine-down`
    setsid dockerd --iptables=false --ip6tables=false --bridge=none \
        --exec-opt native.cgroupdriver=cgroupfs \
        --default-ulimit nofile=1024:1024 --default-ulimit nproc=1024:1024 \
        --pidfile "$PIDFILE" >"$STATE/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 60); do
        if answers; then
            echo "engine: started dockerd (log: $STATE/dockerd.log; \`make engine-down\` stops it)"
            return 0
        fi
        sleep 1
    done
    echo "engine: dockerd did not answer within 60 s (see $STATE/dockerd.log)"
    return 2
}

down() {
    if [ ! -f "$PIDFILE" ]; then
        echo "engine: no engine was started by \`make engine\`; nothing to stop"
        return 0
    fi
    pid="$(cat "$PIDFILE")"
    kill "$pid" 2>/dev/null
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "engine: dockerd (pid $pid) did not stop within 30 s"
        return 2
    fi
    rm -f "$PIDFILE"
    echo "engine: stopped the dockerd that \`make engine\` started"
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    *) echo "usage: docker/engine.sh up|down"; exit 2 ;;
esac
