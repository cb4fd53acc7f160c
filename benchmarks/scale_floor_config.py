"""The floor of benchmarks/spawn_storm.py: JupyterHub alone, its spawns costing nothing but their wait.

scale_baseline_config.py (the same hub, proxy, users, token and services as the batchspawner baseline),
with one change: the spawner is a BENCHMARK STAND-IN, `WaitingSpawner`, whose start() does no work. It
waits as long as the Carme run of the same storm took for that user (BENCH_FLOOR_DELAYS, JSON
{user: seconds}, 5 s for one not in it) and returns the URL of one shared HTTP responder
(BENCH_FLOOR_SERVER_URL, started by the benchmark: any answer that is not a 5xx will do for the hub's
wait_up), so the hub starts, checks and routes 50 servers on the same schedule as Carme's, with
nothing of a spawner's own work in its loop. What the probe then sees is JupyterHub's own part of
the storm: what any spawner pays, and the floor under Carme's API latency. No SLURM job is submitted.
"""

import asyncio
import json
import os

from jupyterhub.spawner import Spawner
from traitlets import Dict, Float, Unicode

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale_baseline_config.py")  # noqa: F821
if not os.path.exists(BASE):  # load_subconfig ignores a missing file; the floor must not run without it
    raise FileNotFoundError(BASE)
load_subconfig(BASE)  # noqa: F821  (provided by JupyterHub when it loads this file)


class WaitingSpawner(Spawner):
    """BENCHMARK STAND-IN: start() only waits, then points at the shared responder. Never use it elsewhere."""

    delays = Dict(config=True, help="seconds each user's start waits ({user: seconds})")
    default_delay = Float(5.0, config=True, help="seconds for a user not in delays")
    server_url = Unicode(config=True, help="the shared responder every server's URL points at")

    _running = False

    async def start(self):
        await asyncio.sleep(float(self.delays.get(self.user.name, self.default_delay)))
        self._running = True
        return self.server_url

    async def poll(self):
        return None if self._running else 0

    async def stop(self, now=False):
        self._running = False


c.JupyterHub.spawner_class = WaitingSpawner
c.WaitingSpawner.delays = json.loads(os.environ.get("BENCH_FLOOR_DELAYS") or "{}")
c.WaitingSpawner.server_url = os.environ["BENCH_FLOOR_SERVER_URL"]
