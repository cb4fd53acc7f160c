"""The batch script of a server job: the one place its text is built.

Pure functions from a :class:`~carme_spawner.options.SpawnRequest` and the site's :class:`JobSite`
to the script that sbatch receives. The request is trusted as it is: only `parse_options` makes
one, and its type is the proof that every value was checked there. The site's settings are
checked here (`validate_job_site`): SLURM reads the ``#SBATCH`` lines itself (not through bash),
so every directive value must be plain characters; the command line is shell-quoted.
Environment variable values never enter the script, only their names.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import jinja2

import slurm_templates
from carme_slurm.scratch import ScratchLayout, check_layout
from container_catalog.fields import forbidden_env_reason

from .options import MIB_PER_GIB, SpawnRequest, format_runtime

JOB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
ACCOUNT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
JOB_COMMENT = re.compile(r"[A-Za-z0-9_.:/@-]{0,200}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CONTAINER_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
EXTRA_SBATCH = re.compile(r"--([a-z][a-z0-9-]*)(=[A-Za-z0-9_.:,/=+-]+)?")
_PATH = re.compile(r"/[A-Za-z0-9_.@+/-]*")
_OUTPUT_PATH = re.compile(r"/[A-Za-z0-9_.@+/%-]*")  # may use SLURM's filename patterns (%j, %u, ...)
_BIND = re.compile(r"(?P<src>[^:]+)(?::(?P<dst>[^:]+)(?::(?P<mode>ro|rw))?)?")
_RUNTIMES = ("apptainer", "singularity")
_MAX_PATH = 4096
#: --export keywords that are not variable names
_EXPORT_KEYWORDS = ("ALL", "NONE", "NIL")
#: options Carme sets itself; a site must not set them again through extra_sbatch
_OWN_OPTIONS = (
    "job-name", "comment", "partition", "time", "nodes", "ntasks", "cpus-per-task", "mem",
    "gres", "gpus", "reservation", "output", "error", "chdir", "export", "wrap", "account", "tmp",
    "no-requeue", "requeue",
)


@dataclass(frozen=True)
class JobSite:
    """Site settings for server jobs (the spawner's traitlets map onto these)."""

    job_name: str
    comment: str
    workdir: str
    output_path: str
    container_runtime: str
    binds: tuple[str, ...]
    export_env: tuple[str, ...]
    launcher: tuple[str, ...]
    singleuser_cmd: tuple[str, ...]
    extra_sbatch: tuple[str, ...] = ()
    container_env: tuple[tuple[str, str], ...] = ()  # the image's own (public) variables: --env NAME=VALUE
    account: str = ""  # --account (the quota's account or a project); "" for the user's default
    scratch: ScratchLayout | None = None  # the job's scratch (made by Carme's prolog), bound at its container_path


class ShellText(str):
    """Script text built here from quoted parts (it names a shell variable): not quoted again."""


def _quote(value) -> str:
    return value if isinstance(value, ShellText) else shlex.quote(value)


def render_batch_script(
    request: SpawnRequest,
    site: JobSite,
    template_dir: Path | None = None,
    template_name: str = "carme_job.sh.j2",
) -> str:
    """The batch script for `request` on `site`, from the Jinja template `template_name`."""
    validate_job_site(site)
    return _environment(str(template_dir or slurm_templates.TEMPLATE_DIR)).get_template(template_name).render(
        scratch_parts=site.scratch.node_dir_parts() if site.scratch else ("", ""),
        directives=_directives(request, site),
        command=[*site.launcher, *_container_command(request, site)],
        container=_container_prefix(request, site),
        request=request,
        site=site,
    )


@functools.lru_cache(maxsize=8)
def _environment(template_dir: str) -> jinja2.Environment:
    """One Jinja environment per template directory: it compiles each template once (and again when its file
    changes: auto_reload), not once per spawn, which a login storm pays 50 times over on the hub's loop."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.filters["q"] = _quote
    return env


def sbatch_directives(request: SpawnRequest, site: JobSite) -> list[str]:
    """The "--name=value" options for the #SBATCH lines."""
    validate_job_site(site)
    return _directives(request, site)


def container_command(request: SpawnRequest, site: JobSite) -> list[str]:
    """The argv that starts the single-user server inside the container."""
    validate_job_site(site)
    return _container_command(request, site)


def _directives(request: SpawnRequest, site: JobSite) -> list[str]:
    directives = [f"--job-name={site.job_name}"]
    if site.comment:
        directives.append(f"--comment={site.comment}")
    if site.account:
        directives.append(f"--account={site.account}")
    directives += [
        f"--partition={request.partition}",
        f"--time={format_runtime(request.runtime_minutes)}",
        "--nodes=1",
        "--ntasks=1",
        # an interactive server whose node fails ends (NODE_FAIL), and the hub says so: SLURM's default
        # (JobRequeue=1) would start it again elsewhere, a new server under the old one's name
        "--no-requeue",
        f"--cpus-per-task={request.cpus}",
        f"--mem={request.memory_mb}M",
    ]
    if request.scratch_gib > 0:  # SLURM places the job on a node with that much TmpDisk (MiB)
        directives.append(f"--tmp={request.scratch_gib * MIB_PER_GIB}M")
    if request.gpus > 0:
        kind = f"{request.gpu_type}:" if request.gpu_type else ""  # checked by parse_options (GPU_TYPE)
        directives.append(f"--gres=gpu:{kind}{request.gpus}")
    if request.reservation:
        directives.append(f"--reservation={request.reservation}")
    directives += [
        f"--output={site.output_path}",
        f"--chdir={site.workdir}",
        f"--export={','.join(site.export_env) or 'NONE'}",
        *site.extra_sbatch,
    ]
    return directives


def _container_command(request: SpawnRequest, site: JobSite) -> list[str]:
    return [*_container_prefix(request, site), *site.singleuser_cmd]


def _container_prefix(request: SpawnRequest, site: JobSite) -> list[str]:
    """`apptainer exec [options] IMAGE`: what runs a command in the job's container (the server; a
    carme-ssh session, through the script's enter mode)."""
    command = [site.container_runtime, "exec"]
    if request.gpus > 0:
        command.append("--nv")
    if site.binds:
        command += ["--bind", ",".join(site.binds)]
    if site.scratch:  # the template sets CARME_SCRATCH_SOURCE to this job's directory (or BeeOND mount)
        command += ["--bind", ShellText('"$CARME_SCRATCH_SOURCE":' + shlex.quote(site.scratch.container_path)),
                    "--env", f"CARME_SCRATCH={site.scratch.container_path}"]
    for name, value in site.container_env:
        command += ["--env", f"{name}={value}"]
    return [*command, request.image]


def validate_job_site(site: JobSite) -> JobSite:
    """Return `site` if every field is safe for the batch script; else ValueError naming the field."""
    _require_match("job_name", site.job_name, JOB_NAME, "[A-Za-z0-9_.-]{1,128}")
    _require_match("comment", site.comment, JOB_COMMENT, "[A-Za-z0-9_.:/@-]{0,200}")
    if site.account:
        _require_match("account", site.account, ACCOUNT, "[A-Za-z0-9_.-]{1,64}")
    _require_path("workdir", site.workdir, _PATH)
    _require_path("output_path", site.output_path, _OUTPUT_PATH)
    runtime = site.container_runtime
    if runtime not in _RUNTIMES:
        _require_path("container_runtime", runtime, _PATH)
        if runtime.rsplit("/", 1)[-1] not in _RUNTIMES:
            rule = "must be apptainer or singularity or an absolute path to one"
            raise ValueError(f"container_runtime: {rule}, got {runtime!r:.80}")
    for i, bind in enumerate(_tuple_of_str("binds", site.binds)):
        match = _BIND.fullmatch(bind)
        if not match:
            raise ValueError(f"binds[{i}]: use src, src:dst or src:dst:ro|rw, got {bind!r:.80}")
        for part in ("src", "dst"):
            if match[part] is not None:
                _require_path(f"binds[{i}]", match[part], _PATH)
    for i, name in enumerate(_tuple_of_str("export_env", site.export_env)):
        _require_match(f"export_env[{i}]", name, ENV_NAME, "[A-Za-z_][A-Za-z0-9_]*")
        if name in _EXPORT_KEYWORDS:
            raise ValueError(f"export_env[{i}]: {name} is an sbatch --export keyword, not a variable name")
    for field in ("launcher", "singleuser_cmd"):
        for i, arg in enumerate(_tuple_of_str(field, getattr(site, field))):
            if len(arg) > _MAX_PATH or not arg.isprintable():
                raise ValueError(f"{field}[{i}]: must be printable and at most {_MAX_PATH} characters")
    if not site.singleuser_cmd:
        raise ValueError("singleuser_cmd: must not be empty")
    if site.scratch is not None:
        try:
            check_layout(site.scratch)
        except ValueError as e:
            raise ValueError(f"scratch.{e}") from None
    if not isinstance(site.container_env, (tuple, list)):
        raise ValueError("container_env: must be a tuple of (name, value) pairs")
    for i, pair in enumerate(site.container_env):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"container_env[{i}]: must be a (name, value) pair")
        name, value = pair
        _require_match(f"container_env[{i}]", name, CONTAINER_ENV_NAME, "[A-Z_][A-Z0-9_]*")
        reason = forbidden_env_reason(name)
        if reason:  # the catalog refuses these already; the job script does not rely on it
            raise ValueError(f"container_env[{i}]: {name} may not be set for an image: it {reason}")
        if not isinstance(value, str) or len(value) > 1000 or not value.isprintable() or "," in value:
            # apptainer splits --env values at commas
            raise ValueError(f"container_env[{i}]: {name}'s value must be printable, without commas, at most 1000 characters")
    for i, option in enumerate(_tuple_of_str("extra_sbatch", site.extra_sbatch)):
        match = _require_match(f"extra_sbatch[{i}]", option, EXTRA_SBATCH,
                               "--name or --name=value with value characters A-Za-z0-9_.:,/=+-")
        if match[1] in _OWN_OPTIONS:
            raise ValueError(f"extra_sbatch[{i}]: --{match[1]} is set by Carme itself")
    return site


def _require_match(field: str, value: object, pattern: re.Pattern, rule: str) -> re.Match:
    match = pattern.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{field}: must match {rule}, got {value!r:.80}")
    return match


def _require_path(field: str, value: object, pattern: re.Pattern) -> None:
    if not isinstance(value, str) or len(value) > _MAX_PATH or not pattern.fullmatch(value):
        raise ValueError(f"{field}: must be an absolute path of plain characters, got {value!r:.80}")
    if ".." in value.split("/"):
        raise ValueError(f"{field}: must not contain '..', got {value!r:.80}")


def _tuple_of_str(field: str, values: object) -> tuple[str, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{field}: must be a tuple of strings, got {values!r:.80}")
    return tuple(values)
