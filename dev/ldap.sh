#!/usr/bin/env bash
# The development LDAP directory: a standalone OpenLDAP slapd (Debian's slapd 2.5) on loopback,
# with its own CA, config, database and log, holding the test directory dc=example,dc=org that the
# dev cluster's unix users match (same uidNumber and home, as sssd/nslcd would map them).
#
#   dev/ldap.sh up       install slapd/ldap-utils if missing, make the CA and server certificate,
#                        write slapd.conf, load the directory (again if the script's directory
#                        changed), start slapd, check a StartTLS bind (idempotent)
#   dev/ldap.sh reset    reload the canonical test directory (undo what a test changed), then up
#   dev/ldap.sh down     stop slapd (the state dir stays)
#   dev/ldap.sh status   is it running, and a StartTLS whoami as the service account
#   dev/ldap.sh users    the test users, their groups and passwords (for the demo)
#
# Listens on ldap://127.0.0.1:3389 (StartTLS required for binds) and ldaps://127.0.0.1:6636.
# Everything lives under $CARME_DEV_STATE/ldap (default /var/lib/carme-dev/ldap, mode 0700):
#   tls/ca.crt            the test CA the hub trusts (tls/*.key: 0600)
#   secrets/passwords     "name password" of every test user: random, made at first setup (0600)
#   secrets/service-password, secrets/manager-password   service account (search-then-bind) and
#                         rootdn passwords, no trailing newline (0600; ldapadd -y reads them)
#   log/slapd.log         slapd's stats log (one "SEARCH RESULT ... nentries=N" line per search)
# The system slapd that Debian's package may have started (port 389, /etc/ldap) is not used.
# Must run as root on Debian 12. Fails loudly.
set -euo pipefail
umask 077

DEV_STATE=${CARME_DEV_STATE:-/var/lib/carme-dev}
STATE=$DEV_STATE/ldap
LDAP_PORT=${CARME_LDAP_PORT:-3389}
LDAPS_PORT=${CARME_LDAPS_PORT:-6636}
URLS="ldap://127.0.0.1:$LDAP_PORT/ ldaps://127.0.0.1:$LDAPS_PORT/"
SUFFIX="dc=example,dc=org"
MANAGER_DN="cn=manager,$SUFFIX"
SERVICE_DN="cn=carme-hub,ou=services,$SUFFIX"
PIDFILE=$STATE/run/slapd.pid
# name uidNumber: the unix users dev/cluster.sh creates have the same numbers
USERS=("alice 10001" "bob 10002" "carol 10003" "dave 10004" "erin 10005" "frank 10006" "admin 10010")
PRIMARY_GID=10000
DISABLED_USERS=(frank)  # shadowExpire=1 (1970-01-02): expired long ago
# group: members. groupOfNames under ou=groups (member: DN) and the same as posixGroup under
# ou=posixgroups (memberUid: name), so both group schemas the authenticator supports are testable.
DIR_GROUPS=("carme-admins 10100 admin carol" "carme-power 10101 dave" "carme-users 10102 alice erin frank")

log() { printf 'ldap: %s\n' "$*" >&2; }
die() { printf 'ldap: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

# shellcheck source=debian_packages.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/debian_packages.sh"
# noninteractive: the postinst makes a default /etc/ldap db we do not use; it may start a
# system slapd on port 389 (not ours), which is left alone
install_packages() { install_debian_packages slapd ldap-utils openssl; }

# the pid file names a live slapd (a machine restored from a snapshot keeps stale pid files)
pid_alive() {
    local pid
    [ -f "$PIDFILE" ] && pid=$(cat "$PIDFILE") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slapd ]
}

port_holder() {  # the pid listening on 127.0.0.1:PORT (empty when free)
    ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}

random_password() { head -c 18 /dev/urandom | base64 | tr -d '/+=\n'; }

make_dirs() {
    mkdir -p "$STATE"/{tls,secrets,run,log,db}
    chmod 0700 "$STATE" "$STATE/tls" "$STATE/secrets" "$STATE/db"
}

