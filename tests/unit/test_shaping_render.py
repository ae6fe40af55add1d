"""The shaping role's HTB trees, rendered from the compiled production city.

HTB lets a class below its own rate send without asking its parent: when the rates of the
site root's children (government apps 1:2, default 1:3, one class per device) add up to more
than the root's, the site's ceiling is not enforced and no guarantee holds
(docs/shaping.md, "Guarantees that add up"). The compiler gives each device the policy's
device_rate_mbit or, where the ceiling cannot hold them all, the fair share of what is left;
these tests check the compiled figures and the tc lines the role really renders.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from gerbang_kota.inventory import compile_inventory
from policy_copy import REPO_ROOT

pytest.importorskip("ansible")
from role_render import render  # noqa: E402

# The sites the audit found with more registered devices than their 10 Mbit/s could guarantee.
OVERSUBSCRIBED = {"setda": 10, "dishub": 10, "dpk": 10, "kesbangpol": 10, "dlh": 9, "satpolpp": 9, "setwan": 9}
CLASS = re.compile(r"^class add dev \$1 parent (?P<parent>\S+) classid (?P<classid>\S+) htb "
                   r"rate (?P<rate>\d+)kbit ceil (?P<ceil>\d+)kbit")


@pytest.fixture(scope="module")
def city():
    compiled = compile_inventory(REPO_ROOT / "inventory/production", today=dt.date(2026, 11, 23))
    assert compiled["errors"] == []
    return compiled


def trees(script: str) -> dict[str, dict[str, dict]]:
    """{"download"|"upload": {classid: {parent, rate, ceil}}} (kbit/s) from a rendered script."""
    found = {}
    for direction in ("download", "upload"):
        body = re.search(rf"^{direction}_tree\(\) {{\n\tcat <<TREE\n(.*?)^TREE$", script, re.M | re.S)
        assert body, f"no {direction} tree in the script"
        found[direction] = {m["classid"]: {"parent": m["parent"], "rate": int(m["rate"]), "ceil": int(m["ceil"])}
                            for m in map(CLASS.match, body.group(1).splitlines()) if m}
    return found


def directions(bw: dict):
    """(ceiling, government-app rate, device rate) per direction, from the compiled bandwidth."""
    yield "download", bw["ceil_mbit"], bw["govapp_rate_mbit"], bw["device_guaranteed_mbit"]
    yield "upload", bw["upload_ceil_mbit"], bw["upload_govapp_rate_mbit"], bw["upload_device_guaranteed_mbit"]


def test_compiled_guarantees_fit_under_every_sites_ceiling(city):
    for name, site in city["sites"].items():
        bw, devices = site["bandwidth"], len(site["devices"])
        for direction, ceil, govapp, device in directions(bw):
            children = govapp + bw["default_rate_mbit"] + devices * device
            assert children <= ceil + 1e-9, (name, direction, children, ceil)
            assert 0 < device <= bw["device_rate_mbit"], (name, direction, device)
            if devices * bw["device_rate_mbit"] + govapp + bw["default_rate_mbit"] <= ceil:
                assert device == bw["device_rate_mbit"], (name, direction, "the policy's rate fits: keep it")


def test_oversubscribed_sites_get_the_fair_share_rounded_down_to_a_kbit(city):
    for name, devices in OVERSUBSCRIBED.items():
        site = city["sites"][name]
        bw = site["bandwidth"]
        assert len(site["devices"]) == devices and bw["ceil_mbit"] == 10 and bw["govapp_rate_mbit"] == 1
        share = {10: 0.8, 9: 0.888}[devices]  # (10 - 1 government apps - 1 default) / devices, floored
        assert (bw["device_guaranteed_mbit"], bw["upload_device_guaranteed_mbit"]) == (share, share)
        assert bw["device_rate_mbit"] == 1, "the policy's figure stays what the policy says"
    reduced = sorted(n for n, s in city["sites"].items() if s["bandwidth"]["device_guaranteed_mbit"] < 1)
    assert reduced == sorted(OVERSUBSCRIBED)


def test_each_oversubscribed_site_warns_once_with_the_figures_and_the_fix(city):
    lines = [w["line"] for w in city["warnings"] if ".gerbang_allocation." in w["key"]]
    assert len(lines) == len(OVERSUBSCRIBED), lines
    setda = next(line for line in lines if "setda" in line)
    for part in ("inventory/production/hosts.yml: setda.gerbang_allocation.ceil_mbit = 10",
                 "10 registered devices × 1 Mbit/s (gerbang_bandwidth.device_rate_mbit)",
                 "government apps 1 + default class 1 Mbit/s = 12 Mbit/s", "download and upload ceiling",
                 "fair share of 0.8 Mbit/s instead of 1",
                 "Fix: raise setda's gerbang_allocation (ceil_mbit and upload_ceil_mbit) to at least 12 Mbit/s",
                 "or accept 0.8 Mbit/s per device"):
        assert part in setda, (part, setda)


def test_rendered_trees_children_add_up_to_at_most_the_root(city):
    """Every production site, both directions: the tc lines the role installs."""
    for name, site in city["sites"].items():
        bw = site["bandwidth"]
        rendered = trees(render("shaping", "gerbang-shaping-apply.j2", city, name))
        for direction, ceil, govapp, device in directions(bw):
            tree = rendered[direction]
            root = tree.pop("1:1")
            assert root["parent"] == "1:" and root["rate"] == root["ceil"] == round(ceil * 1000)
            assert all(c["parent"] == "1:1" for c in tree.values()), (name, direction)
            assert set(tree) == {"1:2", "1:3"} | {d["classid"] for d in site["devices"]}
            assert sum(c["rate"] for c in tree.values()) <= root["rate"], (name, direction, tree)
            assert tree["1:2"]["rate"] == round(govapp * 1000)
            assert tree["1:3"]["rate"] == round(bw["default_rate_mbit"] * 1000)
            assert {tree[d["classid"]]["rate"] for d in site["devices"]} <= {round(device * 1000)}


def test_setda_renders_800_kbit_per_device_both_ways(city):
    rendered = trees(render("shaping", "gerbang-shaping-apply.j2", city, "setda"))
    for direction in ("download", "upload"):
        tree = rendered[direction]
        devices = [c for classid, c in tree.items() if classid not in ("1:1", "1:2", "1:3")]
        assert [c["rate"] for c in devices] == [800] * 10
        assert sum(c["rate"] for classid, c in tree.items() if classid != "1:1") == 10000
