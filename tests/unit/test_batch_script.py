"""Tests for carme_spawner.batch_script: the text sbatch receives."""

import dataclasses
import re
import shlex
import shutil
import subprocess

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carme_spawner.batch_script import (
    JobSite,
    container_command,
    render_batch_script,
    sbatch_directives,
    validate_job_site,
)
from carme_spawner.options import (
    KNOWN_OPTIONS,
    OptionsError,
    parse_options,
)

from .samples import LIMITS  # noqa: E402
LAUNCHER = ("/opt/carme/venv/bin/python3", "-m", "carme_spawner.launcher", "--")
SITE = JobSite(
    job_name="carme-alice",
    comment="carme:alice/",
    workdir="/home/alice",
    output_path="/home/alice/.carme/job-%j.log",
    container_runtime="apptainer",
    binds=("/home/alice", "/scratch/alice:/scratch:rw", "/opt/data:/data:ro"),
    export_env=("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "PATH"),
    launcher=LAUNCHER,
    singleuser_cmd=("jupyterhub-singleuser", "--ServerApp.default_url=/lab"),
    extra_sbatch=("--qos=normal",),
)
PRELUDE = ['export CARME_JOB_ID="$SLURM_JOB_ID"', 'say() { [ "${CARME_ENTER:-}" = 1 ] || echo "carme: $*"; }',
           'say "job ${SLURM_JOB_ID} starting on $(hostname)"']


def enter_block(container: list[str]) -> list[str]:
    """The script's enter mode (a carme-ssh session): the same container, the session's command."""
    return ['if [ "${CARME_ENTER:-}" = 1 ]; then  # a carme-ssh session: its command, in the job\'s container',
            "    exec " + " ".join(shlex.quote(a) for a in container) + ' "$@"', "fi"]
PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_.:,/=%+@-]+")


def request(**options):
    return parse_options(options, LIMITS)


def exec_argv(script: str) -> list[str]:
    (line,) = [line for line in script.splitlines() if line.startswith("exec ")]
    return shlex.split(line)[1:]


def test_example_script():
    script = render_batch_script(request(gpus=1, runtime="1:00", reservation="maint"), SITE)
    assert script == "\n".join(
        [
            "#!/bin/bash",
            "#SBATCH --job-name=carme-alice",
            "#SBATCH --comment=carme:alice/",
            "#SBATCH --partition=interactive",
            "#SBATCH --time=01:00:00",
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks=1",
            "#SBATCH --no-requeue",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=16000M",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --reservation=maint",
            "#SBATCH --output=/home/alice/.carme/job-%j.log",
            "#SBATCH --chdir=/home/alice",
            "#SBATCH --export=JUPYTERHUB_API_TOKEN,JUPYTERHUB_API_URL,PATH",
            "#SBATCH --qos=normal",
            "set -euo pipefail",
            *PRELUDE,
            *enter_block(["apptainer", "exec", "--nv", "--bind", "/home/alice,/scratch/alice:/scratch:rw,/opt/data:/data:ro",
                          "/opt/carme/images/base.sif"]),
            "exec /opt/carme/venv/bin/python3 -m carme_spawner.launcher -- apptainer exec --nv"
            " --bind /home/alice,/scratch/alice:/scratch:rw,/opt/data:/data:ro /opt/carme/images/base.sif"
            " jupyterhub-singleuser --ServerApp.default_url=/lab",
            "",
        ]
    )


def test_bash_accepts_the_script(tmp_path):
    bash = shutil.which("bash")
    assert bash, "bash is needed: the batch script is a bash script"
    site = dataclasses.replace(SITE, launcher=("/opt/my venv/bin/python3", "-c", "print('$HOME')"))
    path = tmp_path / "job.sh"
    path.write_text(render_batch_script(request(gpus=2, reservation="maint"), site))
    subprocess.run([bash, "-n", str(path)], check=True, timeout=10)


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_gpu_flags_only_with_gpus(gpus):
    req = request(gpus=gpus)
    assert ("--nv" in container_command(req, SITE)) == (gpus > 0)
    gres = [d for d in sbatch_directives(req, SITE) if d.startswith("--gres")]
    assert gres == ([f"--gres=gpu:{gpus}"] if gpus else [])


