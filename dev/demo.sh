#!/usr/bin/env bash
# Start the demo hub on http://127.0.0.1:8000 against the local SLURM (run by `make demo`, which
# installs everything and brings the cluster up first). Foreground; Ctrl-C stops the hub.
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

cat <<MSG

  Carme demo hub: http://127.0.0.1:8000
  Log in as alice, bob, carol, dave or erin (admin: admin) with the password
      $CARME_DEMO_PASSWORD
  (kept in $PASSWORD_FILE). Servers run as SLURM jobs: watch them with 'squeue'.
  Start one from a script:  see README.md, "Use it from a script".

MSG
cd "$STATE/hub"
exec /opt/carme/venv/bin/jupyterhub -f "$REPO/jupyterhub_config.py"
