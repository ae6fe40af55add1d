"""Shaping in the whole-city lab, after `ansible-playbook site.yml` (real nftables marks).

What a client gets through its site's gateway: accuracy at 10, 50 and 100 Mbit/s sites
(±5 % of 0.956 x allocation: HTB counts layer-2 bytes, iperf3 reports TCP goodput), five
devices saturating together (Jain >= 0.95), a government-app flow keeping its guaranteed rate
while others saturate and its ping staying within 10 ms of idle, and a changed allocation
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
import subprocess
import sys
import tempfile
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
    """Up to FAIR_ATTEMPTS runs, passing on the first fair one. Five iperf3 pairs on a shared
    2-core machine: a run where one sender is starved of CPU is unfair for reasons outside the
    shaper (a CI run once measured Jain 0.941 on diskominfo); a shaper that is really unfair
    fails every run."""
    runs = []
    for _ in range(FAIR_ATTEMPTS):
        rates = measure.run_flows(flows(site, 5), seconds=6, omit=2)
        runs.append([round(r, 2) for r in rates])
        print(f"{site}: {runs[-1]} Jain {measure.jain(rates):.3f}")
        if measure.jain(rates) >= 0.95:
            return
    raise AssertionError(f"{site}: Jain < 0.95 in every run: {runs}")


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


@pytest.mark.parametrize("site", BUSY_SITES)
def test_government_app_keeps_its_rate_and_latency_while_others_saturate(site):
    bw = labtools.compiled_site(site)["bandwidth"]
    gov_ns, gov_ip = labtools.govapp_server()
    clients = labtools.clients(site, 5)
    up_ns, up_ip = labtools.upstream()
    busy = [measure.Flow(ns, ip, up_ns, up_ip) for ns, ip in clients[1:]]
    gov = measure.Flow(clients[0][0], clients[0][1], gov_ns, gov_ip)
    rates = measure.run_flows([gov] + busy, seconds=6, omit=2)
    assert rates[0] >= measure.expected_goodput(bw["govapp_rate_mbit"]) * (1 - TOLERANCE), rates

    idle = measure.ping(clients[0][0], clients[0][1], gov_ip, count=20)
    background = subprocess.Popen([sys.executable, "-c", (
        "import sys, json; sys.path.insert(0, %r); import shaping_measure as m; "
        "m.run_flows([m.Flow(*f) for f in json.loads(sys.argv[1])], 10, omit=0, base_port=5501)") % str(REPO / "bench"),
        json.dumps([[f.client_ns, f.client_ip, f.server_ns, f.server_ip, True] for f in busy])])
    try:
        loaded = measure.ping(clients[0][0], clients[0][1], gov_ip, count=30)
    finally:
        background.wait(timeout=60)
    print(f"govapp ping idle {idle}, loaded {loaded}")
    assert loaded["median"] <= idle["median"] + 10


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
