#!/usr/bin/env bash
# Start the demo hub on http://127.0.0.1:8000 against the local SLURM (run by `make demo`, which
# installs everything and brings the cluster and the LDAP directory up first). Foreground; Ctrl-C stops the hub.
# CARME_TLS=1 (`make demo TLS=1`): on https://127.0.0.1:8000 instead, with a certificate from the dev CA
# of dev/tls.sh ($CARME_DEV_STATE/tls, root only); plain HTTP on that port then gets no page.
# Servers are SLURM jobs and survive a hub restart; `make cluster-down` stops the cluster.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
STATE=${CARME_DEV_STATE:-/var/lib/carme-dev}
mkdir -p "$STATE/hub" && chmod 0700 "$STATE/hub"

# the demo password: random, kept where only root can read it, handed to the hub by environment
PASSWORD_FILE="$STATE/hub/demo-password"
if [ ! -s "$PASSWORD_FILE" ]; then
    (umask 077 && head -c 12 /dev/urandom | base64 | tr -d '/+=' >"$PASSWORD_FILE")
fi
export CARME_DEMO_PASSWORD
CARME_DEMO_PASSWORD=$(cat "$PASSWORD_FILE")
export CARME_SETTINGS=${CARME_SETTINGS:-$REPO/carme.example.yaml}
# stand-ins first on PATH (the product calls the real names: apptainer, nvidia-smi)
export PATH=/opt/carme/standins:/opt/carme/venv/bin:/opt/carme/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

SCHEME=http
if [ "${CARME_TLS:-0}" != 0 ]; then  # HTTPS: the proxy gets the dev CA's server certificate (CarmeTLS)
    bash "$REPO/dev/tls.sh" "$STATE/tls"
    export CARME__CarmeTLS__cert=$STATE/tls/server.crt CARME__CarmeTLS__key=$STATE/tls/server.key
    # a short HSTS for the demo: a browser that saw it would refuse a later plain-HTTP demo on localhost for a year
    export CARME__CarmeTLS__hsts_max_age=${CARME__CarmeTLS__hsts_max_age:-600}
    SCHEME=https
fi

# which login the settings choose (the example: ldap, against dev/ldap.sh's directory)
AUTHENTICATOR=${CARME__carme__authenticator:-$(/opt/carme/venv/bin/python3 -c \
    'import sys, yaml; print(((yaml.safe_load(open(sys.argv[1])) or {}).get("carme") or {}).get("authenticator", "dummy"))' \
    "$CARME_SETTINGS")}

echo
echo "  Carme demo hub: $SCHEME://127.0.0.1:8000"
if [ "$SCHEME" = https ]; then
    cat <<MSG
  HTTPS with the dev CA $STATE/tls/ca.crt (server certificate for $(openssl x509 -noout -ext subjectAltName \
      -in "$STATE/tls/server.crt" | tail -n +2 | sed 's/^ *//')). Trust that CA in your browser, e.g.
      certutil -d sql:\$HOME/.pki/nssdb -A -n "Carme dev HTTPS CA" -t C,, -i ca.crt   (Chromium; libnss3-tools)
      curl --cacert ca.crt https://127.0.0.1:8000/hub/login
MSG
fi
if [ "$AUTHENTICATOR" = ldap ]; then
    cat <<MSG
  Log in with a user of the demo LDAP directory (dc=example,dc=org, slapd on 127.0.0.1:3389,
  StartTLS; 'bash dev/ldap.sh status'). Roles come from LDAP groups: carme-admins -> admin,
  carme-power -> power, carme-users -> user; bob is in no Carme group, frank is disabled.
$(bash "$REPO/dev/ldap.sh" users)
  (passwords made at setup, kept in ${CARME_DEV_STATE:-/var/lib/carme-dev}/ldap/secrets/passwords, root only)
MSG
else
    cat <<MSG
  Log in as alice, bob, carol, dave or erin (admin: admin) with the password
      $CARME_DEMO_PASSWORD
  (kept in $PASSWORD_FILE).
MSG
fi
cat <<MSG
  Servers run as SLURM jobs: watch them with 'squeue'.
  Start one from a script:  see README.md, "Use it from a script".

MSG
cd "$STATE/hub"
exec /opt/carme/venv/bin/jupyterhub -f "$REPO/jupyterhub_config.py"
