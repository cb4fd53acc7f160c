"""Shared samples of the session tests: hub user models, SLURM jobs as the view gives them, sacct rows."""

from __future__ import annotations

from datetime import datetime

from carme_slurm.accounting import AccountedJob
from carme_slurm.jobs import SlurmJob

from .samples import slurm_job

NOW = 1_800_000_000.0
PREFIX = "carme-"


def job(job_id: str = "41", **kw) -> SlurmJob:
    """alice's running default server: 1 a100 on carme-n1, 30 min limit, started 590 s before NOW."""
    values = {"comment": "carme:alice/", "submit_time": int(NOW) - 600, "start_time": int(NOW) - 590,
              "end_time": int(NOW) - 590 + 30 * 60, "time_limit_minutes": 30, "account": "carme-dev", "gpus": 1,
              "gres_detail": ("gpu:a100:1(IDX:0)",)}
    values.update(kw)
    return slurm_job(job_id, **values)


def accounted(job_id: str = "41", **kw) -> AccountedJob:
    values = {"job_id": job_id, "user": "alice", "account": "carme-dev", "name": "carme-alice",
              "submitted": datetime.fromtimestamp(NOW - 3600), "started": datetime.fromtimestamp(NOW - 3590),
              "ended": datetime.fromtimestamp(NOW - 1790), "state": "COMPLETED", "gpus": 2.0, "elapsed_s": 1800,
              "exit_code": "0:0", "nodes": "carme-n2"}
    values.update(kw)
    return AccountedJob(**values)


def server_model(**kw) -> dict:
    model = {"name": "", "ready": True, "pending": None, "started": "2027-01-15T08:00:00.000000Z",
             "last_activity": "2027-01-15T08:10:00.000000Z", "url": "/user/alice/",
             "user_options": {"image": "pytorch-gpu", "gpus": 1, "gpu_type": "a100", "runtime": 30},
             "state": {"job_id": "41"}}
    model.update(kw)
    return model


def user_model(servers: dict | None = None, name: str = "alice", **kw) -> dict:
    return {"name": name, "admin": False, "groups": [], "servers": {"": server_model()} if servers is None else servers,
            **kw}
