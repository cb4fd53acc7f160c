"""carme_quota: the composition rule (override over project template over role default) and admission."""

from __future__ import annotations

from datetime import datetime

import pytest

from carme_quota.admission import Usage, admit, explain_slurm_refusal, next_usage_reset
from carme_quota.limits import LimitError, Limits, ProjectTemplate, effective_limits
from carme_quota.settings import CarmeQuota

ROLE = Limits(gpus_per_job=1, max_servers=1, gpu_hours=100, max_runtime_minutes=480, jobs_per_day=20, priority=10)

# (role default, project template or None, user override or None) -> the effective limits
COMPOSITION = [
    ("role default alone", ROLE, None, None, ROLE),
    ("an override's field wins, the rest stays", ROLE, None, Limits(gpus_per_job=4),
     Limits(4, 1, 100, 480, 20, 10)),
    ("an override may lower too", ROLE, None, Limits(max_servers=0), Limits(1, 0, 100, 480, 20, 10)),
    ("a project's template over the role", ROLE, ProjectTemplate(gpus_per_job=2, max_runtime_minutes=1440), None,
     Limits(2, 1, None, 1440, 20, 10)),
    ("the override over the project", ROLE, ProjectTemplate(gpus_per_job=2), Limits(gpus_per_job=3, priority=50),
     Limits(3, 1, None, 480, 20, 50)),
    ("a project's unset fields fall through to the role", ROLE, ProjectTemplate(), None,
     Limits(1, 1, None, 480, 20, 10)),
    ("in a project the personal GPU-hours do not apply (the project's budget does)", ROLE,
     ProjectTemplate(gpu_hours=5000), Limits(gpu_hours=7), Limits(1, 1, None, 480, 20, 10)),
    ("no limit anywhere stays no limit", Limits(), None, None, Limits()),
]


@pytest.mark.parametrize("case, role, project, override, expected", COMPOSITION, ids=[c[0] for c in COMPOSITION])
def test_effective_limits(case, role, project, override, expected):
    assert effective_limits(role, project, override) == expected


@pytest.mark.parametrize("raw, message", [
    ({"gpus": 1}, "unknown limit gpus"),
    ({"gpus_per_job": -1}, "gpus_per_job: must be between 0"),
    ({"gpus_per_job": 1.5}, "gpus_per_job: must be a whole number"),
    ({"max_servers": True}, "max_servers: must be a number"),
    ({"gpu_hours": float("inf")}, "gpu_hours: must be between"),
    ({"priority": "high"}, "priority: must be a number"),
])
def test_bad_limits_are_refused_naming_the_field(raw, message):
    with pytest.raises(LimitError, match=f"^where\\.?{message}|^where: {message}"):
        Limits.from_mapping(raw, "where")


def test_site_settings_name_the_role_and_field():
    with pytest.raises(Exception, match="CarmeQuota.role_limits.user.gpus_per_job"):
        CarmeQuota(role_limits={"user": {"gpus_per_job": -2}})
    with pytest.raises(Exception, match="unknown role boss"):
        CarmeQuota(role_limits={"boss": {}})
    with pytest.raises(Exception, match="usage_reset_period"):
        CarmeQuota(usage_reset_period="FORTNIGHTLY")
    assert CarmeQuota(role_limits={"power": {"max_servers": 3}}).role_default("power") == Limits(max_servers=3)
    assert CarmeQuota().role_default("user") == Limits()


JAN = datetime(2027, 1, 1)
IDLE = Usage(servers=0, started_today=0, resets_at=JAN)


def test_within_every_limit_is_admitted():
    assert admit(1, 60, ROLE, IDLE) is None
    assert admit(0, 10_000, Limits(), Usage(servers=50, started_today=500)) is None


def test_servers_at_once():
    refusal = admit(0, 60, ROLE, Usage(servers=1, started_today=1))
    assert refusal.limit == "max_servers" and (refusal.use, refusal.allowed) == (1, 1)
    assert refusal.message == "servers at once: 1 of 1 are running or queued; stop one to start another."
    assert refusal.to_dict()["label"] == "servers at once"


def test_servers_per_day():
    refusal = admit(0, 60, ROLE, Usage(servers=0, started_today=20))
    assert refusal.limit == "jobs_per_day" and "20 of 20 today" in refusal.message


def test_gpus_and_runtime_per_server():
    assert admit(2, 60, ROLE, IDLE).message == "GPUs per server: up to 1; this request asks for 2."
    assert admit(1, 600, ROLE, IDLE).message == "runtime per server: up to 8 h; this request asks for 10 h."


def test_gpu_hours_count_what_running_servers_hold_and_say_what_would_fit():
    usage = Usage(servers=0, started_today=0, gpu_minutes_used=90 * 60, gpu_minutes_running=6 * 60, resets_at=JAN)
    limits = Limits(gpu_hours=100)
    assert admit(2, 120, limits, usage) is None  # 4 GPU-hours of the 4 left
    refusal = admit(2, 180, limits, usage)
    assert refusal.limit == "gpu_hours" and refusal.use == 96 and refusal.allowed == 100
    assert refusal.message == (
        "GPU-hours: 90 used and 6 held by running servers of 100, resets 1 Jan; this request needs 6 "
        "(2 GPU for 3 h). What would fit now: 2 GPU for up to 2 h or 1 GPU for up to 4 h.")
    assert admit(0, 600, limits, usage) is None  # a CPU-only server needs no GPU-hours


