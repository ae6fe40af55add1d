"""Shaping in the whole-city lab, after `ansible-playbook site.yml` (real nftables marks).

What a client gets through its site's gateway: accuracy at 10, 50 and 100 Mbit/s sites
(±5 % of 0.956 x allocation: HTB counts layer-2 bytes, iperf3 reports TCP goodput); five
devices of unequal demand (one with 8 streams) saturating together (Jain >= 0.95 across
devices, site total ±5 %); a government-app flow from a device that saturates the site itself,
keeping its guaranteed rate and counted in class 1:2, and that device's ping to the app staying
near idle while its ping to the internet waits in its own full queue; a changed allocation
re-shaping only that site.

Uses these helpers of tests/lab/labtools.py (lab engineer):
  labtools.compiled_site(site) -> dict            the compiled site policy
  labtools.clients(site, count) -> [(netns, ip)]  registered devices of the site, leased and online
  labtools.upstream() -> (netns, ip)              the lab internet (iperf3 runs there)
  labtools.govapp_server() -> (netns, ip)         an address of a government app, in the lab internet
  labtools.gateway_exec(site) -> [argv prefix]    runs a command on the site's gateway
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import labtools  # noqa: E402
import shaping_measure as measure  # noqa: E402

TOLERANCE = 0.05
# One site per allocation size in the city's policy.
SITES_BY_CEILING = {10: "bappeda", 50: "diskominfo", 100: "rsud"}
# Sites with five registered lab clients (scripts/lab/lab.py MANY_CLIENTS).
BUSY_SITES = ["diskominfo", "rsud"]
FAIR_ATTEMPTS = 3
# Parallel streams of the one device with more demand than the others (fairness, government app).
GREEDY_STREAMS = 8
# The saturating device's own queue (lab: pfifo limit 30 of GSO-sized packets) delayed its ping
# to the internet by a median 116-268 ms in the lab; QUEUED_MS proves that queue was full. A
# government-app ping in class 1:2 must stay within PRIORITY_SLACK_MS of idle (measured 0.08-0.12
# ms loaded); without 1:2 it measured 302 ms (docs/shaping.md).
QUEUED_MS = 8
PRIORITY_SLACK_MS = 3


def flows(site, count, download=True, server=None):
    up_ns, up_ip = server or labtools.upstream()
    return [measure.Flow(ns, ip, up_ns, up_ip, download) for ns, ip in labtools.clients(site, count)]


def goodput(flow_list, expected, attempts=3):
    """One flow's goodput (TCP slow start omitted); measured again, up to `attempts` runs, while
    it falls short. On a busy 2-core machine CPU contention can only lower a run, never lift it
    above the class rate: the retries separate that noise from a shaping error (an overshoot
    fails at once; a tree that is really too slow fails every run). A CI run once measured 90.0
    of 95.6 Mbit/s twice in a row on rsud's upload."""
    best = 0.0
    for _ in range(attempts):
        best = max(best, measure.run_flows(flow_list, seconds=5, omit=1)[0])
        if best >= expected * (1 - TOLERANCE):
            break
    return best


def assert_close(measured, expected):
    assert abs(measured - expected) <= TOLERANCE * expected, f"{measured:.2f} Mbit/s, expected {expected:.2f} ±5 %"


@pytest.mark.parametrize("ceiling", sorted(SITES_BY_CEILING))
def test_download_matches_the_allocation(ceiling):
    site = SITES_BY_CEILING[ceiling]
    bw = labtools.compiled_site(site)["bandwidth"]
    assert bw["ceil_mbit"] == ceiling, "the policy changed: pick another site for this allocation"
    expected = measure.expected_goodput(min(bw["device_ceil_mbit"], bw["ceil_mbit"]))
    assert_close(goodput(flows(site, 1), expected), expected)


@pytest.mark.parametrize("ceiling", sorted(SITES_BY_CEILING))
def test_upload_matches_the_allocation(ceiling):
    site = SITES_BY_CEILING[ceiling]
    bw = labtools.compiled_site(site)["bandwidth"]
    expected = measure.expected_goodput(min(bw["device_ceil_mbit"], bw["upload_ceil_mbit"]))
    assert_close(goodput(flows(site, 1, download=False), expected), expected)


