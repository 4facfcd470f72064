"""iCalendar (RFC 5545) text for an athlete's feed: escaped values, lines folded at 75 octets, CRLF."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

__all__ = ["calendar", "escape", "fold", "utc"]

_LINE_OCTETS = 75


def escape(text: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newlines escaped; other controls dropped."""
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return "".join(ch for ch in text if ch == "\t" or ord(ch) >= 0x20 and ord(ch) != 0x7F)


def fold(line: str) -> str:
    """One content line folded (3.1): at most 75 octets a line, never inside a UTF-8 character."""
    out: list[str] = []
    current, size = "", 0
    for ch in line:
        octets = len(ch.encode())
        limit = _LINE_OCTETS if not out else _LINE_OCTETS - 1  # a continuation starts with a space
        if size + octets > limit:
            out.append(current)
            current, size = "", 0
        current += ch
        size += octets
    out.append(current)
    return "\r\n ".join(out)


def utc(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(name: str, events: Iterable[dict], now: float) -> str:
    """A VCALENDAR of VEVENTs, each a map of ``uid``, ``start``, ``end`` (or None), ``summary``, ``location``,
    ``description``, ``url``, ``status`` (CONFIRMED, TENTATIVE, CANCELLED)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Arena//Events//EN", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH", f"X-WR-CALNAME:{escape(name)}"]  # fmt: skip
    for event in events:
        lines += ["BEGIN:VEVENT", f"UID:{event['uid']}", f"DTSTAMP:{utc(now)}", f"DTSTART:{utc(event['start'])}"]
        if event.get("end") is not None:
            lines.append(f"DTEND:{utc(event['end'])}")
        lines.append(f"SUMMARY:{escape(event['summary'])}")
        for name_, key in (("LOCATION", "location"), ("DESCRIPTION", "description")):
            if event.get(key):
                lines.append(f"{name_}:{escape(event[key])}")
        if event.get("url"):
            lines.append(f"URL:{event['url']}")
        lines += [f"STATUS:{event['status']}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
