"""Carme's spawner: a user's JupyterLab in an Apptainer container, as a SLURM job.

`CarmeSpawner` is loaded lazily, so the node-side launcher (`carme_spawner.launcher`) and the
pure modules load without batchspawner or the hub's API handlers. Loading the spawner module
replaces batchspawner's port-callback handler with Carme's.
"""

__all__ = ["CarmeSpawner"]


def __getattr__(name):
    if name == "CarmeSpawner":
        from .spawner import CarmeSpawner

        return CarmeSpawner
    raise AttributeError(f"module 'carme_spawner' has no attribute {name!r}")
