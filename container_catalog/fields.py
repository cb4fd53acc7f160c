"""One check per entry field (pure): untrusted value in, normalized value out, or FieldError.

Each check names the rule it enforces; :func:`container_catalog.schema.parse_entry` runs them
and turns every FieldError into a CatalogProblem naming the file and the field.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .access import ROLES
from .image_reference import ImageReferenceError, check_image_reference

ENTRY_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
ENTRY_ID_RULE = (
    "a slug: lowercase letters, digits, '_', '.', '-', starting with a letter or digit, 1-64 characters"
)
OWNER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")  # == carme_spawner.accounts.POSIX_USERNAME
#: the id a user picks (the spawner's image id rule): a site or own entry's id, or "<owner>/<id>"
#: for a shared entry, so a shared entry can never answer for a site id
CHOICE_ID = re.compile(rf"(?:{OWNER_NAME.pattern}/)?{ENTRY_ID.pattern}")
CHOICE_ID_RULE = (
    "an entry id ([a-z0-9][a-z0-9_.-]{0,63}) or, for a shared entry, <owner>/<id>"
    " (owner: a POSIX user name [a-z_][a-z0-9_.-]{0,31})"
)
TAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
BIND_PATH = re.compile(r"/[A-Za-z0-9_./+@-]*")

INTERFACES = ("jupyterlab", "notebook", "code-server")
GPU_MODES = ("required", "optional", "none")
GPU_TYPE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")  # SLURM gres types: a100, 1g.10gb
MAX_GPU_TYPES = 16
MAX_GPU_MEMORY_GB = 4096
BIND_MODES = ("rw", "ro")
#: the container's own system: nothing is bound onto or below these (an image's libraries, the
#: runtime's /proc, /sys and /dev would be replaced by the host's or the user's)
SYSTEM_PATHS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/opt/conda", "/proc",
                "/run", "/sbin", "/sys", "/usr", "/var/lib", "/var/run")

MAX_NAME = 80
MAX_DESCRIPTION = 1000
MAX_MAINTAINER = 200
MAX_TAGS = 32
MAX_TAG_VALUE = 80
MAX_ROLES_LISTED = 10
MAX_BINDS = 16
MAX_BIND_SPEC = 1024
MAX_ENV = 64
MAX_ENV_NAME = 128
MAX_ENV_VALUE = 1000

# names an entry may not set, and why (the message tells the catalog's author). The one deny list
# of environment names: only site entries set env (the schema refuses it in user sections), and the
# batch script checks the image's variables against it again.
_RUNTIME_REASON = (
    "configures the container runtime (binds, namespaces, image, injected variables)"
    " and would bypass the catalog's checks"
)
_LOADS_CODE = "makes {what} load or run code from outside the image (code injection); set it inside the image"
_LOADER = "the dynamic loader"
FORBIDDEN_ENV_PREFIXES = {
    "JUPYTERHUB_": "is set by the hub for the single-user server (token, URLs); overriding it breaks login",
    "JPY_": "is set by the hub for the single-user server (legacy API token); overriding it breaks login",
    "SLURM_": "describes the job's allocation and is set by SLURM; overriding it misleads tools",
    # APPTAINER_*, APPTAINERENV_* (and SINGULARITY*): runtime settings and injected container variables
    "APPTAINER": _RUNTIME_REASON,
    "SINGULARITY": _RUNTIME_REASON,
    "LD_": _LOADS_CODE.format(what=_LOADER + " (which shared libraries every program loads)"),
    "DYLD_": _LOADS_CODE.format(what=_LOADER + " (which shared libraries every program loads)"),
    "BASH_FUNC_": _LOADS_CODE.format(what="bash (exported shell functions)"),
    "XDG_": _LOADS_CODE.format(what="programs (where they read their configuration and plug-ins)"),
}
_CODE_LOADING_NAMES = {
    "the Python interpreter": (
        "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE", "PYTHONPLATLIBDIR",
        "PYTHONPYCACHEPREFIX", "PYTHONBREAKPOINT", "PYTHONWARNINGS", "PYTHONINSPECT",
    ),
    "bash and other shells": (
        "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS0", "PS1", "PS2", "PS4", "PROMPT_COMMAND", "ZDOTDIR",
        "HOME",
    ),
    _LOADER: ("GCONV_PATH", "GLIBC_TUNABLES", "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES"),
    "Perl": ("PERL5LIB", "PERL5OPT", "PERLLIB", "PERL5DB"),
    "Ruby": ("RUBYLIB", "RUBYOPT", "GEM_HOME", "GEM_PATH"),
    "Node.js": ("NODE_OPTIONS", "NODE_PATH"),
    "Jupyter and IPython": (
        "JUPYTER_CONFIG_DIR", "JUPYTER_CONFIG_PATH", "JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
        "IPYTHONDIR",
    ),
    "R": ("R_PROFILE", "R_PROFILE_USER", "R_ENVIRON", "R_ENVIRON_USER", "R_LIBS", "R_LIBS_USER", "R_LIBS_SITE"),
    "Julia": ("JULIA_LOAD_PATH", "JULIA_DEPOT_PATH", "JULIA_PROJECT"),
    "Java": ("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH"),
    "Lua": ("LUA_INIT", "LUA_PATH", "LUA_CPATH"),
}
FORBIDDEN_ENV_NAMES = {
    "PATH": "decides which programs run; set it inside the image instead",
    "CUDA_VISIBLE_DEVICES": "selects the GPUs SLURM allocated to the job; SLURM sets it",
    "NVIDIA_VISIBLE_DEVICES": "selects the GPUs SLURM allocated to the job; the runtime sets it",
    **{name: _LOADS_CODE.format(what=what) for what, names in _CODE_LOADING_NAMES.items() for name in names},
}


def forbidden_env_reason(name: str) -> str | None:
    """Why an entry may not set variable `name` ("it ..."), or None if it may."""
    return FORBIDDEN_ENV_NAMES.get(name) or next(
        (why for prefix, why in FORBIDDEN_ENV_PREFIXES.items() if name.startswith(prefix)), None
    )


class FieldError(ValueError):
    """A field broke a rule: .field names it (dotted, e.g. "tags.cuda"), .message states the rule."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def describe(value: Any) -> str:
    """A short, single-line description of an untrusted value for messages."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value) if not isinstance(value, int) or abs(value) < 10**12 else "a very large number"
    if isinstance(value, str):
        text = repr(value[:40])  # repr escapes newlines and other control characters
        return text if len(value) <= 40 else text[:-1] + "..." + text[-1]
    return f"a value of type {type(value).__name__}"


def field_name(key: Any) -> str:
    """`key` as a field name safe to show (printable, short)."""
    return key if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 40 else describe(key)


def entry_id(value: Any, field: str = "id") -> str:
    if not isinstance(value, str) or not ENTRY_ID.fullmatch(value):
        rule = f"{ENTRY_ID_RULE} ([a-z0-9][a-z0-9_.-]{{0,63}})"
        raise FieldError(field, f"must be {rule}; got {describe(value)}")
    return value


def choice_id(value: Any, field: str = "image") -> tuple[str | None, str]:
    """A choice id as (owner, entry id): owner None for a plain id (a site or own entry)."""
    if not isinstance(value, str) or not CHOICE_ID.fullmatch(value):
        raise FieldError(field, f"must be {CHOICE_ID_RULE}; got {describe(value)}")
    owner, sep, entry = value.rpartition("/")
    return (owner if sep else None), entry


def name_key(name: str) -> str:
    """`name` as compared for impersonation: NFKC, case folded, runs of whitespace as one space."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


