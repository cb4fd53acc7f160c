"""Carme's port callback: only {"port": N} from the server's own token, only while it starts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jupyterhub import apihandlers
from tornado import web

import carme_spawner.spawner  # noqa: F401  (loading the spawner installs the handler)
from carme_spawner.port_callback import PATH, PortReportHandler, find_reporting_spawner, parse_report


def test_batchspawner_handler_is_replaced():
    at_path = [h for h in apihandlers.default_handlers if h[0] == PATH]
    assert at_path == [(PATH, PortReportHandler)]


@pytest.mark.parametrize(
    "body",
    [
        None, [], "8888", {"port": "8888"}, {"port": True}, {"port": 80}, {"port": 70000},
        {"port": 8888, "host": "evil"}, {"port": 8888, "batch_cancel_cmd": "touch /tmp/x"},
        {"exec_prefix": "touch /tmp/x"}, {"port": 8888.0},
    ],
)
def test_bad_reports_are_refused_with_400(body):
    with pytest.raises(web.HTTPError) as e:
        parse_report(body)
    assert e.value.status_code == 400


def test_good_report():
    assert parse_report({"port": 8888}) == 8888


class Reporter:
    def __init__(self, token):
        self.api_token = token

    def accept_port_report(self, port):
        self.port = port


def test_token_finds_only_its_own_server_including_named_and_wrapped():
    own, named, child = Reporter("a"), Reporter("b"), Reporter("c")
    wrapper = SimpleNamespace(api_token="c", child_spawner=child)  # wrapspawner parent shares the token
    user = SimpleNamespace(spawners={"": own, "named": named, "wrapped": wrapper})
    assert find_reporting_spawner(user, "a") is own
    assert find_reporting_spawner(user, "b") is named
    assert find_reporting_spawner(user, "c") is child  # the child that submitted the job, not the wrapper
    assert find_reporting_spawner(user, "zzz") is None


async def test_batchspawner_shell_paths_are_closed():
    from carme_spawner import CarmeSpawner

    for name in ("run_command", "submit_batch_script", "query_job_status", "cancel_batch_job"):
        with pytest.raises(NotImplementedError):
            await getattr(CarmeSpawner, name)(None, "touch /tmp/x")


def test_plain_batchspawner_spawners_get_their_port_and_nothing_else():
    """JupyterHub loads every spawner entry point, so a plain batchspawner hub is served by this
    handler too: its starting spawner gets the port; nothing else can be set."""
    from batchspawner import SlurmSpawner

    plain = SlurmSpawner()
    plain.api_token = "p"
    user = SimpleNamespace(spawners={"": plain})
    report = find_reporting_spawner(user, "p")
    with pytest.raises(ValueError):  # not starting
        report.accept_port_report(8888)
    plain._spawn_pending = True
    report.accept_port_report(8888)
    assert plain.port == 8888
    with pytest.raises(ValueError):  # already reported
        report.accept_port_report(9999)
    assert plain.port == 8888