make_secrets() {
    local f entry name
    for f in manager-password service-password; do
        [ -s "$STATE/secrets/$f" ] || { random_password >"$STATE/secrets/$f"; log "generated secrets/$f"; }
    done
    touch "$STATE/secrets/passwords"
    for entry in "${USERS[@]}"; do
        read -r name _ <<<"$entry"
        grep -q "^$name " "$STATE/secrets/passwords" || printf '%s %s\n' "$name" "$(random_password)" >>"$STATE/secrets/passwords"
    done
    chmod 0600 "$STATE"/secrets/*
}

make_tls() {
    local tls=$STATE/tls
    if [ ! -s "$tls/ca.crt" ] || [ ! -s "$tls/ca.key" ]; then
        openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$tls/ca.key" \
            -out "$tls/ca.crt" -subj "/O=Carme development/CN=Carme dev LDAP test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        rm -f "$tls/server.crt"
        log "made the test CA $tls/ca.crt"
    fi
    if [ ! -s "$tls/server.crt" ] || ! openssl x509 -checkend 86400 -noout -in "$tls/server.crt" >/dev/null; then
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE" >"$tls/server.ext"
        openssl req -new -newkey rsa:2048 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" \
            -subj "/O=Carme development/CN=127.0.0.1" 2>/dev/null
        openssl x509 -req -sha256 -days 825 -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
            -CAcreateserial -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
        rm -f "$tls/server.csr" "$tls/server.ext"
        log "made the server certificate for 127.0.0.1/localhost"
    fi
    chmod 0600 "$tls"/*.key
    chmod 0644 "$tls/ca.crt" "$tls/server.crt"
    openssl verify -CAfile "$tls/ca.crt" "$tls/server.crt" >/dev/null || die "server certificate does not verify"
}

password_of() { awk -v n="$1" '$1 == n {print $2}' "$STATE/secrets/passwords"; }

hash_file() {  # hash_file FILE: {SSHA} hash of FILE's contents (the password never on a command line)
    slappasswd -n -h '{SSHA}' -T "$1"
}

hash_password_of() {
    local tmp
    tmp=$(mktemp "$STATE/secrets/.pw.XXXXXX")
    password_of "$1" | tr -d '\n' >"$tmp"
    hash_file "$tmp"
    rm -f "$tmp"
}

write_config() {  # slapd.conf; a running slapd is restarted when it changed (new certificate, ...)
    local manager_hash
    # hashed once (the salt is random): the same password gives the same file on every run
    [ -s "$STATE/secrets/manager-password.hash" ] || hash_file "$STATE/secrets/manager-password" >"$STATE/secrets/manager-password.hash"
    manager_hash=$(cat "$STATE/secrets/manager-password.hash")
    cat >"$STATE/slapd.conf.new" <<EOF
# Written by dev/ldap.sh: the Carme development directory. Do not edit; edit the script.
include         /etc/ldap/schema/core.schema
include         /etc/ldap/schema/cosine.schema
include         /etc/ldap/schema/nis.schema
include         /etc/ldap/schema/inetorgperson.schema

pidfile         $PIDFILE
argsfile        $STATE/run/slapd.args
modulepath      /usr/lib/ldap
moduleload      back_mdb
loglevel        stats

TLSCACertificateFile   $STATE/tls/ca.crt
TLSCertificateFile     $STATE/tls/server.crt
TLSCertificateKeyFile  $STATE/tls/server.key
# simple binds (passwords) only over TLS: StartTLS on $LDAP_PORT or LDAPS on $LDAPS_PORT
security        simple_bind=128
disallow        bind_anon

database        mdb
maxsize         104857600
suffix          "$SUFFIX"
rootdn          "$MANAGER_DN"
rootpw          $manager_hash
directory       $STATE/db
index           objectClass eq
index           uid,cn,memberUid,member eq

access to attrs=userPassword
        by anonymous auth
        by * none
access to *
        by dn.exact="$SERVICE_DN" read
        by users read
        by * none
EOF
    chmod 0600 "$STATE/slapd.conf.new"
    if [ -f "$STATE/slapd.conf" ] && cmp -s "$STATE/slapd.conf.new" "$STATE/slapd.conf"; then
        rm -f "$STATE/slapd.conf.new"
        return 0
    fi
    mv "$STATE/slapd.conf.new" "$STATE/slapd.conf"
    if pid_alive; then
        log "slapd.conf changed: restarting slapd"
        stop_slapd
    fi
}

write_ldif() {  # the canonical test directory on stdout
    local entry name uid gid members m
    cat <<EOF
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
o: Example (Carme development)
dc: example

dn: ou=people,$SUFFIX
objectClass: organizationalUnit
ou: people

dn: ou=groups,$SUFFIX
objectClass: organizationalUnit
ou: groups

dn: ou=posixgroups,$SUFFIX
objectClass: organizationalUnit
ou: posixgroups

dn: ou=services,$SUFFIX
objectClass: organizationalUnit
ou: services

dn: $SERVICE_DN
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: carme-hub
description: JupyterHub's search account (search-then-bind)
userPassword: $(hash_file "$STATE/secrets/service-password")

EOF
    for entry in "${USERS[@]}"; do
        read -r name uid <<<"$entry"
        cat <<EOF
dn: uid=$name,ou=people,$SUFFIX
objectClass: inetOrgPerson
objectClass: posixAccount
objectClass: shadowAccount
uid: $name
cn: ${name^} Example
sn: Example
givenName: ${name^}
mail: $name@example.org
uidNumber: $uid
gidNumber: $PRIMARY_GID
homeDirectory: /home/$name
loginShell: /bin/bash
userPassword: $(hash_password_of "$name")
EOF
        if [[ " ${DISABLED_USERS[*]} " == *" $name "* ]]; then echo "shadowExpire: 1"; fi
        echo
    done
    for entry in "${DIR_GROUPS[@]}"; do
        read -r name gid members <<<"$entry"
        printf 'dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\n' "$name" "$SUFFIX" "$name"
        for m in $members; do printf 'member: uid=%s,ou=people,%s\n' "$m" "$SUFFIX"; done
        printf '\ndn: cn=%s,ou=posixgroups,%s\nobjectClass: posixGroup\ncn: %s\ngidNumber: %s\n' \
            "$name" "$SUFFIX" "$name" "$gid"
        for m in $members; do printf 'memberUid: %s\n' "$m"; done
        echo
    done
}

directory_version() {  # what the canonical directory is made of (not the random salts)
    { declare -p USERS DISABLED_USERS DIR_GROUPS PRIMARY_GID; cat "$STATE/secrets/passwords" "$STATE/secrets/service-password"; } | sha256sum | cut -d' ' -f1
}

load_directory() {  # (re)load the canonical directory with slapadd while slapd is stopped
    stop_slapd
    find "$STATE/db" -mindepth 1 -delete
    write_ldif >"$STATE/directory.ldif"
    slapadd -q -f "$STATE/slapd.conf" -l "$STATE/directory.ldif" >/dev/null
    directory_version >"$STATE/directory.version"
    log "loaded the test directory $SUFFIX ($(grep -c '^dn: ' "$STATE/directory.ldif") entries)"
}

start_slapd() {
    pid_alive && return 0
    local port holder
    for port in "$LDAP_PORT" "$LDAPS_PORT"; do
        holder=$(port_holder "$port")
        [ -z "$holder" ] || die "port $port is held by pid $holder ($(tr '\0' ' ' </proc/"$holder"/cmdline 2>/dev/null)); stop it or set CARME_LDAP_PORT/CARME_LDAPS_PORT"
    done
    # a big old log is started afresh (tests read it from their own offset onwards)
    if [ -f "$STATE/log/slapd.log" ] && [ "$(stat -c %s "$STATE/log/slapd.log")" -gt 50000000 ]; then
        mv -f "$STATE/log/slapd.log" "$STATE/log/slapd.log.1"
    fi
    # -d stats: stays in the foreground and writes the stats log to stderr, i.e. to our log file
    setsid /usr/sbin/slapd -f "$STATE/slapd.conf" -h "$URLS" -d stats \
        </dev/null >>"$STATE/log/slapd.log" 2>&1 &
    local i
    for ((i = 0; i < 100; i++)); do
        if pid_alive && [ -n "$(port_holder "$LDAP_PORT")" ] && [ -n "$(port_holder "$LDAPS_PORT")" ]; then
            log "slapd started (pid $(cat "$PIDFILE")) on $URLS"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$STATE/log/slapd.log" >&2 || true
    die "slapd did not start within 10 s"
}

stop_slapd() {
    pid_alive || return 0
    local pid i
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "slapd stopped"; return 0; }
        sleep 0.1
    done
    die "slapd (pid $pid) did not stop within 10 s"
}

check_bind() {  # StartTLS bind as the service account, verifying the server with the test CA
    LDAPTLS_CACERT=$STATE/tls/ca.crt LDAPTLS_REQCERT=demand \
        ldapwhoami -x -ZZ -H "ldap://127.0.0.1:$LDAP_PORT" -D "$SERVICE_DN" -y "$STATE/secrets/service-password"
}

up() {
    install_packages
    make_dirs
    make_secrets
    make_tls
    write_config
    if [ ! -s "$STATE/directory.version" ] || [ "$(cat "$STATE/directory.version")" != "$(directory_version)" ] \
        || [ -z "$(find "$STATE/db" -name data.mdb 2>/dev/null)" ]; then
        load_directory
    fi
    start_slapd
    local out
    out=$(check_bind 2>&1) || { tail -n 20 "$STATE/log/slapd.log" >&2; die "StartTLS bind as the service account failed: $out"; }
    log "ready: $URLS (StartTLS bind as ${out#dn:} with the test CA works)"
}

list_users() {  # the demo's users: name, uid, Carme groups, password (root only: it prints passwords)
    local entry name uid group members note
    printf '    %-7s %-6s %-28s %s\n' user uid "LDAP groups" password
    for entry in "${USERS[@]}"; do
        read -r name uid <<<"$entry"
        note=""
        for group in "${DIR_GROUPS[@]}"; do
            read -r group _ members <<<"$group"
            [[ " $members " == *" $name "* ]] && note+="$group "
        done
        [ -n "$note" ] || note="(none: login refused) "
        [[ " ${DISABLED_USERS[*]} " == *" $name "* ]] && note+="(disabled) "
        printf '    %-7s %-6s %-28s %s\n' "$name" "$uid" "$note" "$(password_of "$name")"
    done
}

case "${1:-up}" in
up) up ;;
users)
    [ -s "$STATE/secrets/passwords" ] || die "no directory yet: run $0 up"
    list_users
    ;;
reset)
    [ -f "$STATE/slapd.conf" ] || up
    load_directory
    up
    ;;
down) stop_slapd ;;
status)
    if pid_alive; then
        echo "slapd running (pid $(cat "$PIDFILE")) on $URLS"
        check_bind
    else
        echo "slapd not running"
        exit 3
    fi
    ;;
*) die "usage: $0 up|reset|down|status|users" ;;
esac
