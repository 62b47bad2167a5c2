#!/usr/bin/env bash
# Install the PostgreSQL and MariaDB *server binaries* that rotation.tools.sandbox starts as throwaway
# servers (tests, `rotation demo`, benchmarks), and PgBouncer, which the sandbox puts in front of
# its PostgreSQL to test rotation through a pooler, and Redis (redis-server, for the ACL users of
# engine `redis`). Idempotent: installs only what is missing and
# exits 0 at once when all are present.
#
# It does NOT start or enable the distribution's own database services: the sandbox runs its own
# servers on free loopback ports, from its own data directories. On Debian/Ubuntu a Debian
# policy-rc.d (exit 101, "action forbidden") keeps the package scripts from starting the services
# during the install, and the services are disabled afterwards. Note that the Debian postgresql
# package still creates (but, here, does not start) its default cluster under /var/lib/postgresql,
# and the pgbouncer package its /etc/pgbouncer (which the sandbox never reads).
#
# Usage: bash scripts/install-db-servers.sh
set -euo pipefail

log() { printf 'install-db-servers: %s\n' "$*"; }

have_postgres() {
    local bindir
    if command -v pg_config >/dev/null 2>&1; then
        bindir="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ]; then
            return 0
        fi
    fi
    for initdb in /usr/lib/postgresql/*/bin/initdb; do
        if [ -x "$initdb" ] && [ -x "$(dirname "$initdb")/postgres" ]; then
            return 0
        fi
    done
    command -v initdb >/dev/null 2>&1
}

find_one() {  # find_one NAME...: true if any NAME is on PATH or in an sbin/bin directory
    local name dir
    for name in "$@"; do
        command -v "$name" >/dev/null 2>&1 && return 0
        for dir in /usr/sbin /usr/local/sbin /usr/bin /usr/local/bin; do
            [ -x "$dir/$name" ] && return 0
        done
    done
    return 1
}

have_mariadb() {
    find_one mariadbd mysqld && find_one mariadb-install-db mysql_install_db
}

have_pgbouncer() {
    find_one pgbouncer
}

have_redis() {
    find_one redis-server
}

missing=()
if have_postgres; then
    log "PostgreSQL server binaries found"
else
    log "PostgreSQL server binaries (initdb, postgres) missing"
    missing+=(postgresql)
fi
if have_mariadb; then
    log "MariaDB server binaries found"
else
    log "MariaDB server binaries (mariadbd, mariadb-install-db) missing"
    missing+=(mariadb-server)
fi
if have_pgbouncer; then
    log "PgBouncer binary found"
else
    log "PgBouncer binary (pgbouncer) missing"
    missing+=(pgbouncer)
fi
if have_redis; then
    log "Redis server binary found"
else
    log "Redis server binary (redis-server) missing"
    missing+=(redis-server)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get on this machine: install ${missing[*]} with your package manager"
    log "(macOS: brew install postgresql@16 mariadb pgbouncer redis;" \
        "Fedora: dnf install postgresql-server mariadb-server pgbouncer redis)"
    log "and do not start their services: the sandbox starts its own servers"
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "not root and no sudo: run as root: apt-get install -y --no-install-recommends ${missing[*]}"
        exit 1
    fi
fi

# Keep the package scripts from starting the services (honoured by invoke-rc.d and
# deb-systemd-invoke). Only if no policy is in place already, and removed again on exit.
POLICY=/usr/sbin/policy-rc.d
policy_added=0
cleanup() {
    if [ "$policy_added" -eq 1 ]; then
        log "removing temporary $POLICY"
        ${SUDO[@]+"${SUDO[@]}"} rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
    log "adding a temporary $POLICY so the install does not start the services"
    printf '#!/bin/sh\nexit 101\n' | ${SUDO[@]+"${SUDO[@]}"} tee "$POLICY" >/dev/null
    ${SUDO[@]+"${SUDO[@]}"} chmod 755 "$POLICY"
    policy_added=1
fi

log "running: ${SUDO[*]:+${SUDO[*]} }apt-get update"
${SUDO[@]+"${SUDO[@]}"} apt-get update
log "running: ${SUDO[*]:+${SUDO[*]} }apt-get install -y --no-install-recommends ${missing[*]}"
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"

# The packages enable their services for the next boot; the sandbox does not want them.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for pkg in "${missing[@]}"; do
        case "$pkg" in
            postgresql) unit=postgresql ;;
            mariadb-server) unit=mariadb ;;
            pgbouncer) unit=pgbouncer ;;
            redis-server) unit=redis-server ;;
            *) continue ;;
        esac
        log "disabling (and stopping, if running) the $unit service we just installed"
        ${SUDO[@]+"${SUDO[@]}"} systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi

if have_postgres && have_mariadb && have_pgbouncer && have_redis; then
    log "done: PostgreSQL and MariaDB server binaries, PgBouncer and Redis are installed"
else
    log "the install finished but server binaries are still missing; see the output above"
    exit 1
fi
