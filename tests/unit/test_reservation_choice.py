"""Issue 19, part 3: the spawn form offers the user's reservations, preselects the active one,
says when one starts; another user's reservation is refused before sbatch (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from carme_slurm.reservations import SlurmReservation
from carme_spawner.form import FormDefaults, defaults_from_last_choice, render_options_form
from carme_spawner.options import OptionsError, parse_options
from carme_spawner.reservation_choice import minutes_left, refused_reservations, reservation_choices

from .samples import LIMITS
from .test_form import IMAGES, parsed

NOW = 2_000_000_000


def reservation(name, users, start, end, state="INACTIVE"):
    return SlurmReservation(name=name, state=state, start_time=start, end_time=end, nodes="carme-n2", node_count=1,
                            partition="", users=tuple(users), accounts=(), flags=(), tres={})


RESERVATIONS = [
    reservation("later", ["alice"], NOW + 12 * 60, NOW + 3600),
    reservation("now", ["alice"], NOW - 60, NOW + 1800, "ACTIVE"),
    reservation("theirs", ["bob"], NOW - 60, NOW + 1800, "ACTIVE"),
    reservation("course", [], NOW + 86400, NOW + 90000),  # accounts decide: SLURM judges
    reservation("over", ["alice"], NOW - 7200, NOW - 60),
    reservation("all-but-alice", ["-alice"], NOW, NOW + 60),
]


def test_the_users_reservations_active_first_with_when_they_start():
    choices = reservation_choices(RESERVATIONS, "alice", NOW)
    assert [c.name for c in choices] == ["now", "later", "course"]
    assert choices[0].words(NOW).startswith("active until")
    assert choices[1].words(NOW) == "starts in 12 min"
    assert choices[2].words(NOW).startswith("starts ") and "(in 24.0 h)" in choices[2].words(NOW)


def test_the_active_one_is_preselected_and_the_form_offers_a_choice():
    choices = reservation_choices(RESERVATIONS, "alice", NOW)
    d = defaults_from_last_choice({"reservation": "later"}, LIMITS, IMAGES, choices)
    assert d.reservation == "now"
    text = render_options_form(IMAGES, LIMITS, d, reservations=choices, now=NOW)
    offered = [o for o in parsed(text).options if o["_select"] == "reservation"]
    assert [o["value"] for o in offered] == ["", "now", "later", "course"]
    assert [o["value"] for o in offered if "selected" in o] == ["now"]
    assert "later · starts in 12 min" in text
    assert 'name="reservation"' in text and 'type="text" class="form-control" id="carme-reservation"' not in text


def test_without_reservations_the_form_says_so():
    text = render_options_form(IMAGES, LIMITS, FormDefaults(image="base"))
    assert "You have no reservation now or ahead." in text


def test_another_users_reservation_is_refused_naming_the_field_and_not_the_owner():
    refused = refused_reservations(RESERVATIONS, "alice")
    assert set(refused) == {"theirs", "all-but-alice"}
    limits = dataclasses.replace(LIMITS, refused_reservations=refused)
    with pytest.raises(OptionsError) as e:
        parse_options({"image": LIMITS.default_image, "reservation": "theirs"}, limits)
    assert e.value.field == "reservation" and "reserved for other users" in str(e.value) and "bob" not in str(e.value)
    assert parse_options({"image": LIMITS.default_image, "reservation": "now"}, limits).reservation == "now"
    assert parse_options({"image": LIMITS.default_image, "reservation": "unknown"}, limits).reservation == "unknown"


def test_minutes_left_in_a_reservation():
    assert minutes_left(RESERVATIONS[1], NOW) == 30
    assert minutes_left(RESERVATIONS[0], NOW) == 48  # from its start
    assert minutes_left(reservation("open", ["a"], NOW, 0), NOW) is None


def test_a_reservation_that_names_no_users_is_offered_but_never_preselected():
    course = reservation("course-now", [], NOW - 60, NOW + 600, "ACTIVE")
    choices = reservation_choices([course], "alice", NOW)
    assert [c.name for c in choices] == ["course-now"] and not choices[0].names_user
    assert defaults_from_last_choice({}, LIMITS, IMAGES, choices).reservation == ""
