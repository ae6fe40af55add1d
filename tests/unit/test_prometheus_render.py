"""The prometheus role's alert rules take the city's working hours from the compiled policy
(gerbang_working_hours names a schedule of group_vars/all/schedules.yml), not from the role."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lib"))

from gerbang_kota.inventory import load_inventory  # noqa: E402
from gerbang_kota.policy import compile_city  # noqa: E402

pytest.importorskip("ansible")
from role_render import render  # noqa: E402

SEGMENT = re.compile(r"\) >= (\d+) < (\d+)")


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(REPO / "inventory/lab")


def city_with(inventory, **variables) -> dict:
    hostvars, groups = copy.deepcopy(inventory)
    for host_vars in hostvars.values():
        host_vars.update(variables)
    return compile_city(hostvars, groups, repo_root=REPO)


def working_hours_rule(city: dict) -> tuple[str, list[tuple[int, int]]]:
    rules = yaml.safe_load(render("prometheus", "gerbang.rules.yml.j2", city, "mcc"))
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("record") == "gerbang:working_hours")
    return rule["expr"], [(int(a), int(b)) for a, b in SEGMENT.findall(rule["expr"])]


def test_rules_follow_jam_kerja_by_default(inventory):
    city = city_with(inventory)
    assert not city["errors"], city["errors"]
    assert city["working_hours"]["schedule"] == "jam_kerja" and city["working_hours"]["utc_offset_minutes"] == 420
    expr, segments = working_hours_rule(city)
    # Monday..Friday 07:00-16:00 as minutes of the week (Monday 00:00 = 0), local = UTC + 7 h.
    assert segments == [(day * 1440 + 420, day * 1440 + 960) for day in range(5)]
    assert "vector(time() + 25200)" in expr


def test_another_schedule_changes_the_rules(inventory):
    city = city_with(inventory, gerbang_working_hours="jam_layanan")
    assert not city["errors"], city["errors"]
    _expr, segments = working_hours_rule(city)
    assert segments[-1] == (5 * 1440 + 480, 5 * 1440 + 720)     # Saturday 08:00-12:00
    assert len(segments) == 6


def test_a_zone_elsewhere_shifts_the_offset(inventory):
    city = city_with(inventory, gerbang_timezone="Asia/Jayapura")   # WIT, UTC+9
    assert not city["errors"], city["errors"]
    assert "vector(time() + 32400)" in working_hours_rule(city)[0]


@pytest.mark.parametrize("variables, key, message", [
    ({"gerbang_working_hours": "jam_kantor"}, "gerbang_working_hours", "is not a schedule of group_vars/all/schedules.yml"),
    ({"gerbang_timezone": "Europe/Berlin"}, "gerbang_timezone", "changes its UTC offset during the year"),
])
def test_working_hours_errors_name_city_yml(inventory, variables, key, message):
    lines = [e["line"] for e in city_with(inventory, **variables)["errors"]]
    assert len(lines) == 1 and lines[0].startswith(f"group_vars/all/city.yml: {key} = ") and message in lines[0], lines
