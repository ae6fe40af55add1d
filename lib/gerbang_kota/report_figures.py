"""Figures of the monitoring report, computed from plain series (pure functions, unit-tested).

A series is a list of (unix_time, value) pairs, as Prometheus' query_range returns them.
"""

from __future__ import annotations

import datetime as _dt
import math
from zoneinfo import ZoneInfo

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


def parse_working_hours(text: str) -> tuple[set[int], int, int]:
    """"mon-fri 07:00-16:00" -> ({0..4}, 420, 960) (Monday = 0, minutes of the day)."""
    days_text, hours_text = text.split()
    first, _, last = days_text.partition("-")
    start_day, end_day = DAYS.index(first), DAYS.index(last or first)
    days = set(range(start_day, end_day + 1)) if start_day <= end_day else set(range(start_day, 7)) | set(range(end_day + 1))
    start, _, end = hours_text.partition("-")
    return days, _minutes(start), _minutes(end)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def in_working_hours(timestamp: float, timezone: str, working: tuple[set[int], int, int]) -> bool:
    local = _dt.datetime.fromtimestamp(timestamp, ZoneInfo(timezone))
    days, start, end = working
    minute = local.hour * 60 + local.minute
    return local.weekday() in days and start <= minute < end


def site_figures(bits: list[tuple[float, float]], ceil_bits: float, rate_bits: float, timezone: str,
                 working: tuple[set[int], int, int]) -> dict:
    """Allocation vs use for one site and direction, from its bit-rate series."""
    values = [v for _, v in bits]
    work = [v for t, v in bits if in_working_hours(t, timezone, working)]
    peak = max(values, default=0.0)
    p95 = percentile(values, 95)
    return {
        "ceil_mbit": ceil_bits / 1e6,
        "rate_mbit": rate_bits / 1e6,
        "peak_mbit": peak / 1e6,
        "p95_mbit": p95 / 1e6,
        "mean_mbit": (sum(values) / len(values) / 1e6) if values else 0.0,
        "work_mean_mbit": (sum(work) / len(work) / 1e6) if work else 0.0,
        "work_p95_mbit": percentile(work, 95) / 1e6,
        "work_utilisation": (sum(work) / len(work) / ceil_bits) if work and ceil_bits else 0.0,
        "p95_of_ceil": (p95 / ceil_bits) if ceil_bits else 0.0,
        "work_samples": len(work),
        "samples": len(values),
    }


def top(items: dict[str, float], count: int) -> list[tuple[str, float]]:
    """The `count` largest entries, largest first, ties by name; zero entries left out."""
    return sorted(((k, v) for k, v in items.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))[:count]
