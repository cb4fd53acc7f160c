"""The SLURM Prolog and Epilog that make and remove jobs' scratch: pure text from a ScratchLayout.

    carme scratch-scripts --out /etc/slurm   # writes carme-prolog and carme-epilog (mode 0755)

slurm.conf then names them (``Prolog=/etc/slurm/carme-prolog``, ``Epilog=/etc/slurm/carme-epilog``,
``PrologFlags=Alloc`` so the prolog runs on every node when the job is allocated, before its batch
script). Like the batch script, the text comes from Jinja templates in slurm_templates/ with every
value shell-quoted, and only from a checked layout.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2

import slurm_templates

from .scratch import ScratchLayout, check_layout

PROLOG_TEMPLATE = "carme_prolog.sh.j2"
EPILOG_TEMPLATE = "carme_epilog.sh.j2"


def render_prolog(layout: ScratchLayout) -> str:
    return _render(PROLOG_TEMPLATE, layout)


def render_epilog(layout: ScratchLayout) -> str:
    return _render(EPILOG_TEMPLATE, layout)


def _render(name: str, layout: ScratchLayout) -> str:
    check_layout(layout)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(slurm_templates.TEMPLATE_DIR)),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["q"] = shlex.quote
    return env.get_template(name).render(layout=layout, node_dir_parts=layout.node_dir_parts())


def write_node_scripts(layout: ScratchLayout, out_dir: Path) -> list[Path]:
    """Write carme-prolog and carme-epilog into `out_dir` (atomically, mode 0755); their paths."""
    written = []
    for name, text in (("carme-prolog", render_prolog(layout)), ("carme-epilog", render_epilog(layout))):
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)
        written.append(path)
    return written
