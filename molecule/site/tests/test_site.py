"""What playbooks/gateways.yml leaves on each lab gateway of the site scenario (testinfra, podman
backend: the hosts are the lab containers `<GERBANG_LAB>-<site>`). Every expectation is taken
from the site's compiled policy, so the checks follow the policy data, not hard-coded values."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lib"))

from gerbang_kota.inventory import compile_inventory  # noqa: E402

LAB = os.environ.get("GERBANG_LAB", "mol-site")


@functools.cache
def city() -> dict:
    return compile_inventory(REPO / "inventory/lab")


@pytest.fixture(name="site")
def fixture_site(host) -> dict:
    container = host.backend.name
    assert container.startswith(f"{LAB}-"), f"{container} is not a container of lab {LAB}"
    return city()["sites"][container[len(LAB) + 1:]]


def test_systemd_runs_without_failed_units(host):
    state = host.run("systemctl is-system-running --wait")
    failed = host.run("systemctl --failed --no-legend --plain").stdout.strip()
    assert state.stdout.strip() == "running", failed


def test_interfaces_carry_the_compiled_addresses(host, site):
    addresses = {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == "inet"]
                 for link in json.loads(host.check_output("ip -j addr show"))}
    assert site["wan"]["address"] in addresses[site["wan"]["interface"]]
    assert f"{site['lan']['address']}/{site['lan']['prefixlen']}" in addresses[site["lan"]["interface"]]


@pytest.mark.parametrize("service", ["dnsmasq", "squid", "prometheus-node-exporter"])
def test_gateway_services_are_enabled_and_running(host, service):
    unit = host.service(service)
    assert unit.is_enabled, f"{service} is not enabled"
    assert unit.is_running, f"{service} is not running"


def test_the_gerbang_ruleset_is_loaded(host):
    tables = json.loads(host.check_output("nft -j list tables"))["nftables"]
    assert {"family": "inet", "name": "gerbang"} in [{k: t["table"][k] for k in ("family", "name")}
                                                      for t in tables if "table" in t]


def test_every_registered_device_has_its_own_class_on_the_lan(host, site):
    # `tc -j class show` prints plain text for HTB classes (iproute2 6.1): "class htb 1:10b parent …"
    classes = {line.split()[2] for line in host.check_output(f"tc class show dev {site['lan']['interface']}").splitlines()}
    root = json.loads(host.check_output(f"tc -j qdisc show dev {site['lan']['interface']} root") or "[]")
    assert [q["kind"] for q in root] == ["htb"]
    assert {d["classid"] for d in site["devices"]} <= classes


def test_forwarding_is_on(host):
    assert host.sysctl("net.ipv4.ip_forward") == 1


# --- what the sites' clients get (lab client namespaces, helpers of tests/lab/labtools.py) ----

sys.path.insert(0, str(REPO / "tests/lab"))
import labtools  # noqa: E402


@pytest.fixture(name="lab_site", params=sorted(labtools.state()["sites"]) if labtools.RUN.exists() else [])
def fixture_lab_site(request) -> str:
    return request.param


def test_registered_devices_lease_their_registered_address(lab_site):
    for client in labtools.registered_clients(lab_site):
        assert labtools.dhcp(client["ns"]) == client["expected_ip"], client["device"]


def test_an_unregistered_device_gets_no_lease(lab_site):
    assert labtools.dhcp(labtools.unregistered_client(lab_site)["ns"], timeout=6) is None


def test_clients_resolve_through_the_gateway_with_safesearch(lab_site):
    site = labtools.compiled_site(lab_site)
    [(ns, _)] = labtools.clients(lab_site, 1)
    google = next(t for t in site["safe_mode"]["safesearch_targets"] if t["engine"] == "google")
    assert labtools.dig(ns, site["lan"]["address"], "www.google.com")[-1:] == [google["address"]]


def test_an_allowed_site_loads_through_the_gateway(lab_site):
    site = labtools.compiled_site(lab_site)
    [(ns, _)] = labtools.clients(lab_site, 1)
    app = site["govapp_domains"][0]
    code, status, body = labtools.curl(ns, f"https://{app}/")
    assert (code, status) == (0, "200") and app in body, (code, status, body[:200])
