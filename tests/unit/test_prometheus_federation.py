"""The command center's federation knob (network.prometheus_federation_from in its own layer,
host_vars/mcc/policy.yml): compiled and validated as addresses, rendered into mcc's nftables
ruleset only, checked by the kernel's parser like test_nftables_render."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lib"))

from gerbang_kota.inventory import load_inventory  # noqa: E402
from gerbang_kota.policy import compile_city  # noqa: E402

pytest.importorskip("ansible")
from role_render import render  # noqa: E402
from test_nftables_render import needs_nft, nft_check  # noqa: E402

RULE = re.compile(r'^\s*iifname "(\S+)" ip saddr \{ (.*) \} tcp dport 9090 accept$', re.M)


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(REPO / "inventory/lab")


def compiled(inventory, layers: dict[str, list]) -> dict:
    """The lab city with prometheus_federation_from set in the given sites' own layers."""
    hostvars, groups = copy.deepcopy(inventory)
    for host, sources in layers.items():
        layer = hostvars[host].setdefault("gerbang_policy__host", {}) or {}
        layer.setdefault("network", {})["prometheus_federation_from"] = sources
        hostvars[host]["gerbang_policy__host"] = layer
    return compile_city(hostvars, groups, repo_root=REPO)


def test_empty_by_default_and_no_rule(inventory):
    city = compiled(inventory, {})
    assert not city["errors"], city["errors"]
    assert all(site["prometheus_federation_from"] == [] for site in city["sites"].values())
    assert not RULE.search(render("nftables", "gerbang.nft.j2", city, "mcc"))


@needs_nft
def test_addresses_are_admitted_to_prometheus_on_the_command_centers_wan(inventory, tmp_path):
    city = compiled(inventory, {"mcc": ["203.0.113.0/28", "198.51.100.7", "198.51.100.7/32"]})
    assert not city["errors"], city["errors"]
    assert city["sites"]["mcc"]["prometheus_federation_from"] == ["198.51.100.7", "203.0.113.0/28"]
    ruleset = render("nftables", "gerbang.nft.j2", city, "mcc")
    rules = RULE.findall(ruleset)
    assert rules == [(city["sites"]["mcc"]["wan"]["interface"], "198.51.100.7, 203.0.113.0/28")], rules
    check = nft_check(ruleset, tmp_path)
    assert check.returncode == 0, check.stderr
    assert not RULE.search(render("nftables", "gerbang.nft.j2", city, "setda"))


@pytest.mark.parametrize("value", ["198.51.100.300", "203.0.113.5/28", "prov.example.id", "2001:db8::1"])
def test_a_bad_address_is_an_error_naming_the_layer(inventory, value):
    city = compiled(inventory, {"mcc": ["198.51.100.7", value]})
    lines = [e["line"] for e in city["errors"]]
    assert len(lines) == 1 and lines[0].startswith(
        f'host_vars/mcc/policy.yml: gerbang_policy__host.network.prometheus_federation_from[1] = "{value}": '), lines
    assert "Fix: write e.g. 198.51.100.7" in lines[0]


def test_only_the_command_center_may_admit_federation(inventory):
    city = compiled(inventory, {"setda": ["198.51.100.7"]})
    lines = [e["line"] for e in city["errors"]]
    assert len(lines) == 1 and lines[0].startswith("host_vars/setda/policy.yml: gerbang_policy__host.network.prometheus_federation_from"), lines
    assert "only the command center runs Prometheus" in lines[0]
