"""The two programs that act on schedules on a gateway — gerbang-dns-schedule (roles/dnsmasq) and
gerbang-squid-cut (roles/squid) — are standalone Python files with no access to lib/, so each
carries its own copy of the rule "a segment covers start_minute <= minute < end_minute of its
weekday". This proves the copies decide as the compiler's `schedule.active_blocks` does: every
minute of a week, at every production site, from the config files the roles really render."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from collections import Counter
from importlib.machinery import SourceFileLoader

import pytest

from gerbang_kota.inventory import compile_inventory
from gerbang_kota.schedule import active_blocks

pytest.importorskip("ansible")
from role_render import REPO, render  # noqa: E402

MONDAY = dt.datetime(2026, 11, 23)
WEEK = [MONDAY + dt.timedelta(minutes=m) for m in range(7 * 24 * 60)]


def _program(name: str, path: str):
    loader = SourceFileLoader(name, str(REPO / path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def city():
    compiled = compile_inventory(REPO / "inventory/production", today=MONDAY.date())
    assert not compiled["errors"], compiled["errors"]
    return compiled


def test_gateway_programs_block_what_the_compiler_blocks_every_minute_of_the_week(city):
    dns = _program("gerbang_dns_schedule", "roles/dnsmasq/files/gerbang-dns-schedule")
    cut = _program("gerbang_squid_cut", "roles/squid/files/gerbang-squid-cut")
    outcomes = set()
    for host, site in sorted(city["sites"].items()):
        dns_config = json.loads(render("dnsmasq", "schedule.json.j2", city, host))
        cut_config = json.loads(render("squid", "cut.json.j2", city, host))
        for when in WEEK:
            expected = active_blocks(site, when)
            assert dns.active_categories(dns_config, when) == expected, (host, when)
            assert [c["name"] for c in cut_config["categories"] if cut.blocked_now(c, when)] == expected, (host, when)
            outcomes.add((host, tuple(expected)))
    # Not vacuous: every OPD changes what it blocks during the week (the command center need
    # not), and not all sites alike.
    changing = {host for host, count in Counter(host for host, _ in outcomes).items() if count > 1}
    opds = {host for host, site in city["sites"].items() if "opd" in site["groups"]}
    assert len(opds) == 33 and opds <= changing, sorted(opds - changing)
    assert len({blocked for _, blocked in outcomes}) >= 3, outcomes
