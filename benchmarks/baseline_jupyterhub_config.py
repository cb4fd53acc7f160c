"""The baseline of benchmarks/squeue_load.py: plain JupyterHub + batchspawner 1.3.0's SlurmSpawner.

Carme's jupyterhub_config.py cannot express this hub: it forces spawner_class "carme" and imports
carme_spawner, which replaces batchspawner's /hub/api/batchspawner handler. This file uses nothing
of Carme and restores batchspawner's own port callback (see below why that is needed). Everything
else matches the Carme hub of the benchmark (same JupyterHub, proxy, users, timeouts, resources of
one CPU-only server).

Wiring comes from the environment (set by squeue_load.BaselineHub):
  BENCH_STATE_DIR, BENCH_BIND_URL, BENCH_HUB_PORT, BENCH_PROXY_API_URL, BENCH_SERVICES,
  BENCH_ROLES, BENCH_PASSWORD, BENCH_POLL_INTERVAL (JupyterHub's Spawner.poll_interval; 30 = default),
  BENCH_STARTUP_POLL_INTERVAL (batchspawner's startup_poll_interval; 0.5 = default).
"""

import json
import os
import pathlib
import sys

from batchspawner.api import BatchSpawnerAPIHandler
from jupyterhub import apihandlers

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
env = os.environ

# JupyterHub imports EVERY installed spawner entry point before reading this file (to list their
# settings), Carme's `carme = carme_spawner:CarmeSpawner` included, and that import replaces
# batchspawner's port callback with Carme's (which refuses non-Carme spawners: 403). Put
# batchspawner's own handler back; JupyterHub builds its handler list after reading this file.
BATCHSPAWNER_PATH = r"/api/batchspawner"
apihandlers.default_handlers[:] = [h for h in apihandlers.default_handlers if h[0] != BATCHSPAWNER_PATH]
apihandlers.default_handlers.append((BATCHSPAWNER_PATH, BatchSpawnerAPIHandler))
print(f"baseline: carme_spawner imported by JupyterHub: {'carme_spawner' in sys.modules}; "
      "serving batchspawner's own /hub/api/batchspawner", file=sys.stderr)

state_dir = pathlib.Path(env["BENCH_STATE_DIR"])
state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

# ---- the hub: as in carme.example.yaml / jupyterhub_config.py -----------------------------------
c.JupyterHub.bind_url = env["BENCH_BIND_URL"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env["BENCH_HUB_PORT"])
c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
c.JupyterHub.db_url = f"sqlite:///{state_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cleanup_servers = False
c.JupyterHub.allow_named_servers = True  # the storm of spawn_latency.py starts several per user
c.JupyterHub.services = json.loads(env["BENCH_SERVICES"])
c.JupyterHub.load_roles = json.loads(env["BENCH_ROLES"])
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = env["BENCH_PASSWORD"]
c.Authenticator.allowed_users = {"alice", "bob", "carol", "dave", "erin", "admin"}
c.ConfigurableHTTPProxy.command = ["/opt/carme/bin/configurable-http-proxy"]
c.ConfigurableHTTPProxy.api_url = env["BENCH_PROXY_API_URL"]
c.ConfigurableHTTPProxy.pid_file = str(state_dir / "jupyterhub-proxy.pid")

# ---- the spawner: batchspawner as a site would configure it here ----------------------------------
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 600
c.Spawner.default_url = "/lab"
c.Spawner.poll_interval = int(env.get("BENCH_POLL_INTERVAL", "30"))
# how often a starting server's job is asked for (squeue) and its port looked at; 0.5 s by default
c.BatchSpawnerBase.startup_poll_interval = float(env.get("BENCH_STARTUP_POLL_INTERVAL", "0.5"))
# the job needs a PATH (JupyterHub 5+ keeps none); the same list CarmeSpawner keeps
c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]
c.Spawner.cmd = ["/opt/carme/venv/bin/jupyterhub-singleuser"]
c.SlurmSpawner.batchspawner_singleuser_cmd = "/opt/carme/venv/bin/batchspawner-singleuser"
c.SlurmSpawner.exec_prefix = "runuser -u {username} --"  # no sudo on this host
c.SlurmSpawner.req_partition = "interactive"
c.SlurmSpawner.req_runtime = "01:00:00"
c.SlurmSpawner.req_memory = "1024M"
c.SlurmSpawner.req_nprocs = "1"
c.SlurmSpawner.req_srun = ""  # run the server directly in the batch step, as Carme's job does
# the dev cluster's node names (carme-n1, carme-n2) do not resolve; their NodeAddr is 127.0.0.1
# (Carme looks NodeAddr up with sinfo; batchspawner's knob for this is state_exechost_exp)
c.SlurmSpawner.state_exechost_exp = "127.0.0.1"
# batchspawner's default script minus --get-user-env (needs root; sbatch runs as the user here),
# with the benchmark's job name and the output in /tmp (removed by the benchmark)
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --output=/tmp/bench-batchspawner-{{username}}-%j.log
#SBATCH --job-name=bench-batchspawner
#SBATCH --chdir={{homedir}}
#SBATCH --export={{keepvars}}
{% if partition  %}#SBATCH --partition={{partition}}
{% endif %}{% if runtime    %}#SBATCH --time={{runtime}}
{% endif %}{% if memory     %}#SBATCH --mem={{memory}}
{% endif %}{% if nprocs     %}#SBATCH --cpus-per-task={{nprocs}}
{% endif %}
set -euo pipefail

trap 'echo SIGTERM received' TERM
{{prologue}}
{% if srun %}{{srun}} {% endif %}{{cmd}}
echo "jupyterhub-singleuser ended gracefully"
{{epilogue}}
"""
