"""A booking request checked (pure): its times, its GPUs, and the rules of the booker's role.

Times are UTC inside. A time comes in as ISO 8601: with an offset ("2027-03-28T14:00+02:00",
"...Z") it is that instant; without one ("2027-03-28T14:00", as a browser's datetime-local
field sends it) it is read in the request's `timezone` (an IANA name such as "Europe/Berlin",
default UTC). A local time that does not exist there (the hour the clocks skip in spring) or
that exists twice (the hour repeated in autumn) is refused, naming the field: Carme never
guesses which instant was meant.

Every refusal is a `BookingError(field, message)`; str() reads "field: message".
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carme_slurm.reservation_argv import GPU_TYPE, PARTITION_NAME

FIELDS = ("start", "end", "gpus", "gpu_type", "partition", "timezone", "title")
TITLE_MAX = 120
FURTHEST = timedelta(days=731)  # no booking ends further ahead (whatever a role may)
PAST_GRACE = timedelta(minutes=1)  # a start this much in the past is "now" (the form took a while)


class BookingError(ValueError):
    """A refused booking: `field` names what is wrong (str() is "field: message")."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class BookingRequest:
    start: datetime  # aware, UTC
    end: datetime
    gpus: int
    gpu_type: str = ""  # "" any type
    partition: str = ""  # "" any partition
    title: str = ""

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.hours


@dataclass(frozen=True)
class RoleRules:
    """What one role may book; None is no limit."""

    max_hours: float | None = None  # the longest booking
    max_gpus: int | None = None  # the most GPUs in one booking
    max_days_ahead: float | None = None  # how far ahead a booking may start
    max_open: int | None = None  # bookings not yet ended (pending or approved) at once

    @classmethod
    def from_mapping(cls, role: str, raw: Mapping) -> RoleRules:
        where = f"role_rules.{role}"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: must be a mapping of rules")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{where}: unknown rule {', '.join(unknown)} (known: {', '.join(cls.__dataclass_fields__)})")
        values = {}
        for name, value in raw.items():
            if value is None:
                continue
            whole = name in ("max_gpus", "max_open")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
                    whole and not isinstance(value, int)):
                raise ValueError(f"{where}.{name}: must be a positive {'whole ' if whole else ''}number (or null)")
            values[name] = value
        return cls(**values)


def parse_time(field: str, value, zone_name: str = "UTC") -> datetime:
    """An ISO 8601 time as an aware UTC datetime (see the module docstring)."""
    if not isinstance(value, str) or not value.strip():
        raise BookingError(field, "must be a date and time, e.g. 2027-03-28T14:00 (ISO 8601)")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise BookingError(field, f"{text[:40]!r} is not a date and time like 2027-03-28T14:00 (ISO 8601)") from None
    try:
        return _utc(field, moment, zone_name)
    except OverflowError:
        raise BookingError(field, f"{text[:40]!r} is out of the range of dates Carme takes") from None


def _utc(field: str, moment: datetime, zone_name: str) -> datetime:
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc)
    zone = parse_zone(zone_name)
    early, late = moment.replace(tzinfo=zone, fold=0), moment.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        if early.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != moment:
            raise BookingError(field, f"{moment:%Y-%m-%d %H:%M} does not exist in {zone_name}: the clocks "
                               "skip that hour (daylight saving time begins); choose a time outside it")
        raise BookingError(field, f"{moment:%Y-%m-%d %H:%M} happens twice in {zone_name} (daylight saving "
                           "time ends): give the offset, e.g. " + early.isoformat(timespec="minutes"))
    return early.astimezone(timezone.utc)