def test_gpu_hours_used_up():
    usage = Usage(servers=0, started_today=0, gpu_minutes_used=100 * 60, resets_at=None)
    assert admit(1, 30, Limits(gpu_hours=100), usage).message.endswith("No GPU time is left this period.")


@pytest.mark.parametrize("period, now, expected", [
    ("MONTHLY", datetime(2026, 12, 1, 0, 0, 1), datetime(2027, 1, 1)),
    ("monthly", datetime(2026, 2, 28, 23, 0), datetime(2026, 3, 1)),
    ("DAILY", datetime(2026, 12, 1, 13, 0), datetime(2026, 12, 2)),
    ("WEEKLY", datetime(2026, 12, 2, 9, 0), datetime(2026, 12, 6)),  # a Wednesday -> Sunday
    ("WEEKLY", datetime(2026, 12, 6, 9, 0), datetime(2026, 12, 13)),  # a Sunday -> the next one
    ("QUARTERLY", datetime(2026, 11, 15), datetime(2027, 1, 1)),
    ("QUARTERLY", datetime(2026, 1, 15), datetime(2026, 4, 1)),
    ("YEARLY", datetime(2026, 6, 1), datetime(2027, 1, 1)),
    ("NONE", datetime(2026, 6, 1), None),
])
def test_next_usage_reset_follows_slurms_periods(period, now, expected):
    assert next_usage_reset(period, now) == expected


def test_slurms_own_refusals_in_plain_words():
    text = "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: Job violates accounting/QOS policy"
    assert "servers at once" in explain_slurm_refusal(text)
    assert "GPUs per server" in explain_slurm_refusal("Batch job submission failed: AssocMaxGRESPerJob")
    assert explain_slurm_refusal("Invalid partition name specified") is None


def test_a_project_templates_fields_are_named_in_its_errors():
    with pytest.raises(LimitError, match="^gpus_at_once: must be between 0"):
        ProjectTemplate(gpus_at_once=-1)
    with pytest.raises(LimitError, match="^partitions: "):
        ProjectTemplate(partitions=("",))


@pytest.mark.parametrize("period, now, expected", [
    ("MONTHLY", datetime(2026, 12, 15, 9), datetime(2026, 12, 1)),
    ("WEEKLY", datetime(2026, 12, 2, 9), datetime(2026, 11, 29)),  # Wednesday -> the Sunday before
    ("WEEKLY", datetime(2026, 12, 6, 9), datetime(2026, 12, 6)),  # a Sunday -> itself
    ("QUARTERLY", datetime(2026, 11, 15), datetime(2026, 10, 1)),
    ("YEARLY", datetime(2026, 6, 1), datetime(2026, 1, 1)),
    ("DAILY", datetime(2026, 6, 1, 13), datetime(2026, 6, 1)),
    ("NONE", datetime(2026, 6, 1), None),
])
def test_the_usage_period_began_at_the_last_reset(period, now, expected):
    from carme_quota.admission import usage_period_start

    assert usage_period_start(period, now) == expected
    if expected is not None:
        assert usage_period_start(period, now) < next_usage_reset(period, now)


def test_the_form_says_limits_and_use_in_plain_words():
    from carme_quota.explain import form_lines

    usage = Usage(servers=1, started_today=3, gpu_minutes_used=11 * 60, gpu_minutes_running=90, resets_at=JAN)
    limits = Limits(gpus_per_job=2, max_servers=2, gpu_hours=100, jobs_per_day=20, max_runtime_minutes=90)
    assert form_lines(limits, usage, "MONTHLY", {"vision": 4, "small": 1}) == [
        "GPU-hours this month: 12.5 of 100, resets 1 Jan",
        "servers: 1 of 2",
        "servers started today: 3 of 20",
        "GPUs per server: up to 2 (your project vision allows 4)",
        "runtime per server: up to 1 h 30 min",
    ]
    assert form_lines(Limits(), usage, "MONTHLY") == []


def test_a_budget_shortens_a_start_to_what_fits_and_warns_near_the_limit():
    from carme_quota.budget import budget_warning, runtime_that_fits

    usage = Usage(servers=0, started_today=0, gpu_minutes_used=95 * 60, gpu_minutes_running=60, resets_at=JAN)
    limits = Limits(gpu_hours=100)
    assert runtime_that_fits(2, 600, limits, usage) == 120  # 4 GPU-hours left: 2 GPUs for 2 h
    assert runtime_that_fits(1, 60, limits, usage) == 60
    assert runtime_that_fits(0, 600, limits, usage) == 600  # no GPU, no GPU-hours
    assert runtime_that_fits(1, 60, Limits(), usage) == 60
    assert runtime_that_fits(1, 60, Limits(gpu_hours=96), usage) == 0
    warning = budget_warning(2, 120, limits, usage, 0.8, "MONTHLY")
    assert warning == ("GPU-hours this month: with this server up to 100.00 of 100 (100 %); they start again "
                       "on 1 Jan. The server stops when its time is up.")
    assert budget_warning(1, 10, Limits(gpu_hours=1000), usage, 0.8, "MONTHLY") is None
    assert budget_warning(1, 10, limits, usage, 0, "MONTHLY") is None