def test_container_command():
    assert container_command(request(image="torch"), SITE) == [
        "apptainer",
        "exec",
        "--bind",
        "/home/alice,/scratch/alice:/scratch:rw,/opt/data:/data:ro",
        "docker://nvcr.io/nvidia/torch:24.01-py3",
        "jupyterhub-singleuser",
        "--ServerApp.default_url=/lab",
    ]


def test_no_bind_option_without_binds():
    site = dataclasses.replace(SITE, binds=(), container_runtime="/usr/local/bin/singularity")
    expected = ["/usr/local/bin/singularity", "exec", "/opt/carme/images/base.sif"]
    assert container_command(request(), site)[:3] == expected


def test_exec_line_order_and_quoting():
    site = dataclasses.replace(
        SITE, launcher=("/opt/my venv/python3", "-m", "launch"), singleuser_cmd=("a b", "$HOME")
    )
    script = render_batch_script(request(gpus=1), site)
    (line,) = [line for line in script.splitlines() if line.startswith("exec ")]
    assert line.startswith("exec '/opt/my venv/python3' -m launch apptainer exec --nv --bind ")
    assert line.endswith(" /opt/carme/images/base.sif 'a b' '$HOME'")
    assert exec_argv(script) == [*site.launcher, *container_command(request(gpus=1), site)]


@pytest.mark.parametrize("reservation", [None, "maint"])
def test_reservation_line_only_when_set(reservation):
    directives = sbatch_directives(request(reservation=reservation), SITE)
    assert [d for d in directives if d.startswith("--reservation")] == (
        [f"--reservation={reservation}"] if reservation else []
    )


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, ["--partition=interactive", "--time=01:00:00", "--cpus-per-task=2", "--mem=4000M"]),
        ({"gpus": 3, "runtime": "1-12:00"}, ["--partition=batch", "--time=1-12:00:00", "--cpus-per-task=12"]),
    ],
)
def test_directives_follow_the_request(options, expected):
    directives = sbatch_directives(request(**options), SITE)
    assert set(expected) <= set(directives)
    assert {"--nodes=1", "--ntasks=1", "--no-requeue"} <= set(directives)


def test_export_names_only_and_none_when_empty():
    assert "--export=JUPYTERHUB_API_TOKEN,JUPYTERHUB_API_URL,PATH" in sbatch_directives(request(), SITE)
    site = dataclasses.replace(SITE, export_env=())
    assert "--export=NONE" in sbatch_directives(request(), site)


def test_the_quota_account_is_the_jobs_account_and_none_is_left_out():
    assert "--account=vision" in sbatch_directives(request(), dataclasses.replace(SITE, account="vision"))
    assert not [d for d in sbatch_directives(request(), SITE) if d.startswith("--account")]


def test_empty_comment_is_left_out():
    site = dataclasses.replace(SITE, comment="")
    assert not [d for d in sbatch_directives(request(), site) if d.startswith("--comment")]


def test_secret_values_never_reach_the_script(monkeypatch):
    token = "s3cr3t-t0ken-4f9a8b7c6d5e"
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    script = render_batch_script(request(gpus=1), SITE)
    assert "JUPYTERHUB_API_TOKEN" in script
    assert token not in script
    for field, value in [
        ("export_env", ("JUPYTERHUB_API_TOKEN=" + token,)),
        ("extra_sbatch", ("--export=ALL,JUPYTERHUB_API_TOKEN=" + token,)),
        ("singleuser_cmd", ("jupyterhub-singleuser", "--token\n" + token)),
    ]:
        with pytest.raises(ValueError, match=field):
            render_batch_script(request(), dataclasses.replace(SITE, **{field: value}))