@pytest.mark.parametrize("site", BUSY_SITES)
def test_devices_saturating_together_get_fair_shares(site):
    """Unequal demand: one device opens GREEDY_STREAMS parallel streams, four others one each.
    Through one FIFO the greedy device would take about GREEDY_STREAMS / (GREEDY_STREAMS + 4) of
    the site (Jain ~0.5); only per-device classes give each device the same share. The site's
    total must be its allocation (±5 % of 0.956 x ceiling). Up to FAIR_ATTEMPTS runs, passing on
    the first one that meets both: on a shared 2-core machine a run where one sender is starved
    of CPU is unfair for reasons outside the shaper (a CI run once measured Jain 0.941 on
    diskominfo); a shaper that is really unfair fails every run."""
    ceil = labtools.compiled_site(site)["bandwidth"]["ceil_mbit"]
    expected = measure.expected_goodput(ceil)
    up_ns, up_ip = labtools.upstream()
    clients = labtools.clients(site, 5)
    flow_list = [measure.Flow(ns, ip, up_ns, up_ip, streams=GREEDY_STREAMS if i == 0 else 1)
                 for i, (ns, ip) in enumerate(clients)]
    runs = []
    for _ in range(FAIR_ATTEMPTS):
        rates = measure.run_flows(flow_list, seconds=6, omit=2)
        runs.append(([round(r, 2) for r in rates], round(measure.jain(rates), 3), round(sum(rates), 2)))
        print(f"{site}: per device {runs[-1][0]} ({GREEDY_STREAMS} streams on the first) Jain {runs[-1][1]}, "
              f"sum {runs[-1][2]} of {expected:.2f} expected")
        if measure.jain(rates) >= 0.95 and abs(sum(rates) - expected) <= TOLERANCE * expected:
            return
    raise AssertionError(f"{site}: Jain < 0.95 or the sum off by more than 5 % of {expected:.2f} in every run: {runs}")


@pytest.mark.parametrize("site", BUSY_SITES)
def test_device_traffic_is_counted_in_its_own_class(site):
    compiled = labtools.compiled_site(site)
    [(ns, ip)] = labtools.clients(site, 1)
    classid = next(d["classid"] for d in compiled["devices"] if d["ip"] == ip)
    gateway = labtools.gateway_exec(site)
    before = measure.class_bytes(gateway, compiled["lan"]["interface"])
    [goodput] = measure.run_flows(flows(site, 1), seconds=3)
    after = measure.class_bytes(gateway, compiled["lan"]["interface"])
    assert after[classid] - before.get(classid, 0) >= goodput * 1e6 / 8 * 3 * 0.9


def govapp_load(site):
    """The government-app test's load: device 0 downloads from the government app (one stream)
    while it saturates the site with GREEDY_STREAMS streams of its own from the internet, and four
    other devices saturate one stream each. Without class 1:2 the app's flow would share device
    0's class with its own streams: about 1 / (GREEDY_STREAMS + 1) of a fifth of the site."""
    compiled = labtools.compiled_site(site)
    gov_ns, gov_ip = labtools.govapp_server()
    up_ns, up_ip = labtools.upstream()
    clients = labtools.clients(site, 5)
    own = measure.Flow(*clients[0], up_ns, up_ip, streams=GREEDY_STREAMS)
    busy = [measure.Flow(ns, ip, up_ns, up_ip) for ns, ip in clients[1:]]
    gov = measure.Flow(*clients[0], gov_ns, gov_ip)
    return compiled, gov, [own] + busy


@pytest.mark.parametrize("site", BUSY_SITES)
def test_government_app_keeps_its_rate_and_class_while_its_device_saturates(site):
    compiled, gov, saturating = govapp_load(site)
    bw = compiled["bandwidth"]
    guaranteed = measure.expected_goodput(bw["govapp_rate_mbit"])
    without_class = measure.expected_goodput(bw["ceil_mbit"]) / len(saturating) / (GREEDY_STREAMS + 1)
    assert guaranteed >= 2 * without_class, "the load no longer tells the government-app class apart: add streams"
    gateway, lan = labtools.gateway_exec(site), compiled["lan"]["interface"]
    classid = next(d["classid"] for d in compiled["devices"] if d["ip"] == gov.client_ip)
    before = measure.class_bytes(gateway, lan)
    # No omitted start: iperf3 does not count every byte of its omitted seconds, and the class
    # counter is compared with what the client received (a run on a loaded machine saw 5 MB of a
    # 43 Mbit/s flow's two omitted seconds missing). The app's rate is far above its guarantee.
    results = measure.run_flows_detailed([gov] + saturating, seconds=6, omit=0)
    after = measure.class_bytes(gateway, lan)
    delta = {c: after[c] - before.get(c, 0) for c in after}
    got = results[0]
    print(f"{site}: government app {got['mbit']:.2f} Mbit/s (guaranteed {guaranteed:.2f}, its share without "
          f"class 1:2 ~{without_class:.2f}), {got['bytes_total']} B received; download 1:2 +{delta.get('1:2', 0)} B, "
          f"device {classid} +{delta.get(classid, 0)} B; others {[round(r['mbit'], 2) for r in results[1:]]}")
    assert got["mbit"] >= guaranteed * (1 - TOLERANCE), results
    # Class 1:2 on LAN egress carried the app's bytes, and only those: at least what the client
    # received, at most what the sender put on the wire (received, written but still unread at
    # the end, retransmitted segments), plus ~4.6 % of headers (HTB counts layer-2 bytes).
    on_wire = got["bytes_total"] + got["unread"] + got["retransmits"] * measure.MSS_BYTES
    assert got["bytes_total"] <= delta.get("1:2", 0) <= on_wire * 1.10, (got, delta)
    # The device's own streams went through its own class, not 1:2.
    assert delta.get(classid, 0) >= results[1]["bytes"], (results[1], delta)


