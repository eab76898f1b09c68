#!/usr/bin/env bash
# nginx for the scale-out test (tests/test_hostile_b_scale_out.py runs deploy/nginx.conf in front of
# two instances). Installs Debian's `nginx` with apt-get when no nginx binary is found and we are
# root, as scripts/pg-test-cluster.sh does for PostgreSQL; otherwise says what to run. The package's
# own service is not started (the test runs nginx itself, on a loopback port, as a child process).
set -euo pipefail

log() { echo "nginx-install: $*" >&2; }

found() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

if found; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "nginx not found: installing Debian's nginx with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # policy-rc.d keeps the package from starting its own service on port 80 (restored afterwards)
    restore=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && restore=1
    fi
    apt-get install -y -qq --no-install-recommends nginx >&2 || status=$?
    [ -n "$restore" ] && rm -f /usr/sbin/policy-rc.d
    [ "${status:-0}" = 0 ] || { log "apt-get install nginx failed"; exit 1; }
    found && exit 0
    log "apt-get finished but no nginx binary was found"; exit 1
fi
log "nginx is not installed and this is not root, so it cannot be installed here."
log "Install it once (Debian/Ubuntu: sudo apt-get install nginx; Fedora: sudo dnf install nginx; macOS: brew install nginx)."
exit 1
