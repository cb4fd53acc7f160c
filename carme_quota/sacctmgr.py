"""Carme's quota policy as `sacctmgr` argv, SLURM's association state parsed, and the drift (pure).

One job: from a `DesiredState` (what Carme wants in SLURM) and a `CurrentState` (what
`current_state_commands()` printed), plan the minimal `sacctmgr -i ...` argv lists that make SLURM
match, and report what was changed in SLURM by hand. No subprocess here: the caller runs the
commands (`carme_slurm.commands`) and stores the desired state it applied.

What Carme writes (SLURM 22.05 names; every limit on an ASSOCIATION, never on a QOS, because a
QOS limit takes precedence over an association limit and a per-user override could not raise it):

| Carme                   | user association (U in A)         | project account association      |
|-------------------------|-----------------------------------|----------------------------------|
| gpus_per_job            | MaxTRESPerJob=gres/gpu=N          |                                  |
| max_servers             | MaxJobs=N and MaxSubmitJobs=N     |                                  |
| gpu_hours               | GrpTRESMins=gres/gpu=round(h*60)  | GrpTRESMins= (the template's)    |
| max_runtime_minutes     | MaxWall=N (minutes)               | MaxWall=N (the template's)       |
| priority                | Priority=N                        |                                  |
| gpus_at_once (template) |                                   | GrpTRES=gres/gpu=N               |
| role                    | QOS=carme-<role>, DefaultQOS=same | Parent= (root account or project)|
| jobs_per_day            | nothing: Carme checks it itself   |                                  |

A limit that is None is cleared (`-1`, `gres/gpu=-1`: sacctmgr's way to clear). A role's QOS
carries only `Priority`. A user's `DefaultAccount` is a field of the user, not of an association.
Only these fields are compared: whatever else SLURM has (other TRES, GrpJobs, ...) is left alone.
Associations are read with `WOPLimits`, so a value is the one set on that association, not one
inherited from its parent. Names are compared ignoring case (sacctmgr lower-cases them).

Drift, the one rule. For every field Carme manages, with S = SLURM's value now, D = the desired
value and L = the value Carme applied last time (from `last_applied`; a field Carme never applied,
including everything at the first sync, counts as L = unset):

- S == D: nothing to do (so a plan against an up-to-date SLURM is empty);
- S == L: SLURM still has what Carme wrote, the policy changed: a command sets D;
- otherwise someone changed the field in SLURM by hand: that is DRIFT, reported, and not
  overwritten unless `overwrite_drift=True` (then reported as overwritten and set to D).

Missing QOS, accounts and associations are added with every set field. Nothing is deleted: an
association Carme no longer wants is the caller's decision. Partition-specific associations are
not part of Carme's model and are ignored. Every name and number that enters an argv is checked
(fullmatch, ValueError naming the field); argv lists only, never shell strings.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType

from carme_core.roles import check_role
from carme_quota.limits import LimitError, Limits, ProjectTemplate, check_limit
from carme_slurm.gres import parse_tres

__all__ = [
    "ASSOC_FORMAT", "AccountSpec", "AssocRow", "AssocSpec", "CurrentState", "DesiredState", "Drift",
    "Plan", "check_name", "current_state_commands", "dry_run_text", "gpu_minutes", "parse_associations",
    "parse_qos", "parse_qos_flags", "parse_state", "parse_users", "plan", "role_qos",
]

QOS_PREFIX = "carme-"
#: every role QOS has it: SLURM then refuses at submission a job over an association's Max limits
#: (sbatch fails, naming the limit) instead of queueing it forever (pending, reason AssocMaxGRESPerJob)
DENY_ON_LIMIT = "DenyOnLimit"
GPU = "gres/gpu"
ASSOC_FORMAT = ("Cluster,Account,User,Partition,ParentName,MaxTRESPerJob,MaxJobs,MaxSubmitJobs,"
                "GrpTRESMins,GrpTRES,MaxWall,Priority,QOS,DefaultQOS")
_NAME_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}")  # no leading '-': never an option
_DESCRIPTION_RE = re.compile(r"[A-Za-z0-9 _.,:()/+-]{1,128}")
_WALL_RE = re.compile(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)")
_UINT_RE = re.compile(r"\d{1,10}")
_MAX_NUMBER = 2**31 - 1  # below SLURM's NO_VAL/INFINITE markers for every field here
_TRES_FIELDS = ("MaxTRESPerJob", "GrpTRESMins", "GrpTRES")
_NAME_FIELDS = ("QOS", "DefaultQOS", "Parent", "DefaultAccount")

Value = int | str | None  # a field's value: a count/minutes, a (lower-case) name, or unset


# ---- validation: the only way a value reaches an argv ----------------------------------------------


def check_name(where: str, value: object) -> str:
    """`value` if it is a SLURM name ([A-Za-z0-9_.-], 1-64, not starting with '-'); else ValueError."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        shown = repr(value)[:70] if isinstance(value, str) else f"a {type(value).__name__}"
        raise ValueError(f"{where}: {shown} is not a SLURM name (letters, digits, _ . -; 1-64 characters)")
    return value


