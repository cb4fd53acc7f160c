"""The session history (issue 21): a user's Carme jobs from sacct with sacct's own GPU-hours, joined
with the remembered choices SLURM does not know; which choices a relaunch uses; the store that keeps
them (and the extensions' audit) and its migration."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from carme_core.db import version_table
from carme_services.sessions.cards import SessionServer
from carme_services.sessions.history import Choice, RelaunchError, choices_seen, history, relaunch_options
from carme_services.sessions.store import SERVICE, Base, SessionStore, database
from carme_slurm.accounting import SACCT_FIELDS, parse_sacct

from .sessions_samples import NOW, PREFIX, accounted

GPU = {"image": "pytorch-gpu", "gpus": 2, "gpu_type": "a100", "runtime": 30}


def test_the_history_is_the_users_carme_jobs_newest_first_with_sacct_figures():
    jobs = [accounted("40", submitted=accounted().submitted.replace(year=2026)),
            accounted("41", state="CANCELLED", exit_code="0:15"),
            accounted("42", name="carme-alice-big", state="RUNNING", ended=None, exit_code="0:0"),
            accounted("43", name="carme-alicex"),  # another user's prefix, not alice's
            accounted("44", name="batch-thing"),  # not Carme's
            accounted("45", user="bob", name="carme-bob")]
    rows = history(jobs, "alice", PREFIX, {"41": Choice("41", "alice", "", GPU, NOW)}, 10)
    assert [r["job_id"] for r in rows] == ["42", "41", "40"]
    cancelled = rows[1]
    assert cancelled["gpu_hours"] == 2 * 1800 / 3600 == jobs[1].gpu_hours  # sacct's GPUs x its run time
    assert (cancelled["image"], cancelled["gpu_type"], cancelled["server"], cancelled["relaunch"]) == \
        ("pytorch-gpu", "a100", "", True)
    assert cancelled["end_reason"] == "the job was cancelled" and cancelled["exit"] == "killed by signal 15"
    assert cancelled["node"] == "carme-n2" and cancelled["start"] == NOW - 3590 and cancelled["end"] == NOW - 1790
    running = rows[0]
    assert running["end_reason"] == "" and running["exit"] == "" and running["end"] is None
    assert running["server"] is None and running["image"] == "" and not running["relaunch"]  # never seen: unknown
    assert len(history(jobs, "alice", PREFIX, {}, 2)) == 2


def test_sacct_gives_exit_codes_and_nodes_and_older_output_still_parses():
    assert SACCT_FIELDS[-2:] == ("ExitCode", "NodeList")
    text = "|".join(SACCT_FIELDS) + "\n" + \
        "7|alice|carme-dev|carme-alice|2026-12-01T10:00:00|2026-12-01T10:00:01|2026-12-01T10:30:01|TIMEOUT|" \
        "billing=2,cpu=2,gres/gpu=1,node=1|1800|0:15|carme-n1\n"
    (job,) = parse_sacct(text)
    assert (job.exit_code, job.nodes, job.gpu_hours) == ("0:15", "carme-n1", 0.5)
    (old,) = parse_sacct("JobID|User|Account|JobName|Submit|Start|End|State|AllocTRES|ElapsedRaw\n"
                         "8|bob|a|carme-bob|2026-12-01T10:00:00|Unknown|Unknown|PENDING||0\n")
    assert old.exit_code == "" and old.nodes == ""


def test_a_relaunch_uses_the_jobs_choices_else_the_servers_last_else_the_newest_remembered():
    remembered = {"41": Choice("41", "alice", "", GPU, NOW - 10), "42": Choice("42", "alice", "", {"gpus": 0}, NOW),
                  "50": Choice("50", "alice", "big", {"image": "tensorflow-gpu"}, NOW)}
    stopped = SessionServer("alice", "", options={"image": "python-cpu"})
    assert relaunch_options("alice", "", stopped, "41", remembered) == GPU  # from the history
    assert relaunch_options("alice", "", stopped, None, remembered) == {"image": "python-cpu"}  # the hub keeps them
    assert relaunch_options("alice", "", None, None, remembered) == {"gpus": 0}  # the newest remembered
    assert relaunch_options("alice", "big", None, None, remembered) == {"image": "tensorflow-gpu"}
    with pytest.raises(RelaunchError, match="was a job of server big"):
        relaunch_options("alice", "", stopped, "50", remembered)
    with pytest.raises(RelaunchError, match="no choices of bob's"):
        relaunch_options("bob", "", None, "41", remembered)
    with pytest.raises(RelaunchError, match="no earlier start"):
        relaunch_options("alice", "other", None, None, remembered)


def test_the_choices_seen_are_those_of_running_jobs():
    servers = [SessionServer("alice", "", ready=True, job_id="41", options=GPU), SessionServer("alice", "x")]
    assert choices_seen(servers, NOW) == [Choice("41", "alice", "", GPU, NOW)]


@pytest.fixture
def store(tmp_path):
    db = database(f"sqlite:///{tmp_path / 'sessions.sqlite'}")
    db.upgrade()
    return SessionStore(db)


def test_the_store_keeps_each_jobs_first_choices_and_forgets_old_ones(store):
    assert store.remember([Choice("41", "alice", "", GPU, NOW), Choice("42", "bob", "b", {}, NOW)]) == 2
    assert store.remember([Choice("41", "alice", "", {"image": "other"}, NOW)]) == 0  # a job's choices never change
    assert store.choices("alice") == {"41": Choice("41", "alice", "", GPU, NOW)}
    store.remember([Choice("7", "alice", "", {}, 1_000_000_000.0)])
    assert store.forget_older_than(62) == 1 and set(store.choices("alice")) == {"41"}


def test_the_audit_lists_extensions_newest_first_by_user_and_job(store):
    store.audit(actor="alice", user="alice", server="", job_id="41", minutes=5, outcome="extended", message="30 -> 35",
                from_minutes=30, to_minutes=35)
    store.audit(actor="admin", user="bob", server="x", job_id="42", minutes=600, outcome="refused", message="no")
    assert [e["job_id"] for e in store.extensions()] == ["42", "41"]
    assert [e["actor"] for e in store.extensions("alice")] == ["alice"]
    assert store.extensions(job_ids=["42"])[0]["outcome"] == "refused" and store.extensions("bob", ["41"]) == []
    with pytest.raises(ValueError, match="outcome"):
        store.audit(actor="a", user="a", server="", job_id="1", minutes=1, outcome="maybe", message="")


def test_the_migration_and_the_models_agree_and_downgrade_drops_the_tables(tmp_path):
    db = database(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    db.upgrade()
    table = version_table(SERVICE)
    assert table == "alembic_version_carme_sessions" and db.current_revision() == "0001"
    assert set(sa.inspect(db.engine).get_table_names()) == {"session_choices", "session_extensions", table}
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": table, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    command.downgrade(db.alembic_config(), "base")
    assert set(sa.inspect(db.engine).get_table_names()) == {table}
