#!/usr/bin/env bash
# The development PostgreSQL: Debian's PostgreSQL server, running its OWN cluster on loopback for
# the tests of Carme's stores (the Debian default cluster, /etc/postgresql, port 5432, is left alone).
#
#   dev/postgres.sh up       install postgresql if missing, initdb the cluster, write its config,
#                            start it with pg_ctl, make the role and the database, check a login
#                            over TCP (idempotent: safe to run again, also while it runs)
#   dev/postgres.sh down     stop the cluster (the data stays)
#   dev/postgres.sh status   is it running, and a login as the test role
#
# Listens on 127.0.0.1:$CARME_POSTGRES_PORT (default 5433) only; the role `carme` (password login,
# scram-sha-256) owns the database `carme_test`. Under $CARME_DEV_STATE (default /var/lib/carme-dev):
#   postgres/                   the data directory (owner postgres, 0700)
#   run/postgres/               its unix socket (owner postgres, 0700: peer login as postgres only)
#   log/postgres.log            the server's log
#   secrets/postgres-password   the role's random password, no trailing newline (root, 0600)
#   secrets/postgres.pgpass     the same as a PGPASSFILE for 127.0.0.1 (root, 0600)
# The password is never printed nor put on a command line (psql reads it from stdin / PGPASSFILE).
# Must run as root on Debian 12. Fails loudly.
set -euo pipefail
umask 077

DEV_STATE=${CARME_DEV_STATE:-/var/lib/carme-dev}
DATA=$DEV_STATE/postgres
SOCKET_DIR=$DEV_STATE/run/postgres
LOG=$DEV_STATE/log/postgres.log
SECRET=$DEV_STATE/secrets/postgres-password
PGPASS=$DEV_STATE/secrets/postgres.pgpass
PORT=${CARME_POSTGRES_PORT:-5433}
ROLE=carme
DATABASE=carme_test

log() { printf 'postgres: %s\n' "$*" >&2; }
die() { printf 'postgres: ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=debian_packages.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/debian_packages.sh"
[ "$(id -u)" = 0 ] || die "run as root"
cd /  # the commands run as postgres cannot read the caller's directory

# the postinst makes (and may start) Debian's default cluster on 5432: not ours, left alone
install_packages() { install_debian_packages postgresql; }

bin_dir() {  # the server binaries: those of the data directory's version, else the newest installed
    local version
    if [ -s "$DATA/PG_VERSION" ]; then
        version=$(cat "$DATA/PG_VERSION")
        [ -x "/usr/lib/postgresql/$version/bin/pg_ctl" ] \
            || die "$DATA is a PostgreSQL $version cluster but /usr/lib/postgresql/$version/bin is missing"
        echo "/usr/lib/postgresql/$version/bin"
        return
    fi
    version=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | cut -d/ -f5 | sort -V | tail -n1)
    [ -n "$version" ] || die "no PostgreSQL server under /usr/lib/postgresql/*/bin (is postgresql installed?)"
    echo "/usr/lib/postgresql/$version/bin"
}

as_postgres() { runuser -u postgres -- "$@"; }

pg_ctl_() { as_postgres "$BIN/pg_ctl" -D "$DATA" "$@"; }

running() { [ -s "$DATA/PG_VERSION" ] && pg_ctl_ status >/dev/null 2>&1; }

port_holder() {  # the pid listening on 127.0.0.1:PORT (empty when free)
    ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}

make_dirs_and_secrets() {
    mkdir -p "$DEV_STATE/secrets" "$DEV_STATE/log" "$DATA" "$SOCKET_DIR"
    chmod 0700 "$DEV_STATE/secrets"
    # the server (user postgres) must pass through these to its data, socket and log (not list them)
    chmod go+x "$DEV_STATE" "$DEV_STATE/log" "$DEV_STATE/run"
    chown postgres:postgres "$DATA" "$SOCKET_DIR"
    chmod 0700 "$DATA" "$SOCKET_DIR"
    as_postgres test -w "$DATA" -a -w "$SOCKET_DIR" \
        || die "user postgres cannot reach $DATA or $SOCKET_DIR (a directory above is not searchable by others)"
    [ -e "$LOG" ] || install -m 0600 -o postgres -g postgres /dev/null "$LOG"
    if [ ! -s "$SECRET" ]; then
        head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$SECRET"
        log "generated $SECRET"
    fi
    printf '127.0.0.1:%s:*:%s:%s\n' "$PORT" "$ROLE" "$(cat "$SECRET")" >"$PGPASS.new"
    chown root:root "$SECRET" "$PGPASS.new"
    chmod 0600 "$SECRET" "$PGPASS.new"
    mv -f "$PGPASS.new" "$PGPASS"
}