def owner_name(value: Any, field: str = "owner") -> str:
    if not isinstance(value, str) or not OWNER_NAME.fullmatch(value):
        rule = "a POSIX user name ([a-z_][a-z0-9_.-]{0,31})"
        raise FieldError(field, f"must be {rule}; got {describe(value)}")
    return value


def text(value: Any, field: str, max_length: int, *, required: bool = False) -> str:
    """A single-line printable string, surrounding spaces removed, at most `max_length` characters."""
    if not isinstance(value, str):
        raise FieldError(field, f"must be text, got {describe(value)}")
    value = value.strip(" ")
    if required and not value:
        raise FieldError(field, "must not be empty")
    if len(value) > max_length:
        raise FieldError(field, f"must be at most {max_length} characters, got {len(value)}")
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        message = f"must be printable on one line; contains non-printable character {ord(bad):#06x}"
        raise FieldError(field, message)
    return value


def display_name(value: Any, field: str = "name") -> str:
    """The name shown on the form: 1-80 printable characters on one line."""
    return text(value, field, MAX_NAME, required=True)


def paragraph(value: Any, field: str, max_length: int) -> str:
    """Free text where line breaks and runs of whitespace become single spaces (YAML `>`/`|` blocks)."""
    if not isinstance(value, str):
        raise FieldError(field, f"must be text, got {describe(value)}")
    return text(" ".join(value.split()), field, max_length)


def choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise FieldError(field, f"must be one of {', '.join(allowed)}; got {describe(value)}")
    return value


def gpu_types(value: Any, field: str = "gpu_types") -> tuple[str, ...]:
    """A list of SLURM GPU (gres) types the image runs on: [a100, 1g.10gb]."""
    if not isinstance(value, list) or not value:
        raise FieldError(field, f"must be a non-empty list of GPU types such as [a100, 1g.10gb], got {describe(value)}")
    if len(value) > MAX_GPU_TYPES:
        raise FieldError(field, f"at most {MAX_GPU_TYPES} GPU types, got {len(value)}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not GPU_TYPE.fullmatch(name):
            raise FieldError(f"{field}[{i}]", f"must be a GPU type (letters, digits, '_', '.', '+', '-'), got {describe(name)}")
    return tuple(dict.fromkeys(value))


def gpu_memory_gb(value: Any, field: str = "min_gpu_memory_gb") -> int:
    if type(value) is not int or not 1 <= value <= MAX_GPU_MEMORY_GB:
        raise FieldError(field, f"must be a whole number of GB from 1 to {MAX_GPU_MEMORY_GB}, got {describe(value)}")
    return value


def flag(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise FieldError(field, f"must be true or false, got {describe(value)}")
    return value


def image(value: Any, field: str = "image") -> str:
    try:
        return check_image_reference(value)
    except ImageReferenceError as e:
        raise FieldError(field, str(e)) from None


def scalar_text(value: Any, field: str, max_length: int) -> str:
    """A tag or env value: text, or a whole number (kept as text). No floats: YAML reads 12.10 as 12.1."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, float):
        message = f"write the number as quoted text (YAML reads 12.10 as 12.1); got {describe(value)}"
        raise FieldError(field, message)
    elif not isinstance(value, str):
        raise FieldError(field, f"must be text or a whole number, got {describe(value)}")
    return text(value, field, max_length)


def tags(value: Any, field: str = "tags") -> tuple[tuple[str, str], ...]:
    """A mapping `{framework: pytorch}` or a list of labels `[pytorch, gpu]` (a label: a tag valued "")."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(label, "") for label in value]
    else:
        message = f"must be a mapping of names to values or a list of labels, got {describe(value)}"
        raise FieldError(field, message)
    if len(items) > MAX_TAGS:
        raise FieldError(field, f"at most {MAX_TAGS} tags, got {len(items)}")
    result = {}
    for key, tag_value in items:
        if not isinstance(key, str) or not TAG_KEY.fullmatch(key):
            rule = "letters, digits, '_', '.', '+', '-', starting with a letter or digit, 1-40 characters"
            raise FieldError(field, f"tag name {describe(key)} must be {rule}")
        if key in result:
            raise FieldError(f"{field}.{key}", "is listed twice")
        result[key] = scalar_text(tag_value, f"{field}.{key}", MAX_TAG_VALUE)
    return tuple(result.items())


def roles(value: Any, field: str = "roles") -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        allowed = ", ".join(ROLES)
        message = (f"must be a non-empty list of roles from {allowed} (e.g. [power, admin]);"
                   f" got {describe(value)}")
        raise FieldError(field, message)
    if len(value) > MAX_ROLES_LISTED:
        raise FieldError(field, f"at most {MAX_ROLES_LISTED} items, got {len(value)}")
    for i, role in enumerate(value):
        choice(role, f"{field}[{i}]", ROLES)
    return tuple(role for role in ROLES if role in value)


def system_path(path: str) -> str:
    """The system path `path` is or lies below ("" when none): see SYSTEM_PATHS."""
    clean = "/" + "/".join(p for p in path.split("/") if p and p != ".")
    return next((s for s in SYSTEM_PATHS if clean == s or (s != "/" and clean.startswith(s + "/"))), "")


def bind(value: Any, field: str) -> tuple[str, str, str]:
    """A bind spec `src[:dst[:ro|rw]]` as (source, target, mode); target defaults to source, mode to rw."""
    if not isinstance(value, str):
        raise FieldError(field, f"must be a bind spec 'src[:dst[:ro|rw]]' as text, got {describe(value)}")
    if len(value) > MAX_BIND_SPEC:
        raise FieldError(field, f"must be at most {MAX_BIND_SPEC} characters, got {len(value)}")
    bad = next((c for c in value if c == "," or c.isspace() or not c.isprintable()), None)
    if bad is not None:
        what = (
            "a comma (apptainer would split the bind there)" if bad == ","
            else f"whitespace or non-printable character {ord(bad):#06x}"
        )
        raise FieldError(field, f"must not contain {what}; got {describe(value)}")
    parts = value.split(":")
    if len(parts) > 3:
        raise FieldError(field, f"must be 'src[:dst[:ro|rw]]' (at most two ':'); got {describe(value)}")
    source = parts[0]
    target = parts[1] if len(parts) > 1 else source
    mode = parts[2] if len(parts) > 2 else "rw"
    for label, path in (("source", source), ("target", target)):
        if not BIND_PATH.fullmatch(path):
            rule = "an absolute path (characters A-Za-z0-9_./+@-)"
            raise FieldError(field, f"{label} must be {rule}; got {describe(path)}")
        if ".." in path.split("/"):
            raise FieldError(field, f"{label} must not contain '..'; got {describe(path)}")
    system = system_path(target)
    if system:
        raise FieldError(field, f"target must not be {system} or below it (the container's own system); "
                         f"got {describe(target)}")
    if mode not in BIND_MODES:
        raise FieldError(field, f"mode must be ro or rw; got {describe(mode)}")
    return source, target, mode


def env(value: Any, field: str = "env") -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise FieldError(field, f"must be a mapping of variable names to values, got {describe(value)}")
    if len(value) > MAX_ENV:
        raise FieldError(field, f"at most {MAX_ENV} variables, got {len(value)}")
    result = []
    for name, var_value in value.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name) or len(name) > MAX_ENV_NAME:
            rule = f"[A-Z_][A-Z0-9_]* (at most {MAX_ENV_NAME} characters)"
            raise FieldError(field, f"variable name {describe(name)} must match {rule}")
        reason = forbidden_env_reason(name)
        if reason:
            raise FieldError(f"{field}.{name}", f"may not be set by a catalog entry: it {reason}")
        var_text = scalar_text(var_value, f"{field}.{name}", MAX_ENV_VALUE)
        if "," in var_text:
            message = "must not contain a comma (apptainer splits --env values at commas)"
            raise FieldError(f"{field}.{name}", message)
        result.append((name, var_text))
    return tuple(result)
