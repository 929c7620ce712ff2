#!/usr/bin/env bash
# Make a Docker engine and the local base image available for the docker tests.
#
# Idempotent: installs Debian's docker.io and debootstrap only when missing,
# starts dockerd only when `docker info` fails, and builds xrun-base:bookworm
# only when the daemon does not have it yet. No container registry is reachable
# here, so the base image is made with debootstrap and `docker import`.
#
# Environment knobs:
#   XRUN_BASE_IMAGE  tag of the local base (default xrun-base:bookworm)
#   DEBIAN_MIRROR    mirror for debootstrap (default: debootstrap's own default mirror)
#   DOCKERD_LOG      where dockerd logs (default /var/log/xrun-dockerd.log)
set -euo pipefail

BASE_IMAGE="${XRUN_BASE_IMAGE:-xrun-base:bookworm}"
MIRROR=("${DEBIAN_MIRROR:-}")
[[ -n "${MIRROR[0]}" ]] || MIRROR=()
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/xrun-dockerd.log}"
# /usr/local/bin/docker (if present) lacks buildx; always use Debian's client.
DOCKER=/usr/bin/docker

log() { printf '[docker-setup] %s\n' "$*" >&2; }

if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi

missing=()
[[ -x /usr/bin/docker && -x /usr/sbin/dockerd ]] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q "${missing[@]}"
fi

# Talk to the default local socket, whatever DOCKER_HOST the caller had.
unset DOCKER_HOST DOCKER_CONTEXT

if ! "$DOCKER" info >/dev/null 2>&1; then
    if pgrep -x dockerd >/dev/null 2>&1; then
        log "dockerd is running but not answering yet; waiting"
    else
        log "starting dockerd (log: $DOCKERD_LOG)"
        # setsid: keep the daemon alive after this script (and its job) ends.
        "${SUDO[@]}" setsid /usr/sbin/dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 1 300); do
        "$DOCKER" info >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! "$DOCKER" info >/dev/null 2>&1; then
        log "dockerd did not become ready within 60 s; last log lines:"
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
fi
log "docker ready: $("$DOCKER" version --format '{{.Server.Version}}')"

if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE already present"
    exit 0
fi

log "building $BASE_IMAGE with debootstrap (about a minute)"
root="$(mktemp -d /tmp/xrun-base.XXXXXX)"
trap '"${SUDO[@]}" rm -rf "$root"' EXIT
"${SUDO[@]}" debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "${MIRROR[@]}" >"$root.log" 2>&1 || {
    log "debootstrap failed; last log lines:"
    tail -n 30 "$root.log" >&2
    exit 1
}
rm -f "$root.log"
# Apt lists and caches only add size to the image.
"${SUDO[@]}" rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
"${SUDO[@]}" tar --numeric-owner -C "$root" -c . | "$DOCKER" import - "$BASE_IMAGE" >/dev/null
log "base image $BASE_IMAGE ready ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes)"