def parse_zone(name) -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64:
        raise BookingError("timezone", "must be an IANA time zone name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BookingError("timezone", f"{name!r} is not a known time zone (IANA names such as Europe/Berlin)") from None


def parse_booking(body: Mapping, now: datetime, gpu_types: Collection[str], partitions: Collection[str],
                  base: BookingRequest | None = None) -> BookingRequest:
    """The request in `body` (an API body or a form), checked against the clock and the cluster's
    GPU types and partitions. With `base` (an edit), fields `body` leaves out keep its values."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BookingError(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    zone = body.get("timezone") or "UTC"
    parse_zone(zone)
    start = parse_time("start", body["start"], zone) if "start" in body else (base.start if base else None)
    end = parse_time("end", body["end"], zone) if "end" in body else (base.end if base else None)
    if start is None:
        raise BookingError("start", "is required")
    if end is None:
        raise BookingError("end", "is required")
    if end <= start:
        raise BookingError("end", f"must be after the start ({start:%Y-%m-%d %H:%M} UTC)")
    if base is None or start != base.start:  # an edit may keep a start that has passed
        if start < now - PAST_GRACE:
            raise BookingError("start", f"is in the past ({start:%Y-%m-%d %H:%M} UTC, now {now:%H:%M} UTC)")
        start = max(start, now)
    if end <= now:
        raise BookingError("end", "is in the past")
    if end - now > FURTHEST:
        raise BookingError("end", f"is more than {FURTHEST.days} days ahead")
    gpus = body.get("gpus", base.gpus if base else None)
    if isinstance(gpus, str) and re.fullmatch(r"[0-9]{1,6}", gpus.strip()):
        gpus = int(gpus)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise BookingError("gpus", "must be a whole number of GPUs, at least 1")
    gpu_type = _known_name(body, "gpu_type", base.gpu_type if base else "", GPU_TYPE, gpu_types,
                           "a GPU type name (or empty for any type)", "GPU type", "no typed GPUs")
    partition = _known_name(body, "partition", base.partition if base else "", PARTITION_NAME, partitions,
                            "a partition name (or empty for any)", "partition", "no partitions")
    title = body.get("title", base.title if base else "") or ""
    if not isinstance(title, str) or len(title) > TITLE_MAX or any(ord(c) < 32 for c in title):
        raise BookingError("title", f"must be one line of at most {TITLE_MAX} characters")
    return BookingRequest(start=start.replace(microsecond=0), end=end.replace(microsecond=0), gpus=gpus,
                          gpu_type=gpu_type, partition=partition, title=title.strip())


def _known_name(body: Mapping, field: str, kept: str, pattern, known: Collection[str], rule: str, what: str,
                none: str) -> str:
    """`body[field]` (else `kept`): "" or one of `known`."""
    value = body.get(field, kept) or ""
    if not isinstance(value, str) or (value and not pattern.fullmatch(value)):
        raise BookingError(field, f"must be {rule}")
    if value and value not in known:
        raise BookingError(field, f"{value!r} is not a {what} of this cluster (it has {', '.join(sorted(known)) or none})")
    return value


def rules_refusal(request: BookingRequest, rules: RoleRules, role: str, open_bookings: int,
                  now: datetime) -> BookingError | None:
    """The first of the role's rules the request breaks (403), else None. `open_bookings`: the
    booker's others that have not ended (an edit leaves the booking itself out)."""
    if rules.max_hours is not None and request.hours > rules.max_hours + 1e-9:
        return BookingError("end", f"the booking lasts {request.hours:g} h: role {role} may book at most "
                            f"{rules.max_hours:g} h at once", 403)
    if rules.max_gpus is not None and request.gpus > rules.max_gpus:
        return BookingError("gpus", f"{request.gpus} GPUs: role {role} may book at most {rules.max_gpus}", 403)
    if rules.max_days_ahead is not None and request.start - now > timedelta(days=rules.max_days_ahead):
        days = (request.start - now).total_seconds() / 86400
        return BookingError("start", f"starts in {math.floor(days)} days: role {role} may book at most "
                            f"{rules.max_days_ahead:g} days ahead", 403)
    if rules.max_open is not None and open_bookings >= rules.max_open:
        return BookingError("start", f"you have {open_bookings} bookings that have not ended: role {role} "
                            f"may have {rules.max_open} at once (cancel one first)", 403)
    return None
