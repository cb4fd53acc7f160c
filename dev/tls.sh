#!/usr/bin/env bash
# The development HTTPS certificates: a local CA and a server certificate it signs, for the demo
# hub on TLS (`make demo TLS=1`) and the HTTPS tests.
#
#   dev/tls.sh [DIR]     make (or keep) them in DIR (default $CARME_TLS_DIR, else
#                        $CARME_DEV_STATE/tls = /var/lib/carme-dev/tls); idempotent
#
# DIR (mode 0700) holds:
#   ca.crt       the dev CA: trust it in your browser to use the demo without warnings (0644)
#   ca.key       its private key (0600); never leaves DIR
#   server.crt   the hub's certificate, SAN IP:127.0.0.1, DNS:localhost, the host's names
#                (hostname, hostname -f) and $CARME_TLS_NAMES (e.g. "DNS:hub.lab,IP:10.0.0.5") (0644)
#   server.key   its private key (0600): CarmeTLS.key
# Kept as they are on a re-run; the server certificate is made again when it is missing, expires
# within a day, is not signed by the CA or lacks a wanted name. Needs openssl. Fails loudly.
set -euo pipefail
umask 077

DIR=${1:-${CARME_TLS_DIR:-${CARME_DEV_STATE:-/var/lib/carme-dev}/tls}}

log() { printf 'tls: %s\n' "$*" >&2; }
die() { printf 'tls: ERROR: %s\n' "$*" >&2; exit 1; }

command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"

# the names the server certificate must carry, as subjectAltName entries
names=("IP:127.0.0.1" "DNS:localhost")
for host in "$(hostname 2>/dev/null || true)" "$(hostname -f 2>/dev/null || true)"; do
    [ -n "$host" ] && [ "$host" != localhost ] && names+=("DNS:$host")
done
if [ -n "${CARME_TLS_NAMES:-}" ]; then
    IFS=',' read -r -a extra <<<"$CARME_TLS_NAMES"
    for name in "${extra[@]}"; do
        case "$name" in DNS:?*|IP:?*) names+=("$name") ;; *) die "CARME_TLS_NAMES: '$name' is not DNS:<name> or IP:<address>" ;; esac
    done
fi
mapfile -t names < <(printf '%s\n' "${names[@]}" | awk '!seen[$0]++')
san=$(IFS=','; echo "${names[*]}")

mkdir -p "$DIR"
chmod 0700 "$DIR"

if [ ! -s "$DIR/ca.crt" ] || [ ! -s "$DIR/ca.key" ]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$DIR/ca.key" \
        -out "$DIR/ca.crt" -subj "/O=Carme development/CN=Carme dev HTTPS CA ($(hostname))" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null || die "could not make the CA"
    rm -f "$DIR/server.crt"
    log "made the dev CA $DIR/ca.crt"
fi

server_ok() {
    [ -s "$DIR/server.crt" ] && [ -s "$DIR/server.key" ] || return 1
    openssl x509 -checkend 86400 -noout -in "$DIR/server.crt" >/dev/null 2>&1 || return 1
    openssl verify -CAfile "$DIR/ca.crt" "$DIR/server.crt" >/dev/null 2>&1 || return 1
    local have want
    have=$(openssl x509 -noout -ext subjectAltName -in "$DIR/server.crt" 2>/dev/null | tail -n +2 | tr -d ' ' \
        | sed 's/IPAddress:/IP:/g')
    for want in "${names[@]}"; do
        case ",$have," in *",$want,"*) ;; *) return 1 ;; esac
    done
}

if ! server_ok; then
    ext=$(mktemp "$DIR/server.ext.XXXXXX")
    csr=$(mktemp "$DIR/server.csr.XXXXXX")
    trap 'rm -f "$ext" "$csr"' EXIT
    printf '%s\n' "subjectAltName=$san" "extendedKeyUsage=serverAuth" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=critical,CA:FALSE" >"$ext"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$DIR/server.key.new" -out "$csr" \
        -subj "/O=Carme development/CN=Carme dev hub" 2>/dev/null || die "could not make the server key"
    openssl x509 -req -sha256 -days 397 -in "$csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
        -CAcreateserial -extfile "$ext" -out "$DIR/server.crt.new" 2>/dev/null || die "could not sign the server certificate"
    mv -f "$DIR/server.key.new" "$DIR/server.key"
    mv -f "$DIR/server.crt.new" "$DIR/server.crt"
    log "made the server certificate for $san"
fi

chmod 0600 "$DIR/ca.key" "$DIR/server.key"
chmod 0644 "$DIR/ca.crt" "$DIR/server.crt"
rm -f "$DIR/ca.srl"
openssl verify -CAfile "$DIR/ca.crt" "$DIR/server.crt" >/dev/null || die "the server certificate does not verify"
