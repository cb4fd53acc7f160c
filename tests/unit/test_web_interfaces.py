"""Issue 22, several web interfaces per job: the catalog's `interfaces` field, the "open first" option
and form, the job's environment, the session card's links and the lab side (carme_lab.apps): every
app on a unix socket in a 0700 directory, TCP refused."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest

from carme_lab import apps as lab_apps
from carme_lab.apps import tensorboard_socket
from carme_services.sessions.cards import SessionServer, card
from carme_spawner.form import FormDefaults, ImageChoice, defaults_from_last_choice, render_options_form
from carme_spawner.options import OptionsError, parse_options, validate_limits
from container_catalog import EXAMPLE_CATALOG, InvalidEntry, load_catalog, parse_entry
from container_catalog import web_apps

from .samples import LIMITS
from .sessions_samples import NOW, job

MINIMAL = {"id": "lab", "name": "Lab", "image": "/opt/carme/images/python-cpu.sif"}
APP = {"name": "streamlit", "title": "Streamlit demo",
       "command": ["streamlit", "run", "/opt/app.py", "--server.address", "unix://{unix_socket}"]}


def problem(data, section="site", owner=None):
    with pytest.raises(InvalidEntry) as e:
        parse_entry(data, section=section, owner=owner)
    return e.value


# ---- the catalog ------------------------------------------------------------------------------------
def test_an_entry_lists_its_interfaces_jupyterlab_always_first():
    assert parse_entry(MINIMAL).interface_names == ("jupyterlab",)
    e = parse_entry({**MINIMAL, "interfaces": ["tensorboard", "jupyterlab", "code-server"]})
    assert e.interface_names == ("jupyterlab", "tensorboard", "code-server")
    assert [i.title for i in e.interfaces] == ["JupyterLab", "TensorBoard", "VS Code (code-server)"]
    assert parse_entry({**MINIMAL, "interfaces": ["code-server"]}).interface_names == ("jupyterlab", "code-server")
    assert parse_entry(e.to_dict()) == e  # round trip through plain data


def test_a_site_app_runs_its_command_on_a_unix_socket():
    e = parse_entry({**MINIMAL, "interfaces": ["jupyterlab", APP]})
    app = e.interfaces[1]
    assert (app.name, app.title, app.builtin) == ("streamlit", "Streamlit demo", False)
    assert app.command[-1] == "unix://{unix_socket}"
    assert parse_entry(e.to_dict()) == e


@pytest.mark.parametrize("interfaces, field, words", [
    ("tensorboard", "interfaces", "non-empty list"),
    ([], "interfaces", "non-empty list"),
    (["rstudio"], "interfaces[0]", "unknown interface 'rstudio'; built in: jupyterlab, tensorboard, code-server"),
    (["tensorboard", "tensorboard"], "interfaces[1]", "tensorboard is listed twice"),
    ([7], "interfaces[0]", "must be an interface name or a web app mapping"),
    ([{**APP, "command": ["app", "--port", "{port}"]}], "interfaces[0].command[2]",
     "TCP port, which any user of the node could reach"),
    ([{**APP, "command": ["app", "--listen", "0.0.0.0:8080"]}], "interfaces[0].command",
     "must contain {unix_socket}"),
    ([{**APP, "command": ["app", "{unix_socket}", "{home}"]}], "interfaces[0].command[2]", "unknown placeholder {home}"),
    ([{**APP, "command": ["app", "{unix_socket", "x"]}], "interfaces[0].command[1]", "unmatched '{'"),
    ([{**APP, "command": "app {unix_socket}"}], "interfaces[0].command", "list of arguments (argv, no shell)"),
    ([{**APP, "name": "lab"}], "interfaces[0].name", "a path of the single-user server"),
    ([{**APP, "name": "tensorboard"}], "interfaces[0].name", "built-in interface"),
    ([{**APP, "name": "Bad Name"}], "interfaces[0].name", "lowercase letters"),
    ([{**APP, "port": 8080}], "interfaces[0].port", "unknown key"),
    ([{**APP, "title": "x" * 61}], "interfaces[0].title", "at most 60 characters"),
    (["tensorboard"] * 9, "interfaces", "at most 8 interfaces"),
])
def test_bad_interfaces_are_refused_naming_the_field(interfaces, field, words):
    e = problem({**MINIMAL, "interfaces": interfaces})
    assert e.field == field and words in e.message, (e.field, e.message)


def test_a_user_defined_entry_names_builtin_interfaces_only():
    data = {**MINIMAL, "owner": "dave", "section": "user"}
    assert parse_entry({**data, "interfaces": ["tensorboard"]}, section="user", owner="dave").interface_names == (
        "jupyterlab", "tensorboard")
    e = problem({**data, "interfaces": [APP]}, section="user", owner="dave")
    assert e.field == "interfaces[0]" and "set by the site catalog only" in e.message


def test_the_example_catalog_offers_tensorboard_and_code_server():
    catalog = load_catalog(EXAMPLE_CATALOG)
    by_id = {e.id: e for e in catalog}
    assert by_id["python-cpu"].interface_names == ("jupyterlab", "tensorboard", "code-server")
    assert by_id["pytorch-gpu"].interface_names == ("jupyterlab", "tensorboard")
    assert by_id["jax-gpu"].interface_names == ("jupyterlab",)


def test_the_lab_knows_every_builtin_interface_of_the_catalog():
    assert set(lab_apps.BUILTIN_APPS) == set(web_apps.BUILTIN_INTERFACES) - {"jupyterlab"}
    assert lab_apps.ENV_NAME == web_apps.ENV_NAME


# ---- the options, the form, the job's environment ----------------------------------------------------
LAB_LIMITS = dataclasses.replace(LIMITS, image_interfaces={"base": ("jupyterlab", "tensorboard", "code-server")})


def test_open_first_is_one_of_the_images_interfaces():
    assert parse_options({}, LAB_LIMITS).open_first == "jupyterlab"
    assert parse_options({"image": "base", "open_first": "tensorboard"}, LAB_LIMITS).open_first == "tensorboard"
    with pytest.raises(OptionsError) as e:
        parse_options({"image": "torch", "open_first": "tensorboard"}, LAB_LIMITS)
    assert e.value.field == "open_first"
    assert str(e.value) == "open_first: 'tensorboard' is not an interface of image torch; choose one of: jupyterlab"
    with pytest.raises(OptionsError) as e:
        parse_options({"image": "base", "open_first": ["code-server"]}, LAB_LIMITS)
    assert e.value.field == "open_first" and "jupyterlab, tensorboard, code-server" in str(e.value)


def test_limits_refuse_interfaces_without_jupyterlab_first():
    for names in ((), ("tensorboard",), ("jupyterlab", "tensorboard", "tensorboard")):
        with pytest.raises(ValueError, match=r"image_interfaces\['base'\]"):
            validate_limits(dataclasses.replace(LIMITS, image_interfaces={"base": names}))


IMAGES = [
    ImageChoice("base", "Plain Python", gpu="none",
                interfaces=(("jupyterlab", "JupyterLab"), ("tensorboard", "TensorBoard"),
                            ("code-server", "VS Code (code-server)"))),
    ImageChoice("torch", "PyTorch", gpu="required"),
]


def test_the_form_lists_each_images_interfaces_and_offers_the_chosen_ones_first():
    text = render_options_form(IMAGES, LAB_LIMITS, FormDefaults(image="base", open_first="tensorboard"))
    assert 'data-interface="tensorboard"' in text and "VS Code (code-server)" in text
    assert '<option value="tensorboard" selected>TensorBoard</option>' in text
    radio = text.split('id="carme-image-base"')[1].split(">")[0]
    offered = json.loads(radio.split("data-interfaces='")[1].split("'")[0])
    assert offered == [["jupyterlab", "JupyterLab"], ["tensorboard", "TensorBoard"],
                       ["code-server", "VS Code (code-server)"]]
    only_lab = render_options_form(IMAGES, LAB_LIMITS, FormDefaults(image="torch"))
    assert 'id="carme-open-first" name="open_first" disabled' in only_lab  # one choice: JupyterLab


def test_the_last_open_first_is_kept_where_the_image_still_offers_it():
    assert defaults_from_last_choice({"image": "base", "open_first": "code-server"}, LAB_LIMITS, IMAGES).open_first \
        == "code-server"
    assert defaults_from_last_choice({"image": "torch", "open_first": "code-server"}, LAB_LIMITS, IMAGES).open_first \
        == "jupyterlab"


def test_the_job_gets_its_interfaces_and_opens_the_chosen_one():
    entry = parse_entry({**MINIMAL, "interfaces": ["jupyterlab", "tensorboard", APP]})
    env = web_apps.session_env(entry.interfaces, "tensorboard")
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/tensorboard/"
    assert json.loads(env["CARME_INTERFACES"]) == [{"name": "tensorboard", "title": "TensorBoard"},
                                                   {**APP, "command": APP["command"]}]
    assert "JUPYTERHUB_DEFAULT_URL" not in web_apps.session_env(entry.interfaces, "jupyterlab")


# ---- the session card -------------------------------------------------------------------------------
def test_a_running_card_links_each_interface_through_the_server():
    model_interfaces = (("jupyterlab", "JupyterLab"), ("tensorboard", "TensorBoard"))
    running = SessionServer("alice", "exp", ready=True, job_id="41", url="/user/alice/exp/",
                            interfaces=model_interfaces)
    c = card(running, "41", job(), None, NOW, 300, "/hub/")
    assert c["interfaces"] == [
        {"name": "jupyterlab", "title": "JupyterLab", "url": "/user/alice/exp/lab"},
        {"name": "tensorboard", "title": "TensorBoard", "url": "/user/alice/exp/tensorboard/"}]
    stopped = dataclasses.replace(running, ready=False, job_id="")
    assert card(stopped, "41", None, None, NOW, 300, "/hub/")["interfaces"] == []


def test_the_card_reads_the_interfaces_from_the_servers_state_and_drops_malformed_ones():
    model = {"ready": True, "url": "/user/alice/", "state": {"job_id": "41", "interfaces": [
        ["jupyterlab", "JupyterLab"], ["code-server", "VS Code"], ["../../hub", "x"], "tensorboard", [1, 2]]}}
    server = SessionServer.from_model("alice", "", model)
    assert server.interfaces == (("jupyterlab", "JupyterLab"), ("code-server", "VS Code"))


# ---- the lab side: proxy servers on unix sockets ------------------------------------------------------
def test_apps_come_from_the_env_and_each_gets_a_unix_socket_and_a_launcher_entry(tmp_path):
    settings = lab_apps.CarmeApps(tensorboard_logdir="/home/alice/runs", code_server_command=["code-server"])
    value = json.dumps([{"name": "tensorboard", "title": "TensorBoard"}, {"name": "code-server", "title": "VS Code"},
                        {"name": "streamlit", "title": "Streamlit", "command": APP["command"]}])
    apps, problems = lab_apps.apps_from_env(value, settings)
    assert problems == [] and [a.name for a in apps] == ["tensorboard", "code-server", "streamlit"]
    servers = lab_apps.proxy_servers(apps, str(tmp_path))
    for name, server in servers.items():
        assert server["unix_socket"] == str(tmp_path / f"{name}.sock")
        assert any("{unix_socket}" in arg for arg in server["command"])
        assert not any("{port}" in arg for arg in server["command"])
        assert server["launcher_entry"]["enabled"] and server["new_browser_tab"]
    assert servers["tensorboard"]["command"][1:4] == ["-m", "carme_lab.apps.tensorboard_socket", "--socket"]
    assert "--logdir" in servers["tensorboard"]["command"] and "/home/alice/runs" in servers["tensorboard"]["command"]
    code = servers["code-server"]["command"]
    assert code[0] == "code-server" and code[code.index("--auth") + 1] == "none"
    assert code[code.index("--socket-mode") + 1] == "600"
    assert os.path.isfile(servers["tensorboard"]["launcher_entry"]["icon_path"])


def test_an_app_without_a_unix_socket_or_unknown_is_refused_with_the_reason():
    settings = lab_apps.CarmeApps()
    value = json.dumps([{"name": "tcpapp", "command": ["app", "--port", "{port}"]}, {"name": "rstudio"}, "x"])
    apps, problems = lab_apps.apps_from_env(value, settings)
    assert apps == [] and len(problems) == 3
    assert "TCP port could be reached by other users" in problems[0] and "not a built-in app" in problems[1]
    assert lab_apps.apps_from_env("not json", settings)[1][0].startswith("$CARME_INTERFACES is not JSON")
    assert lab_apps.apps_from_env("", settings) == ([], [])


def test_the_socket_directory_is_private(tmp_path):
    path = lab_apps.make_socket_dir(str(tmp_path))
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert lab_apps.private_directory(path)
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    assert not lab_apps.private_directory(str(open_dir))
    (tmp_path / "link").symlink_to(path)
    assert not lab_apps.private_directory(str(tmp_path / "link"))


def test_tensorboard_socket_refuses_tcp_flags_and_an_open_directory(tmp_path):
    assert tensorboard_socket.split_args(["--socket", "/x/tb.sock", "--logdir", "/l"]) == ("/x/tb.sock",
                                                                                         ["--logdir", "/l"])
    for flag in (["--port", "6006"], ["--port=6006"], ["--bind_all"], ["--host", "0.0.0.0"], ["--load_fast=true"]):
        with pytest.raises(SystemExit, match="not allowed"):
            tensorboard_socket.split_args(["--socket", "/x/tb.sock", *flag])
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    with pytest.raises(SystemExit, match="mode 0700"):
        tensorboard_socket.check_socket_path(str(open_dir / "tb.sock"))
    private = tmp_path / "private"
    private.mkdir()
    os.chmod(private, 0o700)
    assert tensorboard_socket.check_socket_path(str(private / "tb.sock")) == str(private / "tb.sock")