@pytest.mark.parametrize(
    "field, value",
    [
        ("job_name", ""), ("job_name", "carme alice"), ("job_name", "carme\nalice"),
        ("comment", "carme:alice/$(id)"), ("comment", "carme alice"),
        ("workdir", "home/alice"), ("workdir", "/home/al ice"), ("workdir", "/home/../root"),
        ("output_path", "/home/alice/job %j.log"), ("output_path", "/home/alice/job.log\n#SBATCH --uid=0"),
        ("container_runtime", "docker"), ("container_runtime", "/usr/bin/docker"),
        ("container_runtime", "apptainer;id"), ("container_runtime", "bin/apptainer"),
        ("binds", ("scratch",)), ("binds", ("/scratch:data",)), ("binds", ("/scratch,/etc",)),
        ("binds", ("/scratch /etc",)), ("binds", ("/scratch\t",)), ("binds", ("/scratch:/data:rx",)),
        ("binds", ("/scratch:/data:ro:x",)), ("binds", ("/scratch/../etc",)), ("binds", "/scratch"),
        ("export_env", ("1TOKEN",)), ("export_env", ("A-B",)), ("export_env", ("A,B",)),
        ("export_env", ("ALL",)), ("export_env", ("NONE",)),
        ("launcher", ("python3\n",)), ("singleuser_cmd", ()), ("singleuser_cmd", ("jupyter", 3)),
        ("extra_sbatch", ("--qos normal",)), ("extra_sbatch", ("--qos=a b",)), ("extra_sbatch", ("-q",)),
        ("extra_sbatch", ("--qos=$(id)",)), ("extra_sbatch", ("--qos=normal\n#SBATCH --uid=0",)),
        ("extra_sbatch", ("--partition=batch",)), ("extra_sbatch", ("--export=ALL",)),
        ("extra_sbatch", ("--gres=gpu:8",)), ("extra_sbatch", ("--account=other",)),
        ("account", "vision lab"), ("account", "$(id)"), ("account", "a" * 65),
    ],
)
def test_validate_job_site_rejects(field, value):
    with pytest.raises(ValueError) as info:
        validate_job_site(dataclasses.replace(SITE, **{field: value}))
    assert str(info.value).startswith(field)
    assert "\n" not in str(info.value)


def test_validate_job_site_accepts_the_example():
    assert validate_job_site(SITE) is SITE


def test_site_template_dir(tmp_path):
    (tmp_path / "carme_job.sh.j2").write_text("#!/bin/sh\n# {{ request.partition | q }} {{ site.job_name }}")
    script = render_batch_script(request(), SITE, template_dir=tmp_path)
    assert script == "#!/bin/sh\n# interactive carme-alice"


def test_a_template_is_compiled_once_and_again_when_its_file_changes(tmp_path, monkeypatch):
    import os

    template = tmp_path / "carme_job.sh.j2"
    template.write_text("#!/bin/sh\n# one {{ site.job_name }}")
    compiled = []
    real = jinja2.Environment.compile
    monkeypatch.setattr(jinja2.Environment, "compile", lambda self, *a, **k: compiled.append(1) or real(self, *a, **k))
    for _ in range(3):
        assert render_batch_script(request(), SITE, template_dir=tmp_path).endswith("# one carme-alice")
    assert len(compiled) == 1  # a login storm renders 50 scripts: one compile, not 50
    template.write_text("#!/bin/sh\n# two {{ site.job_name }}")
    os.utime(template, ns=(template.stat().st_mtime_ns + 10**9,) * 2)
    assert render_batch_script(request(), SITE, template_dir=tmp_path).endswith("# two carme-alice")


def test_unknown_template_variable_is_an_error(tmp_path):
    (tmp_path / "custom.j2").write_text("{{ no_such_thing }}\n")
    with pytest.raises(jinja2.UndefinedError):
        render_batch_script(request(), SITE, template_dir=tmp_path, template_name="custom.j2")


