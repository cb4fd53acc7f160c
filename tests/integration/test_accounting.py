"""Issue 18, first part: the dev cluster keeps real accounting (slurmdbd on MariaDB, from Debian).
Carme's jobs show in `sacct` with their GPU TRES under the user's association, and `sshare` lists
the users: what quotas will be enforced and explained with."""

from __future__ import annotations

import subprocess

import pytest

from .waiting import wait_until

pytestmark = pytest.mark.integration


def run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


def test_the_accounting_configuration_is_live(cluster):
    config = run("scontrol", "show", "config")
    assert "accounting_storage/slurmdbd" in config
    assert "gres/gpu" in next(line for line in config.splitlines() if line.startswith("AccountingStorageTRES"))
    enforce = next(line for line in config.splitlines() if line.startswith("AccountingStorageEnforce"))
    assert all(word in enforce for word in ("associations", "limits", "qos", "safe")), enforce
    associations = {tuple(line.split("|")) for line in run("sacctmgr", "-n", "-P", "list", "assoc",
                                                             "format=account,user").splitlines()}
    for user in ("alice", "bob", "carol", "dave", "erin", "admin"):
        assert ("carme-dev", user) in associations


def test_a_carme_job_shows_in_sacct_with_its_gpus(hub):
    hub.start_server("alice", {"gpus": 1, "image": "pytorch-gpu"})
    hub.wait_ready("alice")
    job_id = hub.job_id("alice")
    hub.stop_server("alice")

    def accounted():
        rows = run("sacct", "-j", job_id, "-X", "-n", "-P", "--format=JobID,User,Account,AllocTRES").splitlines()
        return rows[0].split("|") if rows else None

    row = wait_until(accounted, 30)
    assert row and row[0] == job_id and row[1] == "alice" and row[2] == "carme-dev", row
    assert "gres/gpu=1" in row[3], row
    shares = run("sshare", "-a", "-n", "-P", "--format=Account,User")
    assert "carme-dev|alice" in shares


def test_a_user_without_an_association_cannot_submit(cluster):
    """AccountingStorageEnforce=associations holds on this SLURM: SLURM itself refuses the job."""
    name = "carme-noassoc"
    subprocess.run(["useradd", "-M", "-u", "10099", "-s", "/bin/bash", name], check=False, capture_output=True)
    try:
        r = subprocess.run(["runuser", "-u", name, "--", "sbatch", "-p", "interactive", "-t", "1", "-o", "/dev/null",
                            "--wrap", "true"], capture_output=True, text=True, cwd="/tmp")
        assert r.returncode != 0 and "Invalid account" in r.stderr, r
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
