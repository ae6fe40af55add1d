"""Named schedules: parsing windows, splitting them into day segments, Squid time strings and
the decision function `active_blocks(site, when)`.

A window is ``{days: [mon, ...], start: "HH:MM", end: "HH:MM"}`` in the city's local time.
``end`` may be ``24:00``; an ``end`` before ``start`` runs past midnight and is split into a
segment until 24:00 and one from 00:00 on the next day. Segments are half-open minute ranges
``[start_minute, end_minute)`` of one day (day 0 = Monday) and never wrap midnight.

CLI (for people and tests)::

    python -m gerbang_kota.schedule --inventory inventory/production --site rsud --at "2026-11-23 06:59"
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
ALWAYS = "always"
ALWAYS_TITLE = "Selalu"
# Squid's `acl time` day letters (S = Sunday ... A = Saturday), listed here Monday first.
_SQUID_DAY = {0: "M", 1: "T", 2: "W", 3: "H", 4: "F", 5: "A", 6: "S"}
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})$")


class ScheduleError(ValueError):
    """A window that cannot be turned into segments (the message says why)."""


def parse_time(text: object, *, is_end: bool = False) -> int:
    """Minute of the day of ``"HH:MM"``; ``24:00`` only as an end."""
    match = _TIME_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ScheduleError(f"{text!r} is not a time in HH:MM form")
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute > 59 or hour > 24 or (hour == 24 and minute != 0):
        raise ScheduleError(f"{text!r} is not a time of day (00:00 to 23:59, or 24:00 as an end)")
    if hour == 24 and not is_end:
        raise ScheduleError(f"{text!r} cannot start a window (24:00 is only valid as an end)")
    return hour * 60 + minute


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def window_segments(window: dict) -> list[dict]:
    """Segments of one window, split at midnight."""
    days = window.get("days") or []
    if not days:
        raise ScheduleError("the window has no days")
    unknown = [d for d in days if d not in DAYS]
    if unknown:
        raise ScheduleError(f"unknown day(s) {', '.join(map(str, unknown))} (use {' '.join(DAYS)})")
    start = parse_time(window.get("start"))
    end = parse_time(window.get("end"), is_end=True)
    if start == end:
        raise ScheduleError(f"the window {window.get('start')}-{window.get('end')} is empty (start equals end)")
    segments = []
    for day in sorted({DAYS.index(d) for d in days}):
        if end > start:
            segments.append((day, start, end))
        else:  # past midnight: the rest of this day, then the next day's morning
            segments.append((day, start, MINUTES_PER_DAY))
            if end > 0:
                segments.append(((day + 1) % 7, 0, end))
    return [{"day": d, "start_minute": s, "end_minute": e} for d, s, e in segments]


def normalize_segments(segments: list[dict]) -> list[dict]:
    """Sorted, with overlapping or touching segments of the same day merged."""
    by_day: dict[int, list[list[int]]] = {}
    for seg in sorted(segments, key=lambda s: (s["day"], s["start_minute"], s["end_minute"])):
        spans = by_day.setdefault(seg["day"], [])
        if spans and seg["start_minute"] <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], seg["end_minute"])
        else:
            spans.append([seg["start_minute"], seg["end_minute"]])
    return [{"day": d, "start_minute": s, "end_minute": e} for d in sorted(by_day) for s, e in by_day[d]]


def subtract_segments(segments: list[dict], removed: list[dict]) -> list[dict]:
    """``segments`` minus ``removed`` (both lists of day segments)."""
    result = []
    cuts = normalize_segments(removed)
    for seg in normalize_segments(segments):
        pieces = [(seg["start_minute"], seg["end_minute"])]
        for cut in cuts:
            if cut["day"] != seg["day"]:
                continue
            next_pieces = []
            for start, end in pieces:
                if cut["end_minute"] <= start or cut["start_minute"] >= end:
                    next_pieces.append((start, end))
                    continue
                if cut["start_minute"] > start:
                    next_pieces.append((start, cut["start_minute"]))
                if cut["end_minute"] < end:
                    next_pieces.append((cut["end_minute"], end))
            pieces = next_pieces
        result.extend({"day": seg["day"], "start_minute": s, "end_minute": e} for s, e in pieces)
    return normalize_segments(result)


def squid_times(segments: list[dict]) -> list[str]:
    """Squid ``acl NAME time`` arguments, one per distinct time range.

    Squid compares whole minutes and includes the end minute (``t >= start && t <= stop``),
    so the half-open segment [07:00, 16:00) is written ``07:00-15:59``.
    """
    days_by_range: dict[tuple[int, int], set[int]] = {}
    for seg in normalize_segments(segments):
        days_by_range.setdefault((seg["start_minute"], seg["end_minute"]), set()).add(seg["day"])
    lines = []
    for (start, end), days in sorted(days_by_range.items(), key=lambda kv: (min(kv[1]), kv[0])):
        letters = "".join(_SQUID_DAY[d] for d in sorted(days))
        lines.append(f"{letters} {format_minute(start)}-{format_minute(end - 1)}")
    return lines


def windows_from_segments(segments: list[dict]) -> list[dict]:
    """Readable windows (days grouped by identical times) describing ``segments``."""
    days_by_range: dict[tuple[int, int], list[int]] = {}
    for seg in normalize_segments(segments):
        days_by_range.setdefault((seg["start_minute"], seg["end_minute"]), []).append(seg["day"])
    return [
        {"days": [DAYS[d] for d in sorted(days)], "start": format_minute(s), "end": format_minute(e)}
        for (s, e), days in sorted(days_by_range.items(), key=lambda kv: (min(kv[1]), kv[0]))
    ]


def compile_schedule(schedule: dict) -> dict:
    """Compiled form of one named schedule (raises ScheduleError on a bad window)."""
    segments = []
    for window in schedule.get("windows") or []:
        segments.extend(window_segments(window))
    segments = normalize_segments(segments)
    return {
        "title": schedule.get("title") or schedule["name"],
        "always": False,
        "windows": [
            {"days": list(w.get("days") or []), "start": w.get("start"), "end": w.get("end")}
            for w in schedule.get("windows") or []
        ],
        "segments": segments,
        "squid": squid_times(segments),
    }


def always_schedule() -> dict:
    segments = [{"day": d, "start_minute": 0, "end_minute": MINUTES_PER_DAY} for d in range(7)]
    return {
        "title": ALWAYS_TITLE,
        "always": True,
        "windows": [{"days": list(DAYS), "start": "00:00", "end": "24:00"}],
        "segments": segments,
        "squid": squid_times(segments),
    }


def derived_schedule(title: str, segments: list[dict]) -> dict:
    """A schedule that exists only as segments (a block minus an allow)."""
    segments = normalize_segments(segments)
    return {
        "title": title,
        "always": False,
        "windows": windows_from_segments(segments),
        "segments": segments,
        "squid": squid_times(segments),
    }


def minute_of_week(when: _dt.datetime) -> int:
    return when.weekday() * MINUTES_PER_DAY + when.hour * 60 + when.minute


def in_segments(segments: list[dict], when: _dt.datetime) -> bool:
    day, minute = when.weekday(), when.hour * 60 + when.minute
    return any(s["day"] == day and s["start_minute"] <= minute < s["end_minute"] for s in segments)


def local_time(site: dict, when: _dt.datetime) -> _dt.datetime:
    """``when`` on the site's wall clock (naive datetimes are taken as already local)."""
    if when.tzinfo is None:
        return when
    return when.astimezone(ZoneInfo(site.get("timezone") or "UTC")).replace(tzinfo=None)


