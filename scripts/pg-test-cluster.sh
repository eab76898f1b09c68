#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite: its own data directory under /tmp, listening
# on a free 127.0.0.1 port only, password authentication, run as an unprivileged user, deleted on
# stop. `make test` uses `run`; tests/postgres.py uses `start`/`stop` when nothing else started one.
#
#   scripts/pg-test-cluster.sh run -- CMD ARGS...  install if missing, start, run CMD with
#                                                  AZA_TEST_POSTGRES_URL set, stop (also on failure);
#                                                  exits with CMD's status
#   scripts/pg-test-cluster.sh install             install Debian's `postgresql` if no server is found
#                                                  (apt-get as root; otherwise says what to run)
#   scripts/pg-test-cluster.sh start DIR           start a cluster in DIR (created); print its URL
#   scripts/pg-test-cluster.sh stop DIR            stop it and delete DIR
#
# The URL names a superuser of the throwaway cluster; tests create one database per test in it.
set -euo pipefail

PG_USER_ROOT=${AZA_PG_TEST_OS_USER:-postgres}  # OS user the server runs as when we are root
SUPERUSER=aza_test

log() { echo "pg-test-cluster: $*" >&2; }

bindir() {
    local d
    # Debian keeps the server binaries out of PATH, one directory per major version
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

install() {
    if bindir >/dev/null; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "PostgreSQL not found: installing Debian's postgresql with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends postgresql >&2
        bindir >/dev/null && return 0
        log "apt-get finished but no initdb/pg_ctl was found"; return 1
    fi
    log "PostgreSQL is not installed and this is not root, so it cannot be installed here."
    log "Install the server once (Debian/Ubuntu: sudo apt-get install postgresql; Fedora: sudo dnf install"
    log "postgresql-server; macOS: brew install postgresql), or point the tests at a server you have with"
    log "AZA_TEST_POSTGRES_URL=postgresql+psycopg://USER:PASSWORD@127.0.0.1:PORT/postgres (needs CREATEDB)."
    return 1
}

# run a command as the cluster's owner: ourselves, or an unprivileged user when we are root
as_owner() {
    if [ "$(id -u)" != 0 ]; then "$@"; return; fi
    if command -v runuser >/dev/null 2>&1; then runuser -u "$PG_USER_ROOT" -- "$@"; return; fi
    su -s /bin/sh "$PG_USER_ROOT" -c "$(printf '%q ' "$@")"
}

ensure_os_user() {
    [ "$(id -u)" = 0 ] || return 0
    id -u "$PG_USER_ROOT" >/dev/null 2>&1 && return 0
    log "creating system user $PG_USER_ROOT to run the test server (initdb refuses root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER_ROOT"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local dir=$1 bin port password
    bin=$(bindir) || { log "no PostgreSQL server binaries (run: $0 install)"; return 1; }
    ensure_os_user
    mkdir -p "$dir"
    chmod 700 "$dir"
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    printf '%s\n' "$password" >"$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown -R "$PG_USER_ROOT" "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U "$SUPERUSER" --pwfile="$dir/pwfile" --auth-host=scram-sha-256 \
        --auth-local=peer -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
        || { log "initdb failed:"; cat "$dir/initdb.log" >&2; return 1; }
    rm -f "$dir/pwfile"
    for _ in 1 2 3; do  # a port picked free can be taken before the server binds it: try another
        port=$(free_port)
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
            "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null; then
            echo "$port" >"$dir/port"
            echo "postgresql+psycopg://$SUPERUSER:$password@127.0.0.1:$port/postgres"
            return 0
        fi
    done
    log "the server did not start:"; tail -n 20 "$dir/server.log" >&2 || true
    return 1
}

stop() {
    local dir=$1 bin
    [ -d "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ] && bin=$(bindir); then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

run() {
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { log "usage: $0 run -- CMD ARGS..."; return 2; }
    local url rc=0  # dir stays global: the EXIT trap needs it after run returns
    if [ -n "${AZA_TEST_POSTGRES_URL:-}" ]; then
        log "using the server in AZA_TEST_POSTGRES_URL"
        "$@"; return
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/aza-pg-test.XXXXXX")
    trap 'stop "$dir"' EXIT
    trap 'exit 130' INT TERM
    if install && url=$(start "$dir"); then
        log "throwaway cluster on ${url##*@} (data in $dir)"
        AZA_TEST_POSTGRES_URL=$url "$@" || rc=$?
    else
        log "no PostgreSQL for the tests; its tests fail when CI is set and skip otherwise"
        "$@" || rc=$?
    fi
    return $rc
}

cmd=${1:-}
shift || true
case "$cmd" in
    run) run "$@" ;;
    install) install ;;
    start) [ $# -eq 1 ] || { log "usage: $0 start DIR"; exit 2; }; start "$1" ;;
    stop) [ $# -eq 1 ] || { log "usage: $0 stop DIR"; exit 2; }; stop "$1" ;;
    *) log "usage: $0 run -- CMD... | install | start DIR | stop DIR"; exit 2 ;;
esac
