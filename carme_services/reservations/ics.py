"""A user's bookings as an iCalendar feed (RFC 5545), for their calendar app (pure).

One VEVENT per booking: its window in UTC, the GPUs and the SLURM reservation's name in the
summary, the state as STATUS (approved CONFIRMED, pending TENTATIVE, the others CANCELLED, so a
calendar that saw a booking before drops it). Lines end in CRLF and are folded at 75 octets;
text is escaped as the RFC says.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from .capacity import type_words
from .store import Booking

PRODID = "-//Carme//carme-reservations//EN"
STATUS = {"approved": "CONFIRMED", "pending": "TENTATIVE"}


def _escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space (never inside a
    UTF-8 character)."""
    out, current, size = [], "", 0
    for ch in line:
        width = len(ch.encode())
        if size + width > (75 if not out else 74):
            out.append(current)
            current, size = "", 0
        current += ch
        size += width
    out.append(current)
    return "\r\n ".join(out)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def booking_summary(booking: Booking) -> str:
    gpus = type_words(booking.request)
    what = booking.title or "GPU booking"
    state = "" if booking.state == "approved" else f" ({booking.state})"
    return f"{what}: {gpus}{state}"


def calendar(bookings: Iterable[Booking], host: str, now: datetime, name: str = "Carme GPU bookings") -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", "METHOD:PUBLISH",
             f"X-WR-CALNAME:{_escape(name)}"]
    for b in bookings:
        description = [f"State: {b.state}", f"Nodes: {', '.join(b.nodes) or '-'}"]
        if b.slurm_name:
            description.append(f"Use it: choose reservation {b.slurm_name} on the spawn form "
                               f"(sbatch --reservation={b.slurm_name})")
        if b.note:
            description.append(f"Note: {b.note}")
        lines += [
            "BEGIN:VEVENT",
            f"UID:booking-{b.id}@{host}",
            f"DTSTAMP:{_stamp(now)}",
            f"DTSTART:{_stamp(b.start)}",
            f"DTEND:{_stamp(b.end)}",
            f"SUMMARY:{_escape(booking_summary(b))}",
            f"DESCRIPTION:{_escape(chr(10).join(description))}",
            f"STATUS:{STATUS.get(b.state, 'CANCELLED')}",
            f"LAST-MODIFIED:{_stamp(b.decided_at or b.created_at)}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)