def active_blocks(site: dict, when: _dt.datetime) -> list[str]:
    """Categories blocked at ``when`` on a compiled site (``gerbang_city.sites[x]``)."""
    local = local_time(site, when)
    blocked = {
        block["category"]
        for block in site.get("blocks", [])
        if in_segments(site["schedules"][block["schedule"]]["segments"], local)
    }
    return sorted(blocked)


def _parse_at(text: str) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise SystemExit(f"--at {text!r}: use 'YYYY-MM-DD HH:MM' (local time) or ISO 8601 with an offset") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gerbang_kota.schedule",
        description="Print the categories a site blocks at a given time.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inventory", help="an inventory to compile (e.g. inventory/production)")
    source.add_argument("--city", help="a compiled city as JSON (the gerbang_city fact)")
    parser.add_argument("--site", required=True, help="inventory hostname, e.g. diskominfo")
    parser.add_argument("--at", default=None, help="local time 'YYYY-MM-DD HH:MM' (default: now)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)

    if args.city:
        with open(args.city, encoding="utf-8") as handle:
            city = json.load(handle)
    else:
        from gerbang_kota.inventory import compile_inventory  # noqa: PLC0415 (only this path needs it)

        city = compile_inventory(args.inventory)
    site = city.get("sites", {}).get(args.site)
    if site is None:
        print(f"unknown site {args.site!r}; sites: {', '.join(sorted(city.get('sites', {})))}", file=sys.stderr)
        return 2
    when = _parse_at(args.at) if args.at else _dt.datetime.now(ZoneInfo(site["timezone"]))
    blocked = active_blocks(site, when)
    if args.json:
        print(json.dumps({"site": args.site, "at": local_time(site, when).isoformat(timespec="minutes"), "blocked": blocked}))
    else:
        print(" ".join(blocked) if blocked else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
