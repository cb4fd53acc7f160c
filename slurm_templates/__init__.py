"""Jinja templates for Carme's SLURM batch scripts.

Sites may point the spawner at their own directory holding a ``carme_job.sh.j2`` instead.
"""

import pathlib

TEMPLATE_DIR = pathlib.Path(__file__).parent