init_cluster() {
    [ -s "$DATA/PG_VERSION" ] && return 0
    [ -z "$(ls -A "$DATA")" ] || die "$DATA is not empty and not a PostgreSQL data directory; move it away"
    as_postgres "$BIN/initdb" -D "$DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 --no-instructions >"$DEV_STATE/log/postgres-initdb.log" 2>&1 \
        || { cat "$DEV_STATE/log/postgres-initdb.log" >&2; die "initdb failed"; }
    echo "include 'carme-dev.conf'" >>"$DATA/postgresql.conf"
    log "made the cluster in $DATA ($("$BIN/postgres" --version))"
}

write_config() {  # our settings and pg_hba.conf; a running server reloads (or restarts) on a change
    local changed=0 f
    cat >"$DATA/carme-dev.conf.new" <<EOF
# Written by dev/postgres.sh: the Carme development database. Do not edit; edit the script.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKET_DIR'
password_encryption = 'scram-sha-256'
max_connections = 50
shared_buffers = 64MB
synchronous_commit = off   # test data: losing the last commit on a crash is fine, corruption is not
log_min_messages = warning
log_line_prefix = '%m [%p] %u@%d '
EOF
    cat >"$DATA/pg_hba.conf.new" <<EOF
# Written by dev/postgres.sh. Do not edit; edit the script.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer
host    all       $ROLE     127.0.0.1/32   scram-sha-256
EOF
    for f in carme-dev.conf pg_hba.conf; do
        chown postgres:postgres "$DATA/$f.new"
        chmod 0600 "$DATA/$f.new"
        if [ -f "$DATA/$f" ] && cmp -s "$DATA/$f.new" "$DATA/$f"; then
            rm -f "$DATA/$f.new"
        else
            mv -f "$DATA/$f.new" "$DATA/$f"
            changed=1
        fi
    done
    if [ "$changed" = 1 ] && running; then
        log "configuration changed: restarting"
        pg_ctl_ -m fast -w -t 60 restart -l "$LOG" >/dev/null || { tail -n 20 "$LOG" >&2; die "restart failed"; }
    fi
}

start() {
    running && return 0
    local holder
    holder=$(port_holder "$PORT")
    [ -z "$holder" ] || die "port $PORT is held by pid $holder ($(tr '\0' ' ' </proc/"$holder"/cmdline 2>/dev/null)); stop it or set CARME_POSTGRES_PORT"
    # pg_ctl removes a stale postmaster.pid (a machine that was restarted) and detaches the server
    pg_ctl_ -w -t 60 -l "$LOG" start >/dev/null || { tail -n 20 "$LOG" >&2; die "the server did not start (log: $LOG)"; }
    log "started on 127.0.0.1:$PORT (pid $(head -n1 "$DATA/postmaster.pid"))"
}

stop() {
    running || { log "not running"; return 0; }
    pg_ctl_ -m fast -w -t 60 stop >/dev/null || die "the server did not stop (log: $LOG)"
    log "stopped"
}

make_role_and_database() {
    # the password reaches psql on stdin as a variable; statements failing here are not logged
    {
        printf '\\set password %s\n' "$(cat "$SECRET")"
        cat <<EOF
SET log_min_error_statement = panic;
SET log_statement = 'none';
SELECT 'CREATE ROLE $ROLE LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
SELECT 'CREATE DATABASE $DATABASE OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE') \gexec
EOF
    } | as_postgres "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PORT" -U postgres -d postgres >/dev/null
}

check_login() {  # a login over TCP as the role, with the password from the PGPASSFILE
    PGPASSFILE=$PGPASS PGCONNECT_TIMEOUT=5 "$BIN/psql" -X -w -At -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DATABASE" \
        -c 'SHOW server_version'
}

up() {
    install_packages
    BIN=$(bin_dir)
    make_dirs_and_secrets
    init_cluster
    write_config
    start
    make_role_and_database
    local version
    version=$(check_login 2>&1) || die "login as $ROLE on 127.0.0.1:$PORT failed: $version"
    echo "postgres: ready: postgresql://$ROLE@127.0.0.1:$PORT/$DATABASE (PostgreSQL $version; password in $SECRET)"
}

case "${1:-up}" in
up) up ;;
down)
    [ -s "$DATA/PG_VERSION" ] || { log "no cluster in $DATA"; exit 0; }
    BIN=$(bin_dir)
    stop
    ;;
status)
    [ -s "$DATA/PG_VERSION" ] || { echo "postgres: no cluster in $DATA"; exit 3; }
    BIN=$(bin_dir)
    running || { echo "postgres: not running"; exit 3; }
    version=$(check_login 2>&1) || die "running (pid $(head -n1 "$DATA/postmaster.pid")) but login as $ROLE failed: $version"
    echo "postgres: running (pid $(head -n1 "$DATA/postmaster.pid")) on 127.0.0.1:$PORT, PostgreSQL $version, database $DATABASE"
    ;;
*) die "usage: $0 up|down|status" ;;
esac
