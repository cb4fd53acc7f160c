"""Issue 19, acceptance 7 and 8, in a real browser: the week calendar shows alice's booking in her
own time zone; the booking form refuses an end before the start, naming the field, and books a
local time as the right UTC instant; the spawn form preselects her active reservation; her .ics
feed parses with icalendar; an admin approves erin's booking on the queue page, and only then does
SLURM list it. Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest
import requests

from tests.integration import slurm_probe
from tests.integration.conftest import running_hub
from tests.integration.waiting import wait_until

from .conftest import ARTIFACTS, artifact_name, login

pytestmark = pytest.mark.integration

PREFIX = "carme-btr"
ZONE = "Europe/Berlin"
SCOPES = ("custom:carme-reservations:admin", "custom:carme-reservations:read", "custom:carme-reservations:book",
          "access:services!service=carme-reservations", "custom:carme-slurm:read")
STATE: dict = {}


@pytest.fixture(scope="module")
def hub(cluster):
    slurm_probe.delete_reservations(PREFIX)
    service = {"url": "http://127.0.0.1:19505", "sync_interval": 3, "delay": 0.5, "name_prefix": PREFIX,
               "approval_roles": ["user"]}
    env = {"CARME__carme__reservations": json.dumps(service), "CARME__SlurmView__reservation_interval": "2"}
    with running_hub(ports=(19500, 19581, 19501), job_prefix="carme-bresv-", extra_env=env,
                     harness_scopes=SCOPES) as hub:
        for user in ("alice", "erin"):
            hub.ensure_user(user)
        r = hub.session.post(f"{hub.api}/groups/power", json={"users": ["alice"]})
        if r.status_code == 409:
            r = hub.session.post(f"{hub.api}/groups/power/users", json={"users": ["alice"]})
        r.raise_for_status()
        hub.bookings = f"{hub.url}/services/carme-reservations/api"
        assert wait_until(lambda: hub.session.get(f"{hub.bookings}/sync").ok, 60), hub.log_tail()
        yield hub
    slurm_probe.delete_reservations(PREFIX)


@pytest.fixture
def berlin(browser, request):
    """A page whose browser lives in Europe/Berlin (the hub and SLURM run in UTC)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # a Berlin user (English pages): their zone and a 24-hour clock (the page follows the browser's locale)
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, timezone_id=ZONE, locale="en-GB")
    context.set_default_timeout(30_000)
    page = context.new_page()
    test = artifact_name(request.node.name)
    page.artifact = lambda step: page.screenshot(path=str(ARTIFACTS / f"{test}--{artifact_name(step)}.png"),
                                                 full_page=True)
    yield page
    context.close()