# ---- property: whatever arrives, the script keeps the template's shape ----------------------------

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
NEAR_VALID = {
    "gpus": st.sampled_from([0, 1, 2, 3, 4, 5, "0", " 1 ", "2", "4", "9", "01"]),
    "runtime": st.sampled_from([1, 60, 480, 481, 10080, "30", "1:00", "8:00", "0:59:01", "2-00", "7-00:01"]),
    "partition": st.sampled_from(["interactive", "batch"]),
    "reservation": st.sampled_from(["maint", "r.1-x", "A" * 64]),
    "image": st.sampled_from(["base", "torch"]),
    "project": st.sampled_from(["vision", "other", ""]),
    "gpu_type": st.sampled_from(["a100", "1g.10gb", "any", "", "h100"]),
    "scratch_gib": st.sampled_from([0, 1, 50, 51, 100, 101, "20", " 5 ", "007", "-1", "1.5", "1e3", 10**9]),
    "open_first": st.sampled_from(["jupyterlab", "tensorboard", "code-server", "", "lab"]),
}
#: LIMITS with a scratch: a limit of 100 GiB, the interactive nodes give 50 GiB, batch is not known
SCRATCH_LIMITS = dataclasses.replace(LIMITS, scratch=True, max_scratch_gib=100.0, default_scratch_gib=10,
                                     scratch_capacity_mb={"interactive": 50 * 1024})
RAW_OPTIONS = st.fixed_dictionaries(
    {}, optional={field: st.one_of(NEAR_VALID[field], ANYTHING) for field in KNOWN_OPTIONS}
) | st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(KNOWN_OPTIONS)), ANYTHING, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=RAW_OPTIONS, limits=st.sampled_from([LIMITS, SCRATCH_LIMITS]))
def test_any_input_is_refused_or_yields_a_script_of_the_template_shape(raw, limits):
    try:
        req = parse_options(raw, limits)
    except OptionsError as e:
        assert "\n" not in str(e) and "\r" not in str(e)
        return
    # accepted user strings are plain tokens: nothing for a shell or SLURM to interpret
    for value in raw.values():
        if isinstance(value, str):
            assert PLAIN_TOKEN.fullmatch(value.strip(" ")) or value.strip(" ") == ""
    script = render_batch_script(req, SITE)
    lines = script.splitlines()
    directives = sbatch_directives(req, SITE)
    assert script.endswith("\n") and "\r" not in script and "\x00" not in script
    assert len(lines) == len(directives) + 9
    assert lines[0] == "#!/bin/bash"
    for line, directive in zip(lines[1:], directives):
        assert line == f"#SBATCH {directive}"
        assert PLAIN_TOKEN.fullmatch(directive)
    command = container_command(req, SITE)
    assert lines[-8:-1] == ["set -euo pipefail", *PRELUDE,
                            *enter_block(command[: len(command) - len(SITE.singleuser_cmd)])]
    assert exec_argv(script) == [*LAUNCHER, *command]


def test_image_environment_reaches_the_apptainer_line_quoted():
    site = dataclasses.replace(SITE, container_env=(("OMP_NUM_THREADS", "4"), ("GREETING", "hello world")))
    request = parse_options({"image": "base"}, LIMITS)
    command = container_command(request, site)
    assert command[command.index("--env") : command.index("--env") + 4] == ["--env", "OMP_NUM_THREADS=4", "--env", "GREETING=hello world"]
    assert "--env 'GREETING=hello world'" in render_batch_script(request, site)


@pytest.mark.parametrize(
    "pair", [("lower", "x"), ("A", "x,y"), ("A", "line\nbreak"), ("A", "x" * 1001), ("A",), "A=1"]
)
def test_bad_image_environment_is_refused(pair):
    site = dataclasses.replace(SITE, container_env=(pair,))
    with pytest.raises(ValueError, match=r"container_env\[0\]"):
        validate_job_site(site)
