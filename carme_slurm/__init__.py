"""Carme's access to SLURM: commands (argv, time-outs), parsers of every format SLURM prints, and
the hub's ONE view of it (jobs, nodes, reservations) that every spawner and service reads.

- `commands`: the only place SLURM commands run.
- `jobs`, `nodes`, `reservations`, `gres`: pure parsers into frozen dataclasses.
- `reflector`: a generic watch (one call per interval, doubt is not evidence).
- `view`: `SlurmView`, the hub's three reflectors and their settings.
- `hub_api`: the view over the hub's REST API (imported by the hub only: it needs JupyterHub).
"""

from .commands import SlurmCommandError, command_env, run_command, sbatch, scancel
from .jobs import SlurmJob, job_comment, parse_job_comment, server_slug, valid_job_id
from .reflector import JobView, Reflector
from .view import SlurmView

__all__ = [
    "JobView", "Reflector", "SlurmCommandError", "SlurmJob", "SlurmView", "command_env", "job_comment",
    "parse_job_comment", "run_command", "sbatch", "scancel", "server_slug", "valid_job_id",
]
