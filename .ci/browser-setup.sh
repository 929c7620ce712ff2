#!/usr/bin/env bash
# Make a headless browser available for the report's browser test
# (tests/report/test_browser.py, marker `browser`).
#
# Idempotent: installs Debian's `chromium` only when no chromium binary is on
# PATH; `apt-get update` runs once, right before that install. Nothing is
# downloaded outside the Debian archive (no browser builds of its own).
set -euo pipefail

log() { printf '[browser-setup] %s\n' "$*" >&2; }

find_chromium() {
    command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi

if [[ -z "$(find_chromium)" ]]; then
    log "installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q chromium fonts-liberation
fi

bin="$(find_chromium)"
if [[ -z "$bin" ]]; then
    log "chromium is still missing after the install"
    exit 1
fi
log "chromium ready: $("$bin" --version 2>/dev/null || echo "$bin")"
