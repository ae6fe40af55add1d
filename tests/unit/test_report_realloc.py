"""Reallocation suggestion: inside the contract, floors kept, and the patch validates."""

from pathlib import Path

import pytest

from gerbang_kota import report
from gerbang_kota import report_realloc as realloc
from gerbang_kota.inventory import compile_inventory

REPO = Path(__file__).resolve().parents[2]


def site(rate, ceil, p95, peak=0.0, devices=0):
    return {"rate_mbit": rate, "ceil_mbit": ceil, "work_p95_mbit": p95, "peak_mbit": peak, "devices": devices, "device_rate_mbit": 1}


def test_rate_follows_working_hours_p95_with_headroom():
    result = realloc.suggest({"a": site(5, 10, 7.2), "b": site(5, 10, 0.5)}, 100)
    assert result["a"]["rate_mbit"] == 9      # ceil(7.2 * 1.25)
    assert result["b"]["rate_mbit"] == 2      # minimum
    assert "p95" in result["a"]["reason"]


def test_device_floor_keeps_one_megabit_per_device():
    assert realloc.suggest({"a": site(5, 10, 0.1, devices=6)}, 100)["a"]["rate_mbit"] == 6


def test_scaled_down_to_the_contract_above_the_floors():
    sites = {name: site(5, 50, 40.0, devices=2) for name in "abcd"}
    result = realloc.suggest(sites, 100)
    total = sum(s["rate_mbit"] for s in result.values())
    assert total <= 100
    assert all(s["rate_mbit"] >= 2 for s in result.values())
    assert total >= 96   # only rounding is lost


def test_ceiling_raised_when_reached_never_lowered_and_capped():
    result = realloc.suggest({"busy": site(5, 10, 9.5, peak=9.8), "idle": site(5, 40, 0.2, peak=1.0),
                              "cap": site(5, 90, 9.5, peak=95.0)}, 100)
    assert result["busy"]["ceil_mbit"] == 15
    assert result["idle"]["ceil_mbit"] == 40
    assert result["cap"]["ceil_mbit"] == 100
    assert all(s["rate_mbit"] <= s["ceil_mbit"] for s in result.values())


def test_patch_changes_only_the_allocation_lines():
    text = ("all:\n  children:\n    gateways:\n      hosts:\n        setda:\n          gerbang_site_id: 1\n"
            "          gerbang_allocation: {rate_mbit: 5, ceil_mbit: 10}\n"
            "        rsud:\n          gerbang_allocation: {rate_mbit: 20, ceil_mbit: 40, upload_ceil_mbit: 20}\n")
    new, diff = realloc.patch_inventory(text, {"rsud": {"rate_mbit": 25, "ceil_mbit": 60}})
    assert "gerbang_allocation: {rate_mbit: 25, ceil_mbit: 60, upload_ceil_mbit: 20}" in new
    assert "gerbang_allocation: {rate_mbit: 5, ceil_mbit: 10}" in new
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed == ["-          gerbang_allocation: {rate_mbit: 20, ceil_mbit: 40, upload_ceil_mbit: 20}"]
    assert diff.startswith("--- a/inventory/production/hosts.yml")


def test_patched_production_inventory_passes_the_policy_compiler():
    """A busy hospital and idle offices: the patch of the real inventory compiles without errors."""
    inventory = REPO / "inventory/production"
    city = compile_inventory(inventory, REPO)
    assert not city["errors"]
    measured = {"sites": {}}
    for index, name in enumerate(sorted(city["sites"])):
        ceil = city["sites"][name]["bandwidth"]["ceil_mbit"]
        busy = name == "rsud"
        measured["sites"][name] = {"download": {"work_p95_mbit": ceil * (0.95 if busy else 0.1 + index % 3 * 0.1),
                                                "peak_mbit": ceil if busy else ceil * 0.5}}
    suggestion = report.reallocation(measured, city)
    assert sum(s["rate_mbit"] for s in suggestion.values()) <= city["contract_mbit"]
    assert suggestion["rsud"]["ceil_mbit"] > city["sites"]["rsud"]["bandwidth"]["ceil_mbit"]
    new_hosts, diff = realloc.patch_inventory((inventory / "hosts.yml").read_text(encoding="utf-8"), suggestion)
    assert "rsud" in diff or "rate_mbit" in diff
    assert report.check_patched_inventory(inventory, new_hosts, REPO) == []
    # And the check can fail: a reallocation above the contract does not compile.
    broken = realloc.patch_inventory((inventory / "hosts.yml").read_text(encoding="utf-8"),
                                     {"rsud": {"rate_mbit": 400, "ceil_mbit": 400}})[0]
    assert report.check_patched_inventory(inventory, broken, REPO)


def test_unmeasured_sites_keep_their_allocation_and_count_against_the_contract():
    sites = {"down": {**site(40, 50, 0.0), "measured": False}, "busy": site(5, 60, 55.0, peak=59.0),
             "weekend": {**site(30, 40, 0.0), "work_samples": 0}}
    result = realloc.suggest(sites, 100)
    assert result["down"] == {"rate_mbit": 40, "ceil_mbit": 50, "reason": ""}
    assert result["weekend"]["rate_mbit"] == 30          # no working-hours sample: no basis to change
    assert sum(s["rate_mbit"] for s in result.values()) <= 100
    assert result["busy"]["rate_mbit"] == 30             # what the contract leaves, not ceil(55 * 1.25)


def test_patch_of_block_style_allocations_as_in_the_lab_inventory():
    text = ("all:\n  children:\n    gateways:\n      hosts:\n        setda:\n          gerbang_site_id: 1\n"
            "          gerbang_allocation:\n            rate_mbit: 5\n            ceil_mbit: 10\n"
            "        rsud:\n          gerbang_allocation:\n            ceil_mbit: 100  # hospital\n"
            "          gerbang_site_id: 33\n")
    new, diff = realloc.patch_inventory(text, {"setda": {"rate_mbit": 7, "ceil_mbit": 10},
                                               "rsud": {"rate_mbit": 70, "ceil_mbit": 150}})
    assert "          gerbang_allocation:\n            rate_mbit: 7\n            ceil_mbit: 10\n        rsud:" in new
    assert ("          gerbang_allocation:\n            ceil_mbit: 150  # hospital\n            rate_mbit: 70\n"
            "          gerbang_site_id: 33\n") in new
    assert "gerbang_site_id: 1\n" in new


def test_patched_lab_inventory_compiles():
    inventory = REPO / "inventory/lab"
    text = (inventory / "hosts.yml").read_text(encoding="utf-8")
    new, diff = realloc.patch_inventory(text, {"rsud": {"rate_mbit": 70, "ceil_mbit": 150}}, "inventory/lab/hosts.yml")
    assert diff.count("\n-  ") == 2 and "+                    ceil_mbit: 150" in diff
    city_errors = report.check_patched_inventory(inventory, new, REPO)
    assert city_errors == []
