"""The site's quota settings: section `CarmeQuota:` of the settings file, read by the hub and the quota service."""

from __future__ import annotations

from traitlets import Dict, Enum, Float, Unicode, validate
from traitlets.config import Configurable

from carme_core.roles import ROLES

from .admission import RESET_PERIODS
from .budget import POLICIES
from .limits import Limits


class CarmeQuota(Configurable):
    role_limits = Dict(
        {},
        config=True,
        help="Default limits per role, e.g. {user: {max_servers: 1, gpus_per_job: 1, gpu_hours: 100}, "
        "power: {max_servers: 3, gpus_per_job: 4}}. Keys: gpus_per_job, max_servers, gpu_hours (per usage "
        "period), max_runtime_minutes, jobs_per_day, priority; a missing key means no limit. A user's "
        "override and a project's template take precedence (README, Quotas).",
    )
    account = Unicode(
        "",
        config=True,
        help="The SLURM account of users' own servers (not in a project): the sync keeps every user's "
        "association in it and jobs run with --account=<it>. Empty: no --account, the user's default account.",
    )
    db_url = Unicode(
        "",
        config=True,
        help="SQLAlchemy URL of Carme's quota store (users' overrides, projects): the hub reads it before "
        "each spawn. Set by the carme-quota service's wiring (carme: quota: db_url:); empty: role defaults only.",
    )
    usage_reset_period = Unicode(
        "MONTHLY",
        config=True,
        help=f"slurm.conf's PriorityUsageResetPeriod ({', '.join(RESET_PERIODS)}): when GPU-hour budgets "
        "start again, shown to users. Use PriorityDecayHalfLife=0 in slurm.conf, so usage does not decay "
        "before it resets.",
    )

    budget_policy = Enum(
        list(POLICIES),
        "refuse",
        config=True,
        help="A start whose GPUs x runtime does not fit the GPU-hours left: refuse it (HTTP 403, saying what would "
        "fit) or shorten its runtime to what fits (the spawn says so). SLURM holds the budget either way: a "
        "server never runs past it, its time limit stops it there.",
    )
    budget_warning = Float(
        0.8,
        config=True,
        help="Warn at Start (in the spawn's progress) when the server could take the period's GPU-hours above "
        "this share of the budget (0 turns the warning off).",
    )

    @validate("budget_warning")
    def _check_warning(self, proposal):
        if not 0 <= proposal["value"] <= 1:
            raise ValueError("CarmeQuota.budget_warning: must be a share between 0 and 1")
        return proposal["value"]

    @validate("role_limits")
    def _check_role_limits(self, proposal):
        value = proposal["value"]
        unknown = sorted(str(r)[:40] for r in value if r not in ROLES)
        if unknown:
            raise ValueError(f"CarmeQuota.role_limits: unknown role {', '.join(unknown)} (roles: {', '.join(ROLES)})")
        for role, limits in value.items():
            Limits.from_mapping(limits, f"CarmeQuota.role_limits.{role}")
        return value

    @validate("usage_reset_period")
    def _check_period(self, proposal):
        if proposal["value"].upper() not in RESET_PERIODS:
            raise ValueError(f"CarmeQuota.usage_reset_period: must be one of {', '.join(RESET_PERIODS)}")
        return proposal["value"].upper()

    def role_default(self, role: str) -> Limits:
        return Limits.from_mapping(self.role_limits.get(role), f"CarmeQuota.role_limits.{role}")