@pytest.mark.parametrize("site", BUSY_SITES)
def test_government_app_ping_skips_the_queue_of_its_own_saturating_device(site):
    """A ping to the government app from a device that is itself saturating its class: with
    class 1:2 (prio 0) it stays near idle; the same device's ping to the internet, meanwhile,
    waits in the device's own full queue (what the app's ping would see without 1:2)."""
    _compiled, gov, saturating = govapp_load(site)
    idle = measure.ping(gov.client_ns, gov.client_ip, gov.server_ip, count=20)
    background = measure.start_background(saturating, seconds=16)
    try:
        time.sleep(3)
        loaded = measure.ping(gov.client_ns, gov.client_ip, gov.server_ip, count=30)
        own_queue = measure.ping(gov.client_ns, gov.client_ip, saturating[0].server_ip, count=20)
    finally:
        results = measure.finish_background(background)
    rates = [round(r["bytes"] * 8 / 16 / 1e6, 2) for r in results]
    print(f"{site}: government-app ping idle {idle}, while its device saturates {loaded}; "
          f"the device's own ping to the internet meanwhile {own_queue}; background Mbit/s {rates}")
    # The load really ran: every background flow moved at least half its device's fair share.
    fair = measure.expected_goodput(labtools.compiled_site(site)["bandwidth"]["ceil_mbit"]) / len(saturating)
    assert all(rate >= fair / 2 for rate in rates), rates
    assert own_queue["median"] >= QUEUED_MS, "the device's queue was not full: the load proves nothing"
    assert loaded["median"] <= idle["median"] + PRIORITY_SLACK_MS, (idle, loaded, own_queue)


RATE = re.compile(r"^class htb (?P<classid>\S+) (?:root|parent (?P<parent>\S+)).*? rate (?P<value>[\d.]+)(?P<unit>[KMG]?)bit", re.M)


def live_class_rates(site: str, device: str) -> dict[str, tuple[str | None, float]]:
    """{classid: (parent, rate in bit/s)} of the HTB tree the gateway's kernel holds."""
    out = labtools.on_gateway(site, "tc", "class", "show", "dev", device).stdout
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
    return {m["classid"]: (m["parent"], float(m["value"]) * scale[m["unit"]]) for m in RATE.finditer(out)}


def test_live_trees_guarantee_no_more_than_the_site_ceiling():
    """On every lab gateway, both directions: the rates of the root's children add up to at most
    the root's (above it HTB lets each child send its rate past the root, docs/shaping.md)."""
    for site in labtools.lab_sites():
        compiled = labtools.compiled_site(site)
        for device in (compiled["lan"]["interface"], compiled["wan"]["interface"]):
            classes = live_class_rates(site, device)
            root = classes.pop("1:1")
            assert len(classes) == 2 + len(compiled["devices"]), (site, device, sorted(classes))
            children = sum(rate for parent, rate in classes.values() if parent == "1:1")
            print(f"{site} {device}: root {root[1] / 1e6:g} Mbit/s, children {children / 1e6:g} Mbit/s")
            assert children <= root[1], (site, device, classes)


def _shaping_rollout(extra_inventory: Path | None) -> dict[str, bool]:
    """Run the validation play and the shaping role on every running lab gateway; changed per host."""
    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp, "shaping.yml")
        playbook.write_text(
            f"- ansible.builtin.import_playbook: {REPO}/playbooks/validate.yml\n"
            "- hosts: gateways\n  gather_facts: false\n  roles: [shaping]\n")
        inventories = ["-i", str(REPO / "inventory/lab")] + (["-i", str(extra_inventory)] if extra_inventory else [])
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
        run = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), *inventories, "--limit", ",".join(labtools.lab_sites()),
                              str(playbook)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout)
    tasks = [t for play in report["plays"] for t in play["tasks"] if t["task"]["name"].endswith("Install the traffic shaping script and its unit")]
    return {host: result.get("changed", False) for t in tasks for host, result in t["hosts"].items()}


def test_changing_one_allocation_reshapes_only_that_site():
    site = SITES_BY_CEILING[10]
    labtools.require_site(site)
    bw = labtools.compiled_site(site)["bandwidth"]
    with tempfile.TemporaryDirectory() as tmp:
        override = Path(tmp, "override.yml")
        override.write_text(json.dumps({"all": {"hosts": {site: {"gerbang_allocation": {
            "rate_mbit": bw["rate_mbit"], "ceil_mbit": bw["ceil_mbit"] * 2}}}}}))
        try:
            changed = _shaping_rollout(override)
            assert sorted(h for h, c in changed.items() if c) == [site]
            # device_ceil_mbit follows the site ceiling when the policy leaves it unset
            expected = measure.expected_goodput(bw["ceil_mbit"] * 2)
            assert_close(goodput(flows(site, 1), expected), expected)
        finally:
            restored = _shaping_rollout(None)
    assert sorted(h for h, c in restored.items() if c) == [site]
