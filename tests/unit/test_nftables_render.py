"""The nftables role's ruleset (and Squid's upload marks) rendered from compiled sites, checked
by the kernel's own parser: `nft -c -f` inside a throw-away network namespace (`unshare -n`),
so the host's ruleset is never touched.

Rendered with Ansible's templar from the role's defaults and vars (role_render.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lib"))

from gerbang_kota.inventory import load_inventory  # noqa: E402
from gerbang_kota.policy import compile_city  # noqa: E402

pytest.importorskip("ansible")
from role_render import render, role_var  # noqa: E402

NFT = shutil.which("nft") or "/usr/sbin/nft"
UNSHARE = shutil.which("unshare")


def _can_check() -> bool:
    if os.geteuid() != 0 or not UNSHARE or not Path(NFT).exists():
        return False
    return subprocess.run([UNSHARE, "-n", NFT, "list", "tables"], capture_output=True).returncode == 0


needs_nft = pytest.mark.skipif(not _can_check(), reason="needs root, unshare and nft (throw-away netns)")


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(REPO / "inventory/lab")


@pytest.fixture(scope="module")
def city(inventory):
    hostvars, groups = inventory
    compiled = compile_city(hostvars, groups, repo_root=REPO)
    assert not compiled["errors"], compiled["errors"]
    return compiled


@pytest.fixture(scope="module")
def city_without_management(inventory):
    """Compiled sites with no management network. The policy schema refuses
    `management_networks: []` ("must not be empty"), but the role must not depend on that to
    render a valid ruleset (an empty set is valid nft; `elements = {  }` is a syntax error)."""
    hostvars, groups = inventory
    compiled = copy.deepcopy(compile_city(hostvars, groups, repo_root=REPO))
    for site in compiled["sites"].values():
        site["management"]["networks"] = []
    return compiled


def nft_check(ruleset: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "gerbang.nft"
    path.write_text(ruleset, encoding="utf-8")
    return subprocess.run([UNSHARE, "-n", NFT, "-c", "-f", str(path)], capture_output=True, text=True)


@needs_nft
def test_ruleset_without_management_networks_loads(city_without_management, tmp_path):
    for host in sorted(city_without_management["sites"]):
        ruleset = render("nftables", "gerbang.nft.j2", city_without_management, host)
        assert not re.search(r"elements = \{\s*\}", ruleset), host
        check = nft_check(ruleset, tmp_path)
        assert check.returncode == 0, f"{host}: {check.stderr}"


@needs_nft
def test_every_sites_ruleset_loads(city, tmp_path):
    for host in sorted(city["sites"]):
        check = nft_check(render("nftables", "gerbang.nft.j2", city, host), tmp_path)
        assert check.returncode == 0, f"{host}: {check.stderr}"


# The live-state command (what rollouts compare with the kernel) run on a loaded ruleset, after
# each change a gateway may see: dnsmasq learning addresses, reloads, elements deleted by hand.
LIVE_STATE_STEPS = """
ruleset=$1 live_state=$2 pair=$3 address=$4
fingerprint() { sh -c "$live_state" | sha256sum; }
nft -f "$ruleset"; echo loaded $(fingerprint)
nft add element inet gerbang govapp_v4 '{ 192.0.2.7, 192.0.2.8 timeout 30s }'
nft add element inet gerbang doh_dns_v4 '{ 192.0.2.9 }'
echo learnt $(fingerprint)
nft -f "$ruleset"; echo reloaded $(fingerprint)
nft delete element inet gerbang registered "{ $pair }"; echo registered_deleted $(fingerprint)
nft -f "$ruleset"; nft delete element arp gerbang protected "{ $address }"; echo protected_deleted $(fingerprint)
"""


@needs_nft
def test_live_state_sees_the_rulesets_own_elements_but_not_what_dnsmasq_learns(city, tmp_path):
    site = city["sites"]["setda"]
    path = tmp_path / "gerbang.nft"
    path.write_text(render("nftables", "gerbang.nft.j2", city, "setda"), encoding="utf-8")
    command = role_var("nftables", "__nftables_live_state", city, "setda")
    device = site["devices"][0]
    run = subprocess.run([UNSHARE, "-n", "sh", "-c", LIVE_STATE_STEPS, "steps", str(path), command,
                          f"{device['ip']} . {device['mac']}", device["ip"]], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stderr, run.stderr
    seen = dict(line.split()[:2] for line in run.stdout.splitlines())
    assert seen["learnt"] == seen["reloaded"] == seen["loaded"], "learnt addresses are not drift"
    assert len({seen["loaded"], seen["registered_deleted"], seen["protected_deleted"]}) == 3, seen
    assert seen["loaded"] != hashlib.sha256(b"").hexdigest(), "the command printed nothing"


def test_encrypted_dns_is_rejected_per_protocol(city):
    """TCP gets a reset, UDP an ICMP port unreachable: both fail fast as "connection refused"."""
    ruleset = render("nftables", "gerbang.nft.j2", city, "setda")
    assert re.search(r"^\s*tcp dport 853 counter name \"bypass_rejected\" reject with tcp reset$", ruleset, re.M)
    assert re.search(r"^\s*udp dport 853 counter name \"bypass_rejected\" reject with icmp type port-unreachable$",
                     ruleset, re.M)
    assert not re.search(r"reject$", ruleset, re.M), "every reject says how"


def test_arp_table_is_replaced_with_inet_gerbang_and_knows_every_registered_pair(city):
    site = city["sites"]["setda"]
    ruleset = render("nftables", "gerbang.nft.j2", city, "setda")
    assert "flush ruleset" not in ruleset
    head = [line for line in ruleset.splitlines() if line and not line.startswith("#")][:4]
    assert head == ["table inet gerbang {}", "delete table inet gerbang", "table arp gerbang {}", "delete table arp gerbang"]
    arp = ruleset[ruleset.index("table arp gerbang {\n"):]
    for device in site["devices"]:
        assert f"{device['ip']} . {device['mac']}" in arp, device["name"]
    assert f"{site['lan']['address']}" in arp
    assert f'iifname != "{site["lan"]["interface"]}" accept' in arp
    assert "arp saddr ip 0.0.0.0 accept" in arp


@pytest.mark.parametrize("host", ["setda", "diskominfo", "rsud"])
def test_squid_marks_each_device_and_nftables_maps_the_mark_to_its_class(city, host):
    """Cross-role contract: Squid's tcp_outgoing_mark per device = the key of the device's class
    in the ruleset's class_mark map, once the category tag bits are masked off; govapp priority
    is set after it (wins)."""
    site = city["sites"][host]
    squid = render("squid", "squid.conf.j2", city, host)
    ruleset = render("nftables", "gerbang.nft.j2", city, host)
    base = role_var("squid", "__squid_upload_mark_base", city, host)
    assert base == role_var("nftables", "__nftables_upload_mark_base", city, host)
    mask = role_var("nftables", "__nftables_upload_mark_mask", city, host)
    plain = dict((acl, int(mark, 16)) for mark, acl in re.findall(r"^tcp_outgoing_mark (0x[0-9a-f]+) (\S+)$", squid, re.M))
    assert sorted(plain) == sorted(f"gerbang_dev_{d['host_index']}" for d in site["devices"])
    for device in site["devices"]:
        assert f"acl gerbang_dev_{device['host_index']} src {device['ip']}\n" in squid
    assert len(set(plain.values())) == len(plain), "one mark per device"
    body = re.search(r"map class_mark \{\n\s*type mark : classid\n\s*elements = \{ (.*) \}\n", ruleset).group(1)
    class_of_mark = {int(k, 16): v for k, v in (item.split(" : ") for item in body.split(", "))}
    tagged = re.findall(r"^tcp_outgoing_mark (0x[0-9a-f]+) gerbang_dev_(\d+) !gerbang_exempt gerbang_cut_(\S+)$", squid, re.M)
    blocked = sorted({b["category"] for b in site["blocks"]})
    assert blocked and len(tagged) == len(blocked) * len(site["devices"])
    for device in site["devices"]:
        assert class_of_mark[plain[f"gerbang_dev_{device['host_index']}"]] == device["classid"], device["name"]
        for mark, index, category in tagged:
            if int(index) == device["host_index"]:
                assert int(mark, 16) == base + (blocked.index(category) + 1) * 0x10000 + device["host_index"]
                assert class_of_mark[int(mark, 16) & mask] == device["classid"], (device["name"], category)
    classify = ruleset[ruleset.index("chain classify {"):]
    wan = site["wan"]["interface"]
    mark_rule = classify.index(f'oifname "{wan}" meta priority set meta mark and {mask:#010x} map @class_mark')
    assert mark_rule < classify.index(f'oifname "{wan}" ip daddr @govapp_cidr_v4 meta priority set 1:2')
    assert mark_rule < classify.index(f'oifname "{wan}" ip daddr @govapp_v4 meta priority set 1:2')


@pytest.mark.parametrize("host", ["setda", "diskominfo"])
def test_squid_tags_before_the_device_mark_and_the_cutter_reads_the_same_tags(city, host):
    """Squid takes the first matching tcp_outgoing_mark line: a device's tagged lines must come
    before its plain one. gerbang-squid-cut's config names each tag's mark and its blocked minutes."""
    site = city["sites"][host]
    squid = render("squid", "squid.conf.j2", city, host)
    lines = [line.split() for line in squid.splitlines() if line.startswith("tcp_outgoing_mark ")]
    blocked = sorted({b["category"] for b in site["blocks"]})
    for device in site["devices"]:
        own = [line for line in lines if line[2] == f"gerbang_dev_{device['host_index']}"]
        assert len(own) == len(blocked) + 1 and own[-1][3:] == [], device["name"]
    cut = json.loads(render("squid", "cut.json.j2", city, host))
    base = role_var("squid", "__squid_upload_mark_base", city, host)
    assert [c["name"] for c in cut["categories"]] == blocked
    assert cut["mark_mask"] == 0xFFFF0000 and cut["timezone"] == site["timezone"]
    for tag, category in enumerate(cut["categories"], start=1):
        assert category["mark"] == base + tag * 0x10000
        schedules = dict.fromkeys(b["schedule"] for b in site["blocks"] if b["category"] == category["name"])
        assert category["segments"] == [seg for name in schedules for seg in site["schedules"][name]["segments"]]
    for category in blocked:
        assert f"acl gerbang_cut_{category} any-of gerbang_cat_{category} gerbang_sni_{category}\n" in squid


def test_squid_tags_nothing_when_cutting_is_switched_off(city):
    variables_off = render("squid", "squid.conf.j2", city, "setda", squid_cut_at_window_edge=False)
    assert "gerbang_cut_" not in variables_off and "gerbang_exempt" not in variables_off
    cut = json.loads(render("squid", "cut.json.j2", city, "setda", squid_cut_at_window_edge=False))
    assert cut["categories"] == []
