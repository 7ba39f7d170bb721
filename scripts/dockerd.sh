#!/usr/bin/env bash
# A Docker daemon for the containers tier and the image builds, on a machine without one
# (run as root; Debian's docker.io). No bridge and no iptables rules: every build and
# container uses the host's network, so no container traffic goes to a private address
# range. Its data root and socket are its own; the data root keeps the layer cache.
#
#   eval "$(scripts/dockerd.sh start)"   # starts it (once) and exports DOCKER_HOST
#   scripts/dockerd.sh stop              # stops it by its PID
set -euo pipefail

root="${PETR4_DOCKERD_ROOT:-/var/tmp/petr4-dockerd}"
socket="unix://$root/docker.sock"
pidfile="$root/dockerd.pid"

answers() { docker -H "$socket" version >/dev/null 2>&1; }

case "${1:-}" in
start)
    mkdir -p "$root"
    if ! answers; then
        dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
            --ip-masq=false --data-root "$root/data" --exec-root "$root/exec" \
            --pidfile "$pidfile" -H "$socket" >"$root/dockerd.log" 2>&1 &
        for _ in $(seq 120); do answers && break || sleep 0.5; done
        answers || { tail -20 "$root/dockerd.log" >&2; exit 1; }
    fi
    echo "export DOCKER_HOST=$socket"
    ;;
stop)
    if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null && sleep 0.5 || break; done
    fi
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
