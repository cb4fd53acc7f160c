"""Jobs' scratch: the layout's checks, the sweeper's decision, and the rendered prolog/epilog run by bash.

The node scripts are run here for real (bash, as this user, against a temporary directory) with
the environment SLURM gives a prolog, the STAND-IN beeond of dev/standins and a one-line
`hostlist` that prints its arguments' hosts one per line (the real one is python-hostlist's,
used by the integration tests on the dev cluster).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from carme_slurm.node_scripts import render_epilog, render_prolog, write_node_scripts
from carme_slurm.scratch import ScratchLayout, check_layout, layout_from_settings, leftovers

REPO = Path(__file__).resolve().parents[2]
BEEOND = REPO / "dev" / "standins" / "beeond"


def test_the_default_layout_is_valid_and_names_job_paths():
    layout = check_layout(ScratchLayout())
    assert layout.job_dir("n1", "42") == "/local/ssd/carme/job-42"
    assert layout.beeond_mount("42") == "/mnt/beeond/job-42"
    per_node = ScratchLayout(node_dir="/ssd/{node}/carme")
    assert per_node.job_dir("carme-n2", "7") == "/ssd/carme-n2/carme/job-7"
    assert per_node.node_dir_parts() == ("/ssd/", "/carme")


@pytest.mark.parametrize("values, key", [
    ({"node_dir": "relative/dir"}, "node_dir"),
    ({"node_dir": "/ssd/../etc"}, "node_dir"),
    ({"node_dir": "/ssd/{node}/{node}"}, "node_dir"),
    ({"node_dir": "/ssd/{user}"}, "node_dir"),
    ({"container_path": "/usr/scratch"}, "container_path"),
    ({"container_path": "/"}, "container_path"),
    ({"beeond_command": "beeond"}, "beeond_command"),
    ({"state_dir": "/var/lib/carme/$(reboot)"}, "state_dir"),
    ({"beeond_start_flags": ["-n"]}, "beeond_start_flags[0]"),
    ({"beeond_stop_flags": ["-P", "; rm -rf /"]}, "beeond_stop_flags[1]"),
    ({"beeond_timeout": 1}, "beeond_timeout"),
    ({"beeond_timeout": 3600}, "beeond_timeout"),
    ({"node_dirs": "/x"}, "node_dirs"),
])
def test_bad_settings_are_refused_naming_the_key(values, key):
    with pytest.raises(ValueError, match=rf"^(scratch has no setting '{key}'|{key.replace('[', '.').replace(']', '.')})"):
        layout_from_settings(values)


def test_the_sweeper_removes_only_entries_of_jobs_gone_from_the_snapshot():
    layout = ScratchLayout(node_dir="/ssd/{node}", state_dir="/state")
    entries = {"n1": [("job-10", 100.0), ("job-11", 100.0), ("job-11.failed", 100.0), ("lost+found", 1.0)],
               "n2": [("job-12", 990.0)]}
    state = [("job-13.nodes", 100.0), ("job-10.nodes", 100.0)]
    found = leftovers(entries, state, live_job_ids={"10"}, snapshot_time=1000.0, grace=60.0, layout=layout)
    assert [(f.path, f.kind) for f in found] == [
        ("/ssd/n1/job-11", "dir"), ("/ssd/n1/job-11.failed", "failed"), ("/state/job-13.nodes", "nodes")]
    # job-12 changed 10 s before the snapshot: it may be too new for it, so it stays


def layout_in(tmp: Path, **more) -> ScratchLayout:
    hostlist = tmp / "hostlist"
    hostlist.write_text("#!/bin/bash\n# test helper: 'hostlist -e a,b' prints a and b on lines of their own\n"
                        "[ \"$1\" = -e ] || exit 2\ntr ',' '\\n' <<<\"$2\"\n")
    hostlist.chmod(0o755)
    return check_layout(ScratchLayout(
        node_dir=str(tmp / "ssd" / "{node}"), beeond_command=str(BEEOND), beeond_data_dir=str(tmp / "beeond-data"),
        beeond_mount_dir=str(tmp / "beeond"), hostlist_command=str(hostlist), state_dir=str(tmp / "state"),
        log_file=str(tmp / "scratch.log"), **more))


def run_script(text: str, tmp: Path, node: str, job: str, nodelist: str, standin_dir: Path) -> None:
    script = tmp / "script"
    script.write_text(text)
    env = {"SLURM_JOB_ID": job, "SLURM_JOB_UID": str(os.getuid()), "SLURM_JOB_GID": str(os.getgid()),
           "SLURM_JOB_USER": "alice", "SLURMD_NODENAME": node, "SLURM_NODELIST": nodelist,  # as 22.05 names it
           "CARME_STANDIN_BEEOND_DIR": str(standin_dir)}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr  # a prolog never fails (SLURM would drain the node)


def test_a_single_node_job_gets_its_own_directory_and_loses_it_at_the_end(tmp_path):
    layout = layout_in(tmp_path)
    standins = tmp_path / "standin"
    run_script(render_prolog(layout), tmp_path, "n1", "42", "n1", standins)
    job_dir = tmp_path / "ssd" / "n1" / "job-42"
    assert job_dir.is_dir() and (job_dir.stat().st_mode & 0o777) == 0o700
    assert job_dir.stat().st_uid == os.getuid()
    assert (tmp_path / "ssd" / "n1").stat().st_mode & 0o777 == 0o711  # others cannot list the jobs
    (job_dir / "checkpoint").write_text("x" * 1000)
    run_script(render_epilog(layout), tmp_path, "n1", "42", "n1", standins)
    assert not job_dir.exists()
    log = (tmp_path / "scratch.log").read_text()
    assert "prolog n1 job 42 user alice: made" in log and "epilog n1 job 42 user alice: removed" in log
    assert not (standins / "calls.log").exists()  # one node: no BeeOND


def test_a_two_node_job_starts_beeond_on_its_first_node_and_stops_it_at_the_end(tmp_path):
    layout = layout_in(tmp_path)
    standins = tmp_path / "standin"
    for node in ("n2", "n1"):  # the second node's prolog does nothing
        run_script(render_prolog(layout), tmp_path, node, "43", "n1,n2", standins)
    calls = (standins / "calls.log").read_text().splitlines()
    assert len(calls) == 1
    nodefile = tmp_path / "state" / "job-43.nodes"
    assert nodefile.read_text() == "n1\nn2\n"
    info = tmp_path / "state" / "job-43.info"
    assert (f" start -n {nodefile} -i {info} -d {tmp_path}/beeond-data/job-43 -c {tmp_path}/beeond/job-43 -P -F"
            in calls[0])
    mount = tmp_path / "beeond" / "job-43"
    assert mount.is_dir() and mount.stat().st_mode & 0o777 == 0o700
    for node in ("n2", "n1"):  # only the first node stops it
        run_script(render_epilog(layout), tmp_path, node, "43", "n1,n2", standins)
    calls = (standins / "calls.log").read_text().splitlines()
    assert len(calls) == 2 and f" stop -n {nodefile} -i {info} -L -d -P" in calls[1]
    assert not mount.exists() and not nodefile.exists() and not (tmp_path / "beeond-data" / "job-43").exists()


def test_a_failing_beeond_start_leaves_nothing_but_the_reason(tmp_path):
    layout = layout_in(tmp_path)
    standins = tmp_path / "standin"
    standins.mkdir()
    (standins / "fail-start").write_text("storage target on n2 is full")
    run_script(render_prolog(layout), tmp_path, "n1", "44", "n1,n2", standins)
    note = tmp_path / "ssd" / "n1" / "job-44.failed"
    assert "beeond start failed on n1" in note.read_text() and "storage target on n2 is full" in note.read_text()
    assert note.stat().st_mode & 0o777 == 0o400
    # the half-made instance was stopped: no data, no mount, no node file
    assert not (tmp_path / "beeond-data" / "job-44").exists() and not (tmp_path / "beeond" / "job-44").exists()
    assert not (tmp_path / "state" / "job-44.nodes").exists()
    run_script(render_epilog(layout), tmp_path, "n1", "44", "n1,n2", standins)
    assert not note.exists()


def test_without_beeond_every_node_of_a_multi_node_job_gets_a_directory(tmp_path):
    layout = layout_in(tmp_path, beeond=False)
    assert "start -n" not in render_prolog(layout)
    for node in ("n1", "n2"):
        run_script(render_prolog(layout), tmp_path, node, "45", "n1,n2", tmp_path / "standin")
        assert (tmp_path / "ssd" / node / "job-45").is_dir()


def test_odd_slurm_variables_make_nothing(tmp_path):
    layout = layout_in(tmp_path)
    run_script(render_prolog(layout), tmp_path, "n1", "42; touch /tmp/owned", "n1", tmp_path / "standin")
    assert not (tmp_path / "ssd").exists()
    assert "missing or odd" in (tmp_path / "scratch.log").read_text()


def test_values_are_quoted_and_scripts_written_executable(tmp_path):
    layout = replace(layout_in(tmp_path), beeond_start_flags=("-P", "-p", "10"))
    text = render_prolog(layout)
    assert "-c \"$mount\" -P -p 10 2>&1" in text
    written = write_node_scripts(layout, tmp_path)
    assert [p.name for p in written] == ["carme-prolog", "carme-epilog"]
    assert all(os.access(p, os.X_OK) for p in written)
    for path in written:
        subprocess.run(["bash", "-n", str(path)], check=True)


# ---- the batch script's side, the spawner's setting and the service's wiring ----------------------

def scratch_site(layout: ScratchLayout):
    from carme_spawner.batch_script import JobSite

    return JobSite(job_name="carme-alice", comment="carme:alice/", workdir="/home/alice",
                   output_path="/home/alice/.carme/jobs/carme-%j.log", container_runtime="apptainer",
                   binds=("/home/alice",), export_env=("PATH",), launcher=("/opt/carme/launch", "--"),
                   singleuser_cmd=("jupyterhub-singleuser",), scratch=layout)


def test_the_batch_script_binds_the_jobs_scratch_and_fails_with_the_prologs_reason(tmp_path):
    from carme_spawner.batch_script import render_batch_script
    from carme_spawner.options import parse_options

    from .samples import LIMITS

    layout = layout_in(tmp_path)
    script = render_batch_script(parse_options({"gpus": 0}, LIMITS), scratch_site(layout))
    assert ('--bind /home/alice --bind "$CARME_SCRATCH_SOURCE":/scratch --env CARME_SCRATCH=/scratch' in script)
    # run the script up to its exec: the scratch checks are bash's
    checks = script.split("\nexec ")[0] + '\necho "source=$CARME_SCRATCH_SOURCE"\n'
    path = tmp_path / "job.sh"
    path.write_text(checks)
    env = {"SLURM_JOB_ID": "77", "SLURMD_NODENAME": "n1", "PATH": "/usr/bin:/bin"}

    def run():
        return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True)

    missing = run()
    assert missing.returncode == 1 and "scratch" in missing.stderr and "missing on n1" in missing.stderr
    (tmp_path / "ssd" / "n1" / "job-77").mkdir(parents=True)
    ok = run()
    assert ok.returncode == 0 and f"source={tmp_path}/ssd/n1/job-77" in ok.stdout
    (tmp_path / "ssd" / "n1" / "job-77.failed").write_text("beeond start failed on n1: disk offline\n")
    failed = run()
    assert failed.returncode == 1
    assert "the job's scratch could not be made: beeond start failed on n1: disk offline" in failed.stderr
    env["SLURM_JOB_NUM_NODES"] = "2"  # several nodes: the BeeOND mount
    (tmp_path / "ssd" / "n1" / "job-77.failed").unlink()
    (tmp_path / "beeond" / "job-77").mkdir(parents=True)
    assert f"source={tmp_path}/beeond/job-77" in run().stdout


def test_no_scratch_no_bind():
    from carme_spawner.batch_script import container_command
    from carme_spawner.options import parse_options

    from .samples import LIMITS

    site = replace(scratch_site(ScratchLayout()), scratch=None)
    assert "CARME_SCRATCH" not in " ".join(container_command(parse_options({"gpus": 0}, LIMITS), site))


def test_the_spawners_scratch_setting_is_checked_at_hub_start():
    from traitlets import TraitError

    from carme_spawner.settings import CarmeSpawnerSettings

    settings = CarmeSpawnerSettings()
    assert settings.scratch_layout() is None
    settings.scratch = {"node_dir": "/ssd/{node}"}
    assert settings.scratch_layout().job_dir("n1", "5") == "/ssd/n1/job-5"
    with pytest.raises(TraitError, match=r"CarmeSpawner.scratch.container_path: must not cover"):
        settings.scratch = {"container_path": "/etc/scratch"}


def test_the_services_wiring_hands_the_same_layout_to_the_spawner():
    from carme_services.scratch import hub_service
    from carme_services.wiring import ServiceSettings

    wiring = hub_service(ServiceSettings(key="scratch", values={"node_dir": "/ssd/{node}", "grace": 60}))
    handed = wiring["config"]["CarmeSpawner"]["scratch"]
    assert handed["node_dir"] == "/ssd/{node}" and handed["container_path"] == "/scratch"
    assert "grace" not in handed  # the sweeper's own settings stay the service's
    assert layout_from_settings(handed) == check_layout(ScratchLayout(node_dir="/ssd/{node}"))
    assert "custom:carme-scratch:read!user" in wiring["user_scopes"]
    with pytest.raises(ValueError, match=r"carme.scratch.*node_dir"):
        hub_service(ServiceSettings(key="scratch", values={"node_dir": "ssd"}))


def test_the_form_says_where_the_scratch_is_and_how_big():
    from carme_slurm.scratch import scratch_words

    words = scratch_words(ScratchLayout(), {"carme-n1": 100000, "carme-n2": 50000})
    assert words.startswith("a fast directory of your own at /scratch ($CARME_SCRATCH) on the node's local SSD, "
                            "50 GB to 100 GB by node; it is deleted when the server stops")
    assert ", 1.5 GB;" in scratch_words(ScratchLayout(), {"n": 1500})
    assert "SSD; it is deleted" in scratch_words(ScratchLayout(), {})


def test_a_node_dir_a_user_could_swap_gets_no_scratch(tmp_path):
    """The prolog runs as root: a node_dir (or a directory above it) that others may write or that is
    not root's is refused, so no chown or write of root's can be turned onto another file."""
    layout = layout_in(tmp_path)
    (tmp_path / "ssd").mkdir(mode=0o777)
    (tmp_path / "ssd").chmod(0o777)  # anyone could rename n1 away and put a link there
    run_script(render_prolog(layout), tmp_path, "n1", "46", "n1", tmp_path / "standin")
    assert not (tmp_path / "ssd" / "n1" / "job-46").exists()
    assert "is not root's alone" in (tmp_path / "scratch.log").read_text()
    (tmp_path / "ssd").chmod(0o755)
    (tmp_path / "ssd" / "n1").rmdir()
    (tmp_path / "ssd" / "n1").symlink_to(tmp_path / "elsewhere")
    run_script(render_prolog(layout), tmp_path, "n1", "47", "n1", tmp_path / "standin")
    assert not (tmp_path / "elsewhere").exists()


def test_a_node_list_that_disagrees_with_the_node_count_fails_the_scratch(tmp_path):
    layout = layout_in(tmp_path)
    script = tmp_path / "script"
    script.write_text(render_prolog(layout))
    env = {"SLURM_JOB_ID": "48", "SLURM_JOB_UID": str(os.getuid()), "SLURM_JOB_USER": "alice",
           "SLURMD_NODENAME": "n1", "SLURM_JOB_NUM_NODES": "2"}  # no node list at all
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=30)
    assert "has 2 nodes but its node list" in (tmp_path / "ssd" / "n1" / "job-48.failed").read_text()


def test_the_running_server_is_told_where_its_scratch_is_and_how_big():
    from types import SimpleNamespace

    from carme_slurm.scratch import session_words
    from carme_spawner.settings import CarmeSpawnerSettings

    layout = ScratchLayout()
    words = session_words(layout, "carme-n1", 102400, 20)
    assert words == ("Your scratch: /scratch ($CARME_SCRATCH) on carme-n1's local SSD (102 GB on that SSD, 20 GiB "
                     "asked for); it is deleted when the server stops.")
    assert "(the SSD's free space)" in session_words(layout, "n9", 0, 0)
    spawner = SimpleNamespace(scratch={}, view=SimpleNamespace(nodes=SimpleNamespace(items={})))
    line = lambda s, node: CarmeSpawnerSettings.scratch_session_line(s, node, 0)  # noqa: E731
    spawner.scratch_layout = lambda: None
    assert line(spawner, "carme-n1") == ""  # no scratch on this site
    spawner.scratch_layout = lambda: layout
    spawner.view.nodes.items["carme-n1"] = SimpleNamespace(tmp_disk_mb=51200)
    assert "carme-n1's local SSD (51 GB on that SSD)" in line(spawner, "carme-n1")
