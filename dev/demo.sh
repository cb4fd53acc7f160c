#!/usr/bin/env bash
# Start the demo hub on http://127.0.0.1:8000 against the local SLURM (run by `make demo`, which
# installs everything and brings the cluster and the LDAP directory up first). Foreground; Ctrl-C stops the hub.
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

# which login the settings choose (the example: ldap, against dev/ldap.sh's directory)
AUTHENTICATOR=${CARME__carme__authenticator:-$(/opt/carme/venv/bin/python3 -c \
    'import sys, yaml; print(((yaml.safe_load(open(sys.argv[1])) or {}).get("carme") or {}).get("authenticator", "dummy"))' \
    "$CARME_SETTINGS")}

echo
echo "  Carme demo hub: http://127.0.0.1:8000"
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
