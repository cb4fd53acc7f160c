"""Carme's spawner: a user's JupyterLab in an Apptainer container, as a SLURM job.

Importing this package replaces batchspawner's port-callback handler (which copies any JSON key
onto the spawner) with Carme's, which accepts a port and nothing else.
"""

from . import port_callback, status_api
from .spawner import CarmeSpawner

port_callback.install()
status_api.install()

__all__ = ["CarmeSpawner"]