def api(hub, user: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"token {hub.user_token(user)}"
    return session


def test_the_calendar_shows_the_booking_and_the_form_names_a_bad_end(hub, berlin):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    r = api(hub, "alice").post(f"{hub.bookings}/bookings", json={
        "start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(), "gpus": 1, "gpu_type": "a100",
        "title": "active now"})
    assert r.status_code == 201, r.text
    STATE["booking"] = booking = r.json()["booking"]

    login(berlin, hub, "alice")
    berlin.goto(f"{hub.url}/services/carme-reservations/")
    block = berlin.wait_for_selector(f'#carme-week .carme-block.mine[data-booking="{booking["id"]}"]')
    local = now.astimezone(ZoneInfo(ZONE))
    assert f"{local:%H:%M}" in block.inner_text(), block.inner_text()  # drawn in the browser's zone
    assert berlin.inner_text("#carme-zone") == ZONE
    assert berlin.locator(f'#my-bookings tr[data-booking="{booking["id"]}"]').count() == 1
    berlin.artifact("calendar")

    start = (local + timedelta(days=1)).replace(hour=10, minute=0, second=0)
    berlin.fill("#booking-start", f"{start:%Y-%m-%dT%H:%M}")
    berlin.fill("#booking-end", f"{start - timedelta(hours=1):%Y-%m-%dT%H:%M}")
    berlin.click("#booking-submit")
    error = berlin.wait_for_selector("#booking-end-error")
    assert "must be after the start" in error.inner_text()
    assert "is-invalid" in berlin.get_attribute("#booking-end", "class")
    assert berlin.inner_text("#booking-notice").startswith("end: must be after the start")
    berlin.artifact("end-before-start")

    # a good one, in Berlin's local time: booked as that instant in UTC
    berlin.fill("#booking-start", f"{start:%Y-%m-%dT%H:%M}")
    berlin.fill("#booking-end", f"{start + timedelta(hours=2):%Y-%m-%dT%H:%M}")
    berlin.select_option("#booking-type", "1g.10gb")
    berlin.click("#booking-submit")
    assert "Booked 1 GPU" in berlin.wait_for_selector("#booking-notice").inner_text()
    mine = api(hub, "alice").get(f"{hub.bookings}/bookings", params={"mine": 1,
                                                                     "end": (now + timedelta(days=3)).isoformat()})
    booked = [b for b in mine.json()["bookings"] if b["gpu_type"] == "1g.10gb"]
    assert [datetime.fromisoformat(b["start"]) for b in booked] == [start.astimezone(timezone.utc)], booked
    berlin.artifact("booked")


def test_the_spawn_form_preselects_the_active_reservation(hub, berlin):
    name = STATE["booking"]["reservation"]
    assert wait_until(lambda: any(r["name"] == name for r in hub.session.get(
        f"{hub.api}/carme/slurm/reservations").json()["reservations"]), 30)
    login(berlin, hub, "alice")
    berlin.goto(f"{hub.url}/hub/spawn/alice")
    select = berlin.wait_for_selector("#carme-reservation")
    assert select.input_value() == name
    chosen = berlin.locator("#carme-reservation option:checked").inner_text()
    assert chosen.startswith(f"{name} · active until"), chosen
    assert berlin.locator("#carme-book-link").get_attribute("href").endswith("/services/carme-reservations/")
    berlin.artifact("spawn-form")


def test_the_ics_feed_from_the_calendar_page_parses(hub, berlin):
    login(berlin, hub, "alice")
    berlin.goto(f"{hub.url}/services/carme-reservations/")
    berlin.click("#feed-button")
    notice = berlin.wait_for_selector("#booking-notice").inner_text()
    url = re.search(r"https?://\S+\.ics\?token=\S+", notice).group(0)
    feed = requests.get(url, timeout=30)
    assert feed.status_code == 200, feed.text
    events = icalendar.Calendar.from_ical(feed.text).walk("VEVENT")
    assert any(str(e["UID"]).startswith(f"booking-{STATE['booking']['id']}@") and str(e["SUMMARY"]).startswith(
        "active now") for e in events), feed.text


def test_an_admin_approves_erins_booking_on_the_queue_page(hub, page):
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=5)
    r = api(hub, "erin").post(f"{hub.bookings}/bookings", json={
        "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(), "gpus": 1,
        "gpu_type": "1g.10gb", "title": "exam prep"})
    assert r.status_code == 201 and r.json()["booking"]["state"] == "pending", r.text
    booking = r.json()["booking"]
    assert not [n for n in slurm_probe.reservations() if n.endswith("-erin")]

    login(page, hub, "admin")
    page.goto(f"{hub.url}/services/carme-reservations/queue")
    row = page.wait_for_selector(f'#pending-bookings tr[data-booking="{booking["id"]}"]')
    assert "erin" in row.inner_text() and "exam prep" in row.inner_text()
    page.artifact("queue")
    row.query_selector("button[value=approve]").click()
    notice = page.wait_for_selector("#queue-notice").inner_text()
    assert f"Booking {booking['id']} of erin approved" in notice, notice
    page.artifact("approved")
    name = f"{PREFIX}{booking['id']}-erin"
    assert slurm_probe.reservation(name)["Users"] == "erin"
