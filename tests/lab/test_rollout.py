"""The no-change fast path of playbooks/gateways.yml in the lab: gateways in sync skip the roles,
and anything that drifted — a file edited by hand, a stopped service, kernel rules or shaping
removed by hand, a policy change — takes that gateway (and only that one) through the full
roles, which put it right."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import labtools

REPO = labtools.REPO
ROLES_PLAY = "Configure the city's gateways"
EXPORTER_DEFAULTS = "/etc/default/prometheus-node-exporter"


def rollout(extra_inventory: Path | None = None) -> dict:
    """playbooks/gateways.yml over the lab's sites: {"state": {host: result}, "roles": {host: [changed task names]}}."""
    inventories = ["-i", str(REPO / "inventory/lab")] + (["-i", str(extra_inventory)] if extra_inventory else [])
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    run = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), *inventories, "--limit", ",".join(labtools.lab_sites()),
                          "playbooks/gateways.yml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout)
    out = {"state": {}, "roles": {}}
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == "Compare each gateway with its last complete rollout":
                out["state"] = task["hosts"]
            if play["play"]["name"] == ROLES_PLAY:
                for host, result in task["hosts"].items():
                    names = out["roles"].setdefault(host, [])
                    if result.get("changed"):
                        names.append(task["task"]["name"])
    return out


def gateways() -> list[str]:
    return sorted(labtools.lab_sites())


def test_a_no_change_rollout_skips_every_gateway_in_sync():
    rollout()  # whatever earlier tests left is put right here
    again = rollout()
    assert sorted(again["state"]) == gateways()
    assert {h: r["reasons"] for h, r in again["state"].items() if not r["in_sync"]} == {}
    assert again["roles"] == {}, "no role may run on a gateway that is in sync"


def test_drift_on_a_gateway_is_repaired_on_that_gateway_only():
    edited, stopped = gateways()[0], gateways()[1]
    labtools.require_site(edited)
    labtools.require_site(stopped)
    before = labtools.on_gateway(edited, "sha256sum", EXPORTER_DEFAULTS).stdout.split()[0]
    labtools.on_gateway(edited, "sh", "-c", f"echo '# edited by hand' >> {EXPORTER_DEFAULTS}")
    labtools.on_gateway(stopped, "systemctl", "stop", "prometheus-node-exporter")
    result = rollout()
    not_in_sync = {h: r["reasons"] for h, r in result["state"].items() if not r["in_sync"]}
    assert sorted(not_in_sync) == sorted([edited, stopped]), not_in_sync
    assert any(EXPORTER_DEFAULTS in reason and "changed on the gateway" in reason for reason in not_in_sync[edited])
    assert "service prometheus-node-exporter is inactive" in not_in_sync[stopped]
    assert sorted(result["roles"]) == sorted([edited, stopped])
    assert labtools.on_gateway(edited, "sha256sum", EXPORTER_DEFAULTS).stdout.split()[0] == before
    assert labtools.on_gateway(stopped, "systemctl", "is-active", "prometheus-node-exporter").stdout.strip() == "active"
    assert rollout()["roles"] == {}


def test_kernel_state_removed_by_hand_is_put_back_on_that_gateway_only():
    flushed, unshaped, unpaired = gateways()[:3]
    lan = labtools.compiled_site(unshaped)["lan"]["interface"]
    device = labtools.compiled_site(unpaired)["devices"][0]
    pair = f"{device['ip']} . {device['mac']}"
    # A government app's name in the flushed gateway's DNS cache: after the repair its next
    # answer must still put the address in govapp_v4 (dnsmasq adds only what it asks upstream).
    flushed_site = labtools.compiled_site(flushed)
    [(ns, _ip)] = labtools.clients(flushed, 1)
    govapp = sorted(flushed_site["govapp_domains"])[0]
    labtools.dig(ns, flushed_site["lan"]["address"], govapp)
    labtools.on_gateway(flushed, "nft", "flush", "ruleset")
    labtools.on_gateway(unshaped, "tc", "qdisc", "del", "dev", lan, "root")
    # A registered device taken out of the ruleset's own set (not a set dnsmasq fills).
    assert labtools.on_gateway(unpaired, "nft", "delete", "element", "inet", "gerbang", "registered",
                               f"{{ {pair} }}").returncode == 0
    result = rollout()
    not_in_sync = {h: r["reasons"] for h, r in result["state"].items() if not r["in_sync"]}
    assert not_in_sync == {
        flushed: ["nftables: the live kernel state is not what was applied (changed by hand?)"],
        unshaped: ["shaping: the live kernel state is not what was applied (changed by hand?)"],
        unpaired: ["nftables: the live kernel state is not what was applied (changed by hand?)"]}, not_in_sync
    assert [n.split(" :")[0] for n in result["roles"][flushed]] == ["nftables"], result["roles"]
    assert [n.split(" :")[0] for n in result["roles"][unshaped]] == ["shaping"], result["roles"]
    assert [n.split(" :")[0] for n in result["roles"][unpaired]] == ["nftables"], result["roles"]
    assert pair in labtools.on_gateway(unpaired, "nft", "list", "set", "inet", "gerbang", "registered").stdout
    assert labtools.on_gateway(flushed, "nft", "list", "table", "inet", "gerbang").returncode == 0
    assert labtools.on_gateway(flushed, "nft", "list", "table", "arp", "gerbang").returncode == 0
    address = next(a for a in labtools.dig(ns, flushed_site["lan"]["address"], govapp) if a.replace(".", "").isdigit())
    assert address in labtools.on_gateway(flushed, "nft", "list", "set", "inet", "gerbang", "govapp_v4").stdout
    assert "qdisc htb 1: root" in labtools.on_gateway(unshaped, "tc", "qdisc", "show", "dev", lan).stdout
    assert rollout()["roles"] == {}


def test_a_policy_change_for_one_site_rolls_out_to_that_site_only():
    site = gateways()[0]
    labtools.require_site(site)
    bw = labtools.compiled_site(site)["bandwidth"]
    with tempfile.TemporaryDirectory() as tmp:
        override = Path(tmp, "override.yml")
        override.write_text(json.dumps({"all": {"hosts": {site: {"gerbang_allocation": {
            "rate_mbit": bw["rate_mbit"], "ceil_mbit": bw["ceil_mbit"] + 1}}}}}))
        try:
            changed = rollout(override)
            assert [h for h, r in changed["state"].items() if not r["in_sync"]] == [site]
            assert any(name.startswith("shaping :") for name in changed["roles"][site]), changed["roles"]
        finally:
            restored = rollout()
    assert [h for h, r in restored["state"].items() if not r["in_sync"]] == [site]
    assert rollout()["roles"] == {}
