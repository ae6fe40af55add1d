"""Behaviour of the shaping role on one gateway, seen from clients behind it.

prepare.yml wired the container: WAN eth0 <-> namespace shp-up (upstream), LAN eth1 <->
namespace shp-lan (client addresses). The nftables role is not part of this scenario, so the
test installs, inside the gateway, the classification the nftables role provides in the city
(docs/architecture.md: `meta priority set` from per-device maps); everything else is the role.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "bench"))
import shaping_measure as measure  # noqa: E402

TOLERANCE = 0.05
UPSTREAM_NS, LAN_NS = "shp-up", "shp-lan"
SCRIPT = "/usr/local/sbin/gerbang-shaping-apply"


@pytest.fixture(scope="module")
def lab():
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "shaping-site.json"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def classified(host, lab):
    """The nftables role's contract, for this scenario's clients only."""
    by_ip = {d["ip"]: d["classid"] for d in lab["site"]["devices"]}
    elements = ", ".join(f"{ip} : {by_ip[ip]}" for ip in lab["clients"])
    ruleset = (
        "table inet shaping_test {\n"
        f"  map download {{ type ipv4_addr : classid; elements = {{ {elements} }}; }}\n"
        f"  map upload {{ type ipv4_addr : classid; elements = {{ {elements} }}; }}\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        "    meta priority set ip daddr map @download\n"
        "    meta priority set ip saddr map @upload\n"
        "  }\n"
        "}\n")
    host.run("nft delete table inet shaping_test")
    result = host.run(f"printf '%s' '{ruleset}' | nft -f -")
    assert result.rc == 0, result.stderr
    yield by_ip
    host.run("nft delete table inet shaping_test")


def flow(lab, client_ip, download=True):
    return measure.Flow(LAN_NS, client_ip, UPSTREAM_NS, lab["site"]["wan"]["gateway"], download)


def gateway_counters(host, device):
    out = host.check_output(f"tc -j -s qdisc show dev {device}")
    return {q["parent"]: q["bytes"] for q in json.loads(out) if "parent" in q}


def class_ids(host, device):
    return set(re.findall(r"^class htb (\S+)", host.check_output(f"tc class show dev {device}"), re.M))


def assert_close(measured, expected):
    assert abs(measured - expected) <= TOLERANCE * expected, f"{measured:.2f} Mbit/s, expected {expected:.2f} ±5 %"


def test_unit_applies_at_boot(host):
    unit = host.service("gerbang-shaping")
    assert unit.is_enabled
    assert unit.is_running or host.run("systemctl is-active gerbang-shaping").stdout.strip() == "active"
    # At boot the tree must come after the firewall that sets the marks it classifies on.
    after = host.check_output("systemctl show -p After --value gerbang-shaping").split()
    assert "gerbang-nftables.service" in after


@pytest.mark.parametrize("device", ["eth1", "eth0"])
def test_tree_has_one_class_per_device(host, lab, device):
    site = lab["site"]
    expected = {"1:1", "1:2", "1:3"} | {d["classid"] for d in site["devices"]}
    assert class_ids(host, device) == expected
    ceil = site["bandwidth"]["ceil_mbit" if device == "eth1" else "upload_ceil_mbit"]
    classes = host.check_output(f"tc class show dev {device}")
    assert re.search(rf"class htb 1:1 root rate \S+ ceil {ceil}Mbit", classes)
    # HTB lets a child below its own rate send past its parent: the guarantees must fit the root.
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
    children = sum(float(value) * scale[unit] for value, unit in
                   re.findall(r"^class htb \S+ parent 1:1 .*? rate ([\d.]+)([KMG]?)bit", classes, re.M))
    assert 0 < children <= ceil * 1e6, classes


def test_download_of_one_device_reaches_its_ceiling(host, lab, classified):
    client = lab["clients"][0]
    before = gateway_counters(host, "eth1")
    [goodput] = measure.run_flows([flow(lab, client)], seconds=5)
    after = gateway_counters(host, "eth1")
    bw = lab["site"]["bandwidth"]
    assert_close(goodput, measure.expected_goodput(min(bw["device_ceil_mbit"], bw["ceil_mbit"])))
    classid = classified[client]
    sent = after[classid] - before.get(classid, 0)
    assert sent >= goodput * 1e6 / 8 * 5 * 0.9, "the flow did not go through the device's class"


def test_upload_of_one_device_reaches_its_ceiling(host, lab, classified):
    client = lab["clients"][1]
    before = gateway_counters(host, "eth0")
    [goodput] = measure.run_flows([flow(lab, client, download=False)], seconds=5)
    after = gateway_counters(host, "eth0")
    bw = lab["site"]["bandwidth"]
    assert_close(goodput, measure.expected_goodput(min(bw["device_ceil_mbit"], bw["upload_ceil_mbit"])))
    assert after[classified[client]] > before.get(classified[client], 0)


def test_unregistered_address_falls_to_the_default_class(host, lab, classified):
    before = gateway_counters(host, "eth1")
    [goodput] = measure.run_flows([flow(lab, lab["unregistered"])], seconds=3)
    after = gateway_counters(host, "eth1")
    assert goodput <= measure.expected_goodput(lab["site"]["bandwidth"]["ceil_mbit"]) * (1 + TOLERANCE)
    assert after["1:3"] - before.get("1:3", 0) >= goodput * 1e6 / 8 * 3 * 0.9


def test_devices_saturating_together_get_equal_shares(lab, classified):
    rates = measure.run_flows([flow(lab, ip) for ip in lab["clients"]], seconds=6, omit=2)
    print(f"fair shares: {[round(r, 2) for r in rates]} Jain {measure.jain(rates):.3f}")
    assert measure.jain(rates) >= 0.95, rates
    assert_close(sum(rates), measure.expected_goodput(lab["site"]["bandwidth"]["ceil_mbit"]))


def test_restart_reapplies_the_same_tree(host):
    before = host.check_output("tc class show dev eth1 | sort")
    host.check_output(f"{SCRIPT} clear")
    assert class_ids(host, "eth1") == set()
    host.check_output("systemctl restart gerbang-shaping")
    assert host.check_output("tc class show dev eth1 | sort") == before


def test_check_rejects_a_tree_the_kernel_cannot_load(host):
    before = host.check_output("tc qdisc show dev eth1")
    broken = host.run(f"sed 's/ pfifo limit/ no_such_qdisc limit/' {SCRIPT} > /tmp/broken && sh /tmp/broken check")
    assert broken.rc != 0
    assert host.check_output("tc qdisc show dev eth1") == before
    assert host.run("ip link show gshp-check-lan").rc != 0, "check left its veth behind"