def _kv(key: str, name: str) -> str:
    return f"{key}={check_name(key, name)}"


def _check_description(value: str, where: str = "description") -> str:
    if not isinstance(value, str) or not _DESCRIPTION_RE.fullmatch(value):
        raise ValueError(f"{where}: use letters, digits, spaces and _.,:()/+- (1-128 characters)")
    return value


def _check_number(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_NUMBER:
        raise ValueError(f"{where}: {value!r} is not a whole number between 0 and {_MAX_NUMBER}")
    return value


def _setting(field_name: str, value: Value) -> str:
    """One `Key=value` argv element; None clears the field (sacctmgr's -1)."""
    if field_name in _NAME_FIELDS:
        if value is None:  # only DefaultQOS can be cleared; Carme never asks for it
            return f"{field_name}=-1"
        return f"{field_name}={check_name(field_name, value)}"
    number = "-1" if value is None else str(_check_number(field_name, value))
    return f"{field_name}={GPU}={number}" if field_name in _TRES_FIELDS else f"{field_name}={number}"


def _settings(fields: Mapping[str, Value], skip_unset: bool = False) -> list[str]:
    return [_setting(k, v) for k, v in fields.items() if not (skip_unset and v is None)]


def role_qos(role: str) -> str:
    """The QOS of a role (`carme-` + one of `carme_core.roles.ROLES`)."""
    return QOS_PREFIX + check_role(role)


# ---- what Carme wants ------------------------------------------------------------------------------


def gpu_minutes(gpu_hours: float | None) -> int | None:
    return None if gpu_hours is None else round(gpu_hours * 60)


@dataclass(frozen=True)
class AccountSpec:
    """A project account: its parent and the project-wide limits of its template."""

    parent: str
    description: str = ""
    gpus_at_once: int | None = None  # GrpTRES=gres/gpu=N
    gpu_hours: float | None = None  # GrpTRESMins=gres/gpu=round(h*60)
    max_runtime_minutes: int | None = None  # MaxWall=N

    def __post_init__(self):
        for name, kind in (("gpus_at_once", "gpus_per_job"), ("gpu_hours", "gpu_hours"),
                           ("max_runtime_minutes", "max_runtime_minutes")):
            try:
                check_limit(kind, getattr(self, name))
            except LimitError as e:
                raise LimitError(f"{name}: {str(e).partition(': ')[2]}") from None

    @classmethod
    def from_template(cls, parent: str, template: ProjectTemplate, description: str = "") -> AccountSpec:
        return cls(parent, description, template.gpus_at_once, template.gpu_hours, template.max_runtime_minutes)

    def fields(self) -> dict[str, Value]:
        return {"Parent": self.parent.lower(), "GrpTRES": self.gpus_at_once,
                "GrpTRESMins": gpu_minutes(self.gpu_hours), "MaxWall": self.max_runtime_minutes}


@dataclass(frozen=True)
class AssocSpec:
    """A user association: the user's effective limits there (`effective_limits`), the role's QOS."""

    limits: Limits
    qos: str
    default_account: bool = False

    def fields(self) -> dict[str, Value]:
        lim, qos = self.limits, self.qos.lower()
        return {"MaxTRESPerJob": lim.gpus_per_job, "MaxJobs": lim.max_servers, "MaxSubmitJobs": lim.max_servers,
                "GrpTRESMins": gpu_minutes(lim.gpu_hours), "MaxWall": lim.max_runtime_minutes,
                "Priority": lim.priority, "QOS": qos, "DefaultQOS": qos}


@dataclass(frozen=True)
class DesiredState:
    """Everything Carme wants in SLURM's accounting for one cluster.

    `qos`: {QOS name: priority} (one per role, see `role_qos`); `accounts`: project accounts, each
    under `root_account` or another project; `associations`: {(user, account): AssocSpec}, the
    account being `root_account` or a project. At most one association per user is its default.
    """

    cluster: str
    root_account: str
    qos: Mapping[str, int] = field(default_factory=dict)
    accounts: Mapping[str, AccountSpec] = field(default_factory=dict)
    associations: Mapping[tuple[str, str], AssocSpec] = field(default_factory=dict)

    def __post_init__(self):
        check_name("cluster", self.cluster)
        root = check_name("root_account", self.root_account)
        for name, priority in self.qos.items():
            _check_number(f"qos[{check_name('qos', name)}].priority", priority)
        for name, spec in self.accounts.items():
            where = f"accounts[{check_name('accounts', name)}]"
            if name.lower() in ("root", root.lower()):
                raise ValueError(f"{where}: the SLURM root and Carme's root account are not projects")
            if check_name(f"{where}.parent", spec.parent) != root and spec.parent not in self.accounts:
                raise ValueError(f"{where}.parent: {spec.parent!r} is neither {root!r} nor a project account")
            if spec.description:
                _check_description(spec.description, f"{where}.description")
        _parents_first(self.accounts)  # refuses cycles
        defaults: dict[str, str] = {}
        for key, spec in self.associations.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"associations: key {key!r} is not a (user, account) pair")
            user, account = check_name("associations user", key[0]), check_name("associations account", key[1])
            where = f"associations[{user}, {account}]"
            if account != root and account not in self.accounts:
                raise ValueError(f"{where}.account: {account!r} is neither {root!r} nor a project account")
            if not isinstance(spec.limits, Limits):
                raise ValueError(f"{where}.limits: must be carme_quota.limits.Limits")  # noqa: TRY004
            if check_name(f"{where}.qos", spec.qos) not in self.qos:
                raise ValueError(f"{where}.qos: {spec.qos!r} is not one of the desired QOS")
            if spec.default_account and defaults.setdefault(user, account) != account:
                raise ValueError(f"{where}.default_account: {user} already defaults to {defaults[user]}")
        for name in ("qos", "accounts", "associations"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def to_dict(self) -> dict:
        """JSON-ready (what the sync stores as applied); `from_dict` reads it back."""
        return {
            "cluster": self.cluster, "root_account": self.root_account, "qos": dict(self.qos),
            "accounts": {name: asdict(spec) for name, spec in self.accounts.items()},
            "associations": [{"user": user, "account": account, "limits": spec.limits.to_dict(), "qos": spec.qos,
                              "default_account": spec.default_account}
                             for (user, account), spec in sorted(self.associations.items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> DesiredState:
        return cls(
            cluster=data["cluster"], root_account=data["root_account"], qos=dict(data["qos"]),
            accounts={name: AccountSpec(**spec) for name, spec in data["accounts"].items()},
            associations={(a["user"], a["account"]): AssocSpec(Limits(**a["limits"]), a["qos"], a["default_account"])
                          for a in data["associations"]},
        )

    def default_accounts(self) -> dict[str, str]:
        return {user: account for (user, account), spec in self.associations.items() if spec.default_account}


def _parents_first(accounts: Mapping[str, AccountSpec]) -> list[str]:
    order: list[str] = []
    pending = dict(accounts)
    while pending:
        ready = [n for n, s in pending.items() if s.parent not in pending]
        if not ready:
            raise ValueError(f"accounts: parents form a cycle among {', '.join(sorted(pending))}")
        order += ready
        for n in ready:
            del pending[n]
    return order


# ---- what SLURM has --------------------------------------------------------------------------------


def current_state_commands(cluster: str) -> list[list[str]]:
    """The read-only commands whose outputs `parse_state` takes, in its argument order."""
    where = ["where", _kv("cluster", cluster)]
    return [
        ["sacctmgr", "-n", "-P", "show", "assoc", "WOPLimits", f"format={ASSOC_FORMAT}", *where],
        ["sacctmgr", "-n", "-P", "show", "qos", "format=Name,Priority,Flags"],
        ["sacctmgr", "-n", "-P", "show", "user", "format=User,DefaultAccount", *where],
    ]


@dataclass(frozen=True)
class AssocRow:
    """One line of `sacctmgr -n -P show assoc WOPLimits format=ASSOC_FORMAT`; names lower-case."""

    cluster: str
    account: str
    user: str  # "" for an account's own association
    partition: str
    parent: str  # ParentName: set on account rows only
    max_tres_per_job: Mapping[str, int]
    max_jobs: int | None
    max_submit_jobs: int | None
    grp_tres_mins: Mapping[str, int]
    grp_tres: Mapping[str, int]
    max_wall_minutes: int | None
    priority: int | None
    qos: tuple[str, ...]
    default_qos: str | None

    def assoc_fields(self) -> dict[str, Value]:
        return {"MaxTRESPerJob": self.max_tres_per_job.get(GPU), "MaxJobs": self.max_jobs,
                "MaxSubmitJobs": self.max_submit_jobs, "GrpTRESMins": self.grp_tres_mins.get(GPU),
                "MaxWall": self.max_wall_minutes, "Priority": self.priority,
                "QOS": ",".join(self.qos) or None, "DefaultQOS": self.default_qos}

    def account_fields(self) -> dict[str, Value]:
        return {"Parent": self.parent or None, "GrpTRES": self.grp_tres.get(GPU),
                "GrpTRESMins": self.grp_tres_mins.get(GPU), "MaxWall": self.max_wall_minutes}


def _uint(where: str, text: str) -> int | None:
    if not text:
        return None
    if not _UINT_RE.fullmatch(text):
        raise ValueError(f"{where}: {text[:40]!r} is not a number")
    return int(text)


def _wall_minutes(where: str, text: str) -> int | None:
    """`MaxWall` as 22.05 prints it ([D-]HH:MM:SS, "" unset) in minutes, seconds rounded up as SLURM."""
    if text in ("", "UNLIMITED"):
        return None
    m = _WALL_RE.fullmatch(text)
    if not m:
        raise ValueError(f"{where}: {text[:40]!r} is not [days-]hours:minutes:seconds")
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return days * 1440 + hours * 60 + minutes + (seconds > 0)


def _tres(where: str, text: str) -> dict[str, int]:
    pieces = [p for p in text.split(",") if not p.endswith("=NONE")]  # NONE: infinite, i.e. no limit
    try:
        return parse_tres(",".join(pieces))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _lines(text: str, columns: int, what: str):
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            cells = line.split("|")
            if len(cells) != columns:
                raise ValueError(f"{what} line {n}: {len(cells)} fields, expected {columns}: {line[:80]!r}")
            yield n, [c.strip() for c in cells]


def parse_associations(text: str) -> list[AssocRow]:
    """Rows of the first `current_state_commands()` output; ValueError naming the line and column."""
    rows = []
    for n, c in _lines(text, 14, "sacctmgr show assoc"):
        at = f"sacctmgr show assoc line {n}"
        rows.append(AssocRow(
            cluster=c[0].lower(), account=c[1].lower(), user=c[2].lower(), partition=c[3].lower(),
            parent=c[4].lower(), max_tres_per_job=_tres(f"{at} MaxTRESPerJob", c[5]),
            max_jobs=_uint(f"{at} MaxJobs", c[6]), max_submit_jobs=_uint(f"{at} MaxSubmitJobs", c[7]),
            grp_tres_mins=_tres(f"{at} GrpTRESMins", c[8]), grp_tres=_tres(f"{at} GrpTRES", c[9]),
            max_wall_minutes=_wall_minutes(f"{at} MaxWall", c[10]), priority=_uint(f"{at} Priority", c[11]),
            qos=tuple(q for q in c[12].lower().split(",") if q), default_qos=c[13].lower() or None))
    return rows


def parse_qos(text: str) -> dict[str, int | None]:
    """{QOS name: priority (None if cleared)} from `sacctmgr -n -P show qos format=Name,Priority,Flags`."""
    return {c[0].lower(): _uint(f"sacctmgr show qos line {n} Priority", c[1])
            for n, c in _lines(text, 3, "sacctmgr show qos")}


def parse_qos_flags(text: str) -> dict[str, frozenset[str]]:
    """{QOS name: its flags, lower-case} from the same output."""
    return {c[0].lower(): frozenset(f.lower() for f in c[2].split(",") if f)
            for _, c in _lines(text, 3, "sacctmgr show qos")}


def parse_users(text: str) -> dict[str, str]:
    """{user: default account} from `sacctmgr -n -P show user format=User,DefaultAccount`."""
    return {c[0].lower(): c[1].lower() for _, c in _lines(text, 2, "sacctmgr show user")}


@dataclass(frozen=True)
class CurrentState:
    """What SLURM has: account associations, user associations (no partition), QOS, default accounts."""

    accounts: Mapping[str, AssocRow]
    associations: Mapping[tuple[str, str], AssocRow]  # (user, account)
    qos: Mapping[str, int | None]
    default_accounts: Mapping[str, str]
    qos_flags: Mapping[str, frozenset[str]] = field(default_factory=dict)


def parse_state(assoc_text: str, qos_text: str, users_text: str) -> CurrentState:
    """The outputs of `current_state_commands()` (in that order) as one `CurrentState`."""
    rows = [r for r in parse_associations(assoc_text) if not r.partition]
    return CurrentState(
        accounts={r.account: r for r in rows if not r.user},
        associations={(r.user, r.account): r for r in rows if r.user},
        qos=parse_qos(qos_text), default_accounts=parse_users(users_text), qos_flags=parse_qos_flags(qos_text))


# ---- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """A field changed in SLURM by hand: `what` ("qos carme-user", "account p", "association u in p",
    "user u"), SLURM's value and Carme's (None = unset), and whether this plan overwrites it."""

    what: str
    field: str
    slurm: Value
    carme: Value
    overwritten: bool


@dataclass(frozen=True)
class Plan:
    commands: list[list[str]]
    drift: list[Drift]


def plan(desired: DesiredState, current: CurrentState, last_applied: DesiredState | None = None,
         *, overwrite_drift: bool = False) -> Plan:
    """The commands that make SLURM match `desired`, and the drift (see the module docstring)."""
    commands: list[list[str]] = []
    drift: list[Drift] = []
    cluster = _kv("cluster", desired.cluster)
    last = last_applied

    def changes(what: str, want: Mapping[str, Value], have: Mapping[str, Value],
                had: Mapping[str, Value]) -> dict[str, Value]:
        out = {}
        for name, value in want.items():
            now = have.get(name)
            if now == value:
                continue
            if now != had.get(name):
                drift.append(Drift(what, name, now, value, overwrite_drift))
                if not overwrite_drift:
                    continue
            out[name] = value
        return out

    def sacctmgr(*args: str) -> None:
        commands.append(["sacctmgr", "-i", *args])

    for name, priority in desired.qos.items():
        if name.lower() not in current.qos:
            sacctmgr("add", "qos", _kv("name", name), _setting("Priority", priority), f"Flags={DENY_ON_LIMIT}")
            continue
        if DENY_ON_LIMIT.lower() not in current.qos_flags.get(name.lower(), frozenset()):
            sacctmgr("modify", "qos", "where", _kv("name", name), "set", f"Flags+={DENY_ON_LIMIT}")
        had = {"Priority": last.qos.get(name)} if last else {}
        have = {"Priority": current.qos[name.lower()]}
        if changed := changes(f"qos {name}", {"Priority": priority}, have, had):
            sacctmgr("modify", "qos", "where", _kv("name", name), "set", *_settings(changed))

    if desired.root_account.lower() not in current.accounts:
        sacctmgr("add", "account", _kv("name", desired.root_account), cluster)
    for name in _parents_first(desired.accounts):
        spec = desired.accounts[name]
        row = current.accounts.get(name.lower())
        if row is None:
            description = [f"Description={_check_description(spec.description)}"] if spec.description else []
            sacctmgr("add", "account", _kv("name", name), cluster, *description, *_settings(spec.fields(), True))
            continue
        had = last.accounts[name].fields() if last and name in last.accounts else {}
        if changed := changes(f"account {name}", spec.fields(), row.account_fields(), had):
            sacctmgr("modify", "account", "where", _kv("account", name), cluster, "set", *_settings(changed))

    # A user's default association first: a new user's first `add user` sets its DefaultAccount.
    defaults_first = sorted(desired.associations.items(), key=lambda kv: (not kv[1].default_account, kv[0]))
    for (user, account), spec in defaults_first:
        row = current.associations.get((user.lower(), account.lower()))
        if row is None:
            new_user = spec.default_account and user.lower() not in current.default_accounts
            default = [_kv("DefaultAccount", account)] if new_user else []
            sacctmgr("add", "user", _kv("name", user), _kv("account", account), cluster, *default,
                     *_settings(spec.fields(), True))
            continue
        old = last.associations.get((user, account)) if last else None
        had = old.fields() if old else {}
        if changed := changes(f"association {user} in {account}", spec.fields(), row.assoc_fields(), had):
            sacctmgr("modify", "user", "where", _kv("user", user), _kv("account", account), cluster,
                     "set", *_settings(changed))

    # DefaultAccount is the user's, so it is set on its own: with account= in the where clause
    # sacctmgr would read the account as a DefaultAccount filter.
    last_defaults = last.default_accounts() if last else {}
    for user, account in desired.default_accounts().items():
        have = current.default_accounts.get(user.lower())
        if have is None:
            continue  # a new user: its `add user` above carries DefaultAccount
        had = {"DefaultAccount": last_defaults[user].lower()} if user in last_defaults else {}
        if changes(f"user {user}", {"DefaultAccount": account.lower()}, {"DefaultAccount": have}, had):
            sacctmgr("modify", "user", "where", _kv("name", user), cluster, "set", _kv("DefaultAccount", account))

    return Plan(commands, drift)


def _shown(field_name: str, value: Value) -> str:
    if value is None:
        return "unset"
    if field_name in _TRES_FIELDS:
        return f"{GPU}={value}"
    return f"{value} minutes" if field_name == "MaxWall" else str(value)


def dry_run_text(p: Plan) -> str:
    """The commands shell-quoted, one per line, then the drift in plain words."""
    lines = [shlex.join(c) for c in p.commands] or ["# SLURM already matches Carme's quota: no command"]
    for d in p.drift:
        action = "overwritten by this plan" if d.overwritten else "kept (overwrite_drift replaces it)"
        lines.append(f"# drift: {d.what}: {d.field} is {_shown(d.field, d.slurm)} in SLURM, Carme wants "
                     f"{_shown(d.field, d.carme)}; {action}")
    return "\n".join(lines) + "\n"
