"""Figures of the monitoring report, computed from plain series (pure functions, unit-tested).

A series is a list of (unix_time, value) pairs, as Prometheus' query_range returns them.
"""

from __future__ import annotations

import datetime as _dt
import math
from zoneinfo import ZoneInfo

from gerbang_kota import schedule

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the convention of burstable "95th percentile" billing)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def counter_increase(series: list[tuple[float, float]]) -> float:
    """Total increase of a counter over the samples, counting through resets (restarts)."""
    total = 0.0
    for (_, previous), (_, current) in zip(series, series[1:]):
        total += current - previous if current >= previous else current
    return total


def window_increase(series: list[tuple[float, float]], site_first_seen: float | None) -> float:
    """Increase of a collector counter over the report's grid, counting a series born inside it.

    The collector only exports a label set (a category, a domain) once it has counted one, so a
    series whose first sample comes after the site's first sample in the period started at zero
    in between: its first value is part of the increase (PromQL's increase() would lose it).
    """
    if not series:
        return 0.0
    born = site_first_seen is not None and series[0][0] > site_first_seen
    return (series[0][1] if born else 0.0) + counter_increase(series)


def parse_working_hours(text: str) -> list[dict]:
    """"mon-fri 07:00-16:00" -> day segments (schedule.window_segments: Monday = 0, minutes of the
    day, half-open, split at midnight). Several windows are separated by ";". For a report that
    does not follow the city's compiled working hours (gerbang_working_hours)."""
    segments = []
    for part in text.split(";"):
        days_text, hours_text = part.split()
        first, _, last = days_text.partition("-")
        start_day, end_day = DAYS.index(first), DAYS.index(last or first)
        days = list(range(start_day, end_day + 1)) if start_day <= end_day else list(range(start_day, 7)) + list(range(end_day + 1))
        start, _, end = hours_text.partition("-")
        segments += schedule.window_segments({"days": [DAYS[d] for d in days], "start": start, "end": end})
    return schedule.normalize_segments(segments)


def in_working_hours(timestamp: float, timezone: str, working: list[dict]) -> bool:
    return schedule.in_segments(working, _dt.datetime.fromtimestamp(timestamp, ZoneInfo(timezone)))


def volume_means(counter: list[tuple[float, float]], timezone: str, working: list[dict]) -> tuple[float, float]:
    """(mean bit/s over the whole series, mean bit/s over its working-hours intervals) from a byte
    counter sampled on the report's grid: bytes moved / time, each interval (t_i, t_i+1] counted in
    working hours when t_i is; resets counted like counter_increase."""
    total = work = total_s = work_s = 0.0
    for (t0, v0), (t1, v1) in zip(counter, counter[1:]):
        moved = v1 - v0 if v1 >= v0 else v1
        total, total_s = total + moved, total_s + (t1 - t0)
        if in_working_hours(t0, timezone, working):
            work, work_s = work + moved, work_s + (t1 - t0)
    return (total * 8 / total_s if total_s else 0.0), (work * 8 / work_s if work_s else 0.0)


def site_figures(bits: list[tuple[float, float]], ceil_bits: float, rate_bits: float, timezone: str,
                 working: list[dict], counter: list[tuple[float, float]] | None = None) -> dict:
    """Allocation vs use for one site and direction, from its bit-rate series (peak, percentiles)
    and, when given, its byte counter on the same grid (means and utilisation = volume / time,
    exact whatever the rate window; without it the means are means of the rate samples)."""
    values = [v for _, v in bits]
    work = [v for t, v in bits if in_working_hours(t, timezone, working)]
    peak = max(values, default=0.0)
    p95 = percentile(values, 95)
    if counter is not None and len(counter) > 1:
        mean, work_mean = volume_means(counter, timezone, working)
    else:
        mean = (sum(values) / len(values)) if values else 0.0
        work_mean = (sum(work) / len(work)) if work else 0.0
    return {
        "ceil_mbit": ceil_bits / 1e6,
        "rate_mbit": rate_bits / 1e6,
        "peak_mbit": peak / 1e6,
        "p95_mbit": p95 / 1e6,
        "mean_mbit": mean / 1e6,
        "work_mean_mbit": work_mean / 1e6,
        "work_p95_mbit": percentile(work, 95) / 1e6,
        "work_utilisation": (work_mean / ceil_bits) if ceil_bits else 0.0,
        "p95_of_ceil": (p95 / ceil_bits) if ceil_bits else 0.0,
        "work_samples": len(work),
        "samples": len(values),
    }


def top(items: dict[str, float], count: int) -> list[tuple[str, float]]:
    """The `count` largest entries, largest first, ties by name; zero entries left out."""
    return sorted(((k, v) for k, v in items.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))[:count]
