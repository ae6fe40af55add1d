"""Report figures: percentiles, counter increases through resets, working hours, site figures."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gerbang_kota import report_figures as f

JKT = ZoneInfo("Asia/Jakarta")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=JKT).timestamp()


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert f.percentile(values, 95) == 95
    assert f.percentile(values, 100) == 100
    assert f.percentile([7.0], 95) == 7.0
    assert f.percentile([], 95) == 0.0
    # 20 samples: the 19th largest is the 95th percentile, one burst above it is ignored.
    assert f.percentile([1.0] * 19 + [50.0], 95) == 1.0


def test_counter_increase_counts_through_a_reset():
    assert f.counter_increase([(0, 100), (15, 150), (30, 10), (45, 40)]) == 50 + 10 + 30
    assert f.counter_increase([(0, 5)]) == 0


@pytest.mark.parametrize("text, days, start, end", [
    ("mon-fri 07:00-16:00", {0, 1, 2, 3, 4}, 420, 960),
    ("sat 08:00-12:00", {5}, 480, 720),
    ("fri-mon 00:00-24:00", {4, 5, 6, 0}, 0, 1440),
])
def test_parse_working_hours(text, days, start, end):
    assert f.parse_working_hours(text) == [{"day": d, "start_minute": start, "end_minute": end} for d in sorted(days)]


def test_working_hours_of_the_compiled_city_schedule_with_two_windows():
    """The report's default: the city's compiled working hours (segments), e.g. jam_layanan."""
    hours = f.parse_working_hours("mon-fri 07:00-16:00; sat 08:00-12:00")
    assert f.in_working_hours(at("2026-11-28T08:00"), "Asia/Jakarta", hours)      # Saturday
    assert not f.in_working_hours(at("2026-11-28T12:00"), "Asia/Jakarta", hours)
    assert f.in_working_hours(at("2026-11-27T15:59"), "Asia/Jakarta", hours)      # Friday


def test_working_hours_are_local_time():
    hours = f.parse_working_hours("mon-fri 07:00-16:00")
    assert f.in_working_hours(at("2026-11-23T07:00"), "Asia/Jakarta", hours)      # Monday
    assert not f.in_working_hours(at("2026-11-23T06:59"), "Asia/Jakarta", hours)
    assert not f.in_working_hours(at("2026-11-23T16:00"), "Asia/Jakarta", hours)
    assert not f.in_working_hours(at("2026-11-22T10:00"), "Asia/Jakarta", hours)  # Sunday


def test_site_figures_separate_working_hours():
    hours = f.parse_working_hours("mon-fri 07:00-16:00")
    night = [(at("2026-11-23T02:00") + i * 60, 9e6) for i in range(10)]
    day = [(at("2026-11-23T09:00") + i * 60, 2e6) for i in range(10)]
    result = f.site_figures(night + day, ceil_bits=10e6, rate_bits=5e6, timezone="Asia/Jakarta", working=hours)
    assert result["peak_mbit"] == 9
    assert result["p95_mbit"] == 9
    assert result["work_mean_mbit"] == 2
    assert result["work_utilisation"] == pytest.approx(0.2)
    assert result["work_samples"] == 10 and result["samples"] == 20
    assert result["ceil_mbit"] == 10 and result["rate_mbit"] == 5


def test_top_orders_and_drops_zeros():
    assert f.top({"b": 2, "a": 2, "c": 5, "z": 0}, 2) == [("c", 5), ("a", 2)]


def test_window_increase_counts_a_series_born_in_the_period():
    # The site reported from t=0; the "games" denials appeared at t=30 with 4, then 6.
    assert f.window_increase([(30, 4), (45, 6)], site_first_seen=0) == 6
    # A series present from the site's first sample: only its increase (and through a reset).
    assert f.window_increase([(0, 10), (15, 12), (30, 1)], site_first_seen=0) == 3
    assert f.window_increase([], 0) == 0
    assert f.window_increase([(30, 4)], site_first_seen=None) == 0


def test_means_from_the_byte_counter_are_volume_over_time():
    hours = f.parse_working_hours("mon-fri 07:00-16:00")
    t0 = at("2026-11-23T15:58")
    # 1.25 MB per minute = 166,666 bit/s; the last two minutes are after working hours.
    counter = [(t0 + i * 60, i * 1_250_000.0) for i in range(5)]
    counter[3] = (counter[3][0], 0.0)          # a reset (shaping reloaded): counted from zero
    bits = [(t, 1e5) for t, _ in counter]
    result = f.site_figures(bits, 1e6, 5e5, "Asia/Jakarta", hours, counter)
    assert result["work_mean_mbit"] == pytest.approx(1_250_000 * 8 / 60 / 1e6)
    assert result["mean_mbit"] == pytest.approx((2 * 1_250_000 + 0 + 5_000_000) * 8 / 240 / 1e6)
    assert result["work_utilisation"] == pytest.approx(1_250_000 * 8 / 60 / 1e6)
    assert result["peak_mbit"] == pytest.approx(0.1)
