"""scripts/lab/city-check.py picks, for its "blocked" line, a category whose block depends on
the time (blocked now inside its window, or shown allowed outside it), decided by
schedule.active_blocks on the compiled production sites; an always-blocked category (games)
only when no time-windowed one can be shown at that minute."""

from __future__ import annotations

import datetime as dt
import importlib.util

import pytest

from gerbang_kota.inventory import compile_inventory
from policy_copy import REPO_ROOT

WIB = dt.timezone(dt.timedelta(hours=7))


def _city_check():
    spec = importlib.util.spec_from_file_location("city_check", REPO_ROOT / "scripts/lab/city-check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


city_check = _city_check()


@pytest.fixture(scope="module")
def sites():
    city = compile_inventory(REPO_ROOT / "inventory/production", today=dt.date(2026, 11, 23))
    assert not city["errors"]
    return city["sites"]


def names_of(site):
    # The lab's stand-in internet serves every name the policy lists (scripts/lab/lab.py).
    return {d: "100.64.0.10" for c in site["categories"].values() for d in c["domains"]}


def pick(site, *when):
    return city_check.pick_category(site, dt.datetime(*when, tzinfo=WIB), names_of(site))


def test_time_windowed_categories(sites):
    assert "games" not in city_check.time_windowed(sites["bapenda"])
    assert {"social_media", "streaming"} <= set(city_check.time_windowed(sites["bapenda"]))
    # The hospital streams at no hour: its streaming block is `always`, not time-windowed.
    assert "streaming" not in city_check.time_windowed(sites["rsud"])


def test_working_hours_pick_a_category_blocked_by_its_window(sites):
    category, blocked, why = pick(sites["bapenda"], 2026, 11, 23, 10, 0)   # Monday 10:00
    assert blocked and category in ("social_media", "streaming") and why.startswith("inside its window")


def test_saturday_morning_differs_by_group(sites):
    # Public-service counters are open (jam_layanan): blocked; other offices: allowed, and said so.
    category, blocked, why = pick(sites["kec-kasemen"], 2026, 11, 28, 9, 30)
    assert blocked and category in ("social_media", "streaming") and "Jam layanan publik" in why
    category, blocked, why = pick(sites["bapenda"], 2026, 11, 28, 9, 30)
    assert not blocked and category in city_check.time_windowed(sites["bapenda"])
    assert why.startswith("outside its window")
    assert category not in city_check.schedule.active_blocks(sites["bapenda"], dt.datetime(2026, 11, 28, 9, 30,
                                                                                            tzinfo=WIB))


def test_a_category_about_to_change_is_not_picked(sites):
    # Monday 06:59: every working-hours block starts within two minutes; games is blocked anyway.
    category, blocked, why = pick(sites["bapenda"], 2026, 11, 23, 6, 59)
    assert (category, blocked) == ("games", True) and "all hours" in why
