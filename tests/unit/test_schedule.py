"""Schedules: windows -> day segments, Squid time strings and the decision at window edges."""

import datetime as dt

import pytest

from gerbang_kota import schedule

JAM_KERJA = {"name": "jam_kerja", "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:00", "end": "16:00"}]}
MALAM = {"name": "malam", "windows": [{"days": ["fri"], "start": "22:00", "end": "05:00"}]}


def _site(*blocks):
    schedules = {name: schedule.compile_schedule(s) for name, s in (("jam_kerja", JAM_KERJA), ("malam", MALAM))}
    schedules["always"] = schedule.always_schedule()
    return {"timezone": "Asia/Jakarta", "schedules": schedules,
            "blocks": [{"rule": f"r{i}", "category": c, "schedule": s} for i, (c, s) in enumerate(blocks)]}


# 2026-11-23 is a Monday; 2026-11-28 a Saturday.
@pytest.mark.parametrize(("at", "blocked"), [
    ("2026-11-23 06:59", []),
    ("2026-11-23 07:00", ["streaming"]),
    ("2026-11-23 15:59", ["streaming"]),
    ("2026-11-23 16:00", []),
    ("2026-11-27 15:59", ["streaming"]),   # Friday
    ("2026-11-28 10:00", []),              # Saturday
    ("2026-11-29 10:00", []),              # Sunday
])
def test_working_hours_edges(at, blocked):
    assert schedule.active_blocks(_site(("streaming", "jam_kerja")), dt.datetime.fromisoformat(at)) == blocked


def test_aware_time_is_converted_to_wib():
    site = _site(("streaming", "jam_kerja"))
    # 00:00 UTC is 07:00 WIB (UTC+7).
    assert schedule.active_blocks(site, dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.timezone.utc)) == ["streaming"]
    assert schedule.active_blocks(site, dt.datetime(2026, 11, 22, 23, 59, tzinfo=dt.timezone.utc)) == []


def test_window_past_midnight_is_split_into_two_days():
    assert schedule.window_segments(MALAM["windows"][0]) == [
        {"day": 4, "start_minute": 1320, "end_minute": 1440},
        {"day": 5, "start_minute": 0, "end_minute": 300},
    ]
    site = _site(("games", "malam"))
    assert schedule.active_blocks(site, dt.datetime(2026, 11, 28, 4, 59)) == ["games"]
    assert schedule.active_blocks(site, dt.datetime(2026, 11, 28, 5, 0)) == []
    assert schedule.active_blocks(site, dt.datetime(2026, 11, 27, 21, 59)) == []


def test_squid_time_includes_its_end_minute():
    assert schedule.compile_schedule(JAM_KERJA)["squid"] == ["MTWHF 07:00-15:59"]
    assert schedule.compile_schedule(MALAM)["squid"] == ["F 22:00-23:59", "A 00:00-04:59"]


def test_several_windows_a_day_merge_when_touching():
    sched = {"name": "x", "windows": [{"days": ["mon"], "start": "07:00", "end": "12:00"},
                                      {"days": ["mon"], "start": "12:00", "end": "13:00"},
                                      {"days": ["mon"], "start": "14:00", "end": "15:00"}]}
    assert schedule.compile_schedule(sched)["segments"] == [
        {"day": 0, "start_minute": 420, "end_minute": 780}, {"day": 0, "start_minute": 840, "end_minute": 900}]


def test_subtracting_an_allow_leaves_the_rest_of_the_block():
    block = schedule.compile_schedule(JAM_KERJA)["segments"]
    lunch = schedule.window_segments({"days": ["mon"], "start": "12:00", "end": "13:00"})
    left = schedule.subtract_segments(block, lunch)
    assert {"day": 0, "start_minute": 420, "end_minute": 720} in left
    assert {"day": 0, "start_minute": 780, "end_minute": 960} in left
    assert len(left) == 6


@pytest.mark.parametrize(("window", "message"), [
    ({"days": ["mon"], "start": "07:00", "end": "24:30"}, "is not a time of day"),
    ({"days": ["mon"], "start": "24:00", "end": "05:00"}, "cannot start a window"),
    ({"days": ["mon"], "start": "09:00", "end": "09:00"}, "is empty"),
    ({"days": [], "start": "07:00", "end": "16:00"}, "has no days"),
    ({"days": ["senin"], "start": "07:00", "end": "16:00"}, "unknown day"),
    ({"days": ["mon"], "start": "7:00", "end": "16:00"}, "HH:MM"),
])
def test_impossible_windows_are_refused(window, message):
    with pytest.raises(schedule.ScheduleError, match=message):
        schedule.window_segments(window)
