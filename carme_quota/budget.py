"""GPU-hour budgets at Start (pure): what runtime still fits, and a warning near the limit.

SLURM holds the budget (`GrpTRESMins`) and charges a running job for its whole time limit, so a
server can never run past it: it is stopped at the limit by its own time limit. Before Start,
`CarmeQuota.budget_policy` decides what happens to a request that does not fit: `refuse` (HTTP
403, saying what would fit) or `shorten` (the server starts with the runtime that fits, and the
spawn says so). `budget_warning` is the share of the budget above which a start is warned about.
"""

from __future__ import annotations

from .admission import Usage, minutes_left
from .explain import PERIOD_WORDS
from .limits import Limits

POLICIES = ("refuse", "shorten")


def runtime_that_fits(gpus: int, runtime_minutes: int, limits: Limits, usage: Usage) -> int:
    """The longest runtime up to `runtime_minutes` that `gpus` GPUs may run within the budget (0: none)."""
    left = minutes_left(limits, usage)
    if left is None or gpus == 0:
        return runtime_minutes
    return max(0, min(runtime_minutes, int(left // gpus)))


def budget_warning(gpus: int, runtime_minutes: int, limits: Limits, usage: Usage, threshold: float,
                   period: str) -> str | None:
    """Plain words when this server could take the period's GPU-hours past `threshold` of the budget."""
    if limits.gpu_hours is None or not gpus or not threshold:
        return None
    after = (usage.gpu_minutes_used + usage.gpu_minutes_running + gpus * runtime_minutes) / 60
    if after < threshold * limits.gpu_hours:
        return None
    share = 100 * after / limits.gpu_hours if limits.gpu_hours else 100
    resets = f"; they start again on {usage.resets_at.day} {usage.resets_at:%b}" if usage.resets_at else ""
    return (f"GPU-hours {PERIOD_WORDS.get(period.upper(), 'this period')}: with this server up to "
            f"{after:.2f} of {limits.gpu_hours:g} ({share:.0f} %){resets}. The server stops when its time is up.")
