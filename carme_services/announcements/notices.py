"""A new announcement's checks (pure): severity, plain text, start and expiry, each refusal naming its field.

    parse_notice({"severity": "warning", "text": "carme-n2 drained Friday 08:00-12:00",
                  "start": "2026-12-04T08:00:00+01:00", "expiry": "2026-12-04T12:00:00+01:00"}, now, limits)

- `severity`: info (default), warning or danger;
- `text`: plain text (shown escaped: HTML in it is shown as typed), 1 to `max_text_length`
  characters after stripping, no control characters but newlines;
- `start`: when it begins to show (default now): an ISO 8601 time with its zone (`Z` or
  `+01:00`) or epoch seconds; at most `max_start_ahead_days` ahead;
- `expiry` (a time like `start`) or `duration` (seconds after the start), exactly one: after the
  start and in the future, at most `max_duration_days` after the start.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from carme_core.announcements import SEVERITIES

FIELDS = ("severity", "text", "start", "expiry", "duration")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"(?:([0-9]+(?:\.[0-9]+)?)([smhdw]))+")
PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")


class NoticeError(ValueError):
    """Bad input: `field` names what is wrong; str() is "field: message"."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class NoticeLimits:
    max_text_length: int = 500
    max_duration_days: float = 31.0
    max_start_ahead_days: float = 365.0


@dataclass(frozen=True)
class NewNotice:
    severity: str
    text: str
    start: datetime  # timezone-aware UTC, to the second
    expiry: datetime


def parse_duration(text: str, field: str = "duration") -> float:
    """Seconds of "90s", "30m", "2h", "7d", "1w", "1h30m"; NoticeError naming `field` otherwise."""
    compact = text.strip().lower().replace(" ", "") if isinstance(text, str) else ""
    if not DURATION.fullmatch(compact):
        raise NoticeError(field, f"{text!r} is not a duration (e.g. 90s, 30m, 2h, 7d, 1h30m)")
    return sum(float(n) * UNITS[u] for n, u in PART.findall(compact))


def is_duration(text) -> bool:
    return isinstance(text, str) and bool(DURATION.fullmatch(text.strip().lower().replace(" ", "")))


def parse_time(value, field: str) -> datetime:
    """An aware UTC datetime (to the second) from ISO 8601 with a zone, or epoch seconds."""
    if isinstance(value, bool) or value is None:
        raise NoticeError(field, "must be a time: ISO 8601 with its zone (2026-12-04T08:00:00+01:00) or epoch seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value < 253402300800:  # year 10000
            raise NoticeError(field, f"{value!r} is not a time in epoch seconds")
        return datetime.fromtimestamp(int(value), timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise NoticeError(field, "must be a time: ISO 8601 with its zone (2026-12-04T08:00:00+01:00) or epoch seconds")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        raise NoticeError(field, f"{text!r} is not an ISO 8601 time (e.g. 2026-12-04T08:00:00+01:00)") from None
    if parsed.tzinfo is None:
        raise NoticeError(field, f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return parsed.astimezone(timezone.utc).replace(microsecond=0)


def check_text(value, max_length: int) -> str:
    if not isinstance(value, str):
        raise NoticeError("text", "must be text")
    text = "\n".join(line.rstrip() for line in value.strip().replace("\r\n", "\n").split("\n"))
    if not text:
        raise NoticeError("text", "is empty")
    if len(text) > max_length:
        raise NoticeError("text", f"at most {max_length} characters, not {len(text)}")
    bad = sorted({c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")})
    if bad:
        raise NoticeError("text", f"holds control or unassigned characters ({', '.join(f'U+{ord(c):04X}' for c in bad)})")
    return text


def parse_notice(body: Mapping, now: datetime, limits: NoticeLimits = NoticeLimits()) -> NewNotice:
    """The checked notice of an API body (or the page's form); NoticeError naming the field otherwise."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise NoticeError(unknown[0], f"unknown field (fields: {', '.join(FIELDS)})")
    severity = body.get("severity") or "info"
    if severity not in SEVERITIES:
        raise NoticeError("severity", f"must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    text = check_text(body.get("text"), limits.max_text_length)
    now = now.astimezone(timezone.utc).replace(microsecond=0)
    start = now if body.get("start") in (None, "") else parse_time(body["start"], "start")
    ahead = (start - now).total_seconds() / 86400
    if ahead > limits.max_start_ahead_days:
        raise NoticeError("start", f"at most {limits.max_start_ahead_days:g} days ahead, not {ahead:.1f}")
    has_expiry, has_duration = body.get("expiry") not in (None, ""), body.get("duration") not in (None, "")
    if has_expiry == has_duration:
        raise NoticeError("expiry", "give the expiry (a time) or the duration (seconds after the start), one of them")
    if has_duration:
        duration = body["duration"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
            raise NoticeError("duration", "must be a number of seconds")
        if duration <= 0:
            raise NoticeError("duration", f"must be more than 0 seconds, not {duration:g}")
        if duration > limits.max_duration_days * 86400:
            raise NoticeError("duration", f"at most {limits.max_duration_days:g} days ({limits.max_duration_days * 86400:g} "
                                          f"s), not {duration:g} s")
        expiry = datetime.fromtimestamp(math.ceil(start.timestamp() + duration), timezone.utc)
        field = "duration"
    else:
        expiry, field = parse_time(body["expiry"], "expiry"), "expiry"
    if not expiry > start:
        raise NoticeError(field, f"the expiry ({expiry.isoformat()}) must be after the start ({start.isoformat()})")
    if not expiry > now:
        raise NoticeError(field, f"the expiry ({expiry.isoformat()}) is in the past (now {now.isoformat()})")
    days = (expiry - start).total_seconds() / 86400
    if days > limits.max_duration_days:
        raise NoticeError(field, f"at most {limits.max_duration_days:g} days after the start, not {days:.1f}")
    return NewNotice(severity, text, start, expiry)
