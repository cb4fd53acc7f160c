"""The baseline of benchmarks/controller_load.py and spawn_storm.py: benchmarks/baseline_jupyterhub_config.py
(plain JupyterHub + batchspawner 1.3.0's SlurmSpawner, as squeue_load.py and spawn_latency.py run it),
with only what the scale benchmarks need changed:

  - the server command is the tiny single-user STAND-IN that Carme's side of the run starts too
    (dev/standins/tiny-singleuser). batchspawner runs it through its wrapper, BENCH_SINGLEUSER_WRAPPER:
    either the real `batchspawner-singleuser` (it picks the port, reports it to /hub/api/batchspawner,
    puts it into $JUPYTERHUB_SERVICE_URL and runs the stand-in in its process, as it runs
    jupyterhub-singleuser; it imports jupyterhub for that: ~100 MB and a second of CPU per server), or
    none (""), the command then being `tiny-singleuser --report-port-to-batchspawner`: the same
    report with the standard library, so the stand-in costs batchspawner what it costs Carme;
  - the job name and output file carry the benchmark's own name (BENCH_JOB_NAME), so its clean-up
    cancels only its own jobs;
  - the users are the load users (BENCH_USERS, a JSON list).

Wiring comes from the environment (scale_hubs.ScaleBaselineHub): BENCH_SERVER_CMD (JSON list),
BENCH_SINGLEUSER_WRAPPER, BENCH_JOB_NAME, BENCH_USERS, plus everything baseline_jupyterhub_config.py reads.
"""

import json
import os

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline_jupyterhub_config.py")  # noqa: F821
if not os.path.exists(BASE):  # load_subconfig ignores a missing file; the baseline must not run without it
    raise FileNotFoundError(BASE)
load_subconfig(BASE)  # noqa: F821  (provided by JupyterHub when it loads this file)

env = os.environ
job_name = env["BENCH_JOB_NAME"]
c.Spawner.cmd = json.loads(env["BENCH_SERVER_CMD"])
c.SlurmSpawner.batchspawner_singleuser_cmd = env["BENCH_SINGLEUSER_WRAPPER"]  # "": the command reports the port
c.Authenticator.allowed_users = set(json.loads(env["BENCH_USERS"])) | {"admin"}
c.Authenticator.admin_users = {"admin"}  # as on Carme's hub: the benchmark's clients use admin's hub-made token

script = c.SlurmSpawner.batch_script
for old, new in (("--job-name=bench-batchspawner", f"--job-name={job_name}"),
                 ("--output=/tmp/bench-batchspawner-", f"--output=/tmp/{job_name}-")):
    if old not in script:
        raise ValueError(f"baseline_jupyterhub_config.py's batch script lacks {old!r}")
    script = script.replace(old, new)
c.SlurmSpawner.batch_script = script
