#!/usr/bin/env bash
# Debian's headless-capable Chromium for the SMART app's browser test (tests/test_smart_browser.py).
#
#   scripts/chromium.sh install   install Debian's `chromium` package if /usr/bin/chromium is missing
#                                 (apt-get as root; otherwise says what to run); prints the binary's path
#
# npm's Playwright cannot download a browser here, so the test drives this one with playwright-core.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_chromium() {
    local c
    for c in "${AZA_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
    done
    return 1
}

install() {
    if find_chromium; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "Chromium not found: installing Debian's chromium with apt-get (about 100 MB, 1-3 min)"
        export DEBIAN_FRONTEND=noninteractive
        # another apt run on the machine holds the lock for a while: wait for it instead of failing
        apt-get -o DPkg::Lock::Timeout=600 update -q >&2
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >&2
        find_chromium && return 0
        log "apt-get finished but no chromium binary was found"; return 1
    fi
    log "Install Chromium once (Debian/Ubuntu: sudo apt-get install chromium), or set AZA_CHROMIUM"
    return 1
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
