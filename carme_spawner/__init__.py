"""Carme's spawner: a user's JupyterLab in an Apptainer container, as a SLURM job.

`CarmeSpawner` is loaded lazily, so services can import `carme_spawner.slurm` (SLURM's commands
and formats) without loading the spawner, batchspawner or the hub API handlers. Loading the
spawner module replaces batchspawner's port-callback handler with Carme's.
"""

__all__ = ["CarmeSpawner"]


def __getattr__(name):
    if name == "CarmeSpawner":
        from .spawner import CarmeSpawner

        return CarmeSpawner
    raise AttributeError(f"module 'carme_spawner' has no attribute {name!r}")
