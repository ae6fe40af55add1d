"""Monitoring from the command center's point of view, after site.yml on diskominfo and mcc.

Known traffic is made from diskominfo's registered clients (HTTP downloads of a known size
through the intercepting proxy, blocked requests, blocked DNS look-ups, an iperf3 transfer of a
known number of bytes); the gateway's textfile and then mcc's Prometheus must hold it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[5]
sys.path.insert(0, str(REPO / "tests/lab"))

import labtools  # noqa: E402

SITE = "diskominfo"
TEXTFILE = "/var/lib/prometheus/node-exporter/gerbang.prom"
DOWNLOAD = 2_000_000
IPERF_BYTES = 3_000_000
BLOCKED_HTTP = 3
BLOCKED_DNS = 4
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            samples[(match.group(1), frozenset(LABEL.findall(match.group(2))))] = float(match.group(3))
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= set(lbls))


def collect(site: str = SITE) -> dict:
    """Run the collector now (oneshot: returns when done) and read what the exporter serves."""
    started = labtools.on_gateway(site, "systemctl", "start", "gerbang-metrics.service")
    assert started.returncode == 0, started.stderr
    return parse(labtools.on_gateway(site, "cat", TEXTFILE).stdout)


def prometheus(query: str) -> list[dict]:
    url = "http://127.0.0.1:9090/api/v1/query?query=" + urllib.parse.quote(query)
    out = labtools.on_gateway("mcc", "curl", "-sf", "-m", "5", url)
    assert out.returncode == 0, f"Prometheus API: {out.stderr}"
    return json.loads(out.stdout)["data"]["result"]


def wait_for(query: str, predicate, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = prometheus(query)
        if predicate(result) or time.monotonic() > deadline:
            return result
        time.sleep(2)


def test_exporter_answers_the_command_center_only():
    wan = labtools.require_site(SITE)["wan_ip"]
    listening = labtools.on_gateway(SITE, "ss", "-Hltn", "sport", "= :9100").stdout.split()
    assert f"{wan}:9100" in listening, listening
    from_mcc = labtools.on_gateway("mcc", "curl", "-sf", "-m", "5", f"http://{wan}:9100/metrics")
    assert from_mcc.returncode == 0
    info = [line for line in from_mcc.stdout.splitlines() if line.startswith("gerbang_site_info{")]
    assert len(info) == 1 and f'site="{SITE}"' in info[0], info
    client = labtools.registered_clients(SITE)[0]["ns"]
    assert labtools.in_ns(client, "curl", "-sf", "-m", "3", f"http://{wan}:9100/metrics").returncode != 0
    assert labtools.in_ns(client, "curl", "-sf", "-m", "3", f"http://{labtools.require_site(SITE)['lan_address']}:9100/metrics").returncode != 0


def test_collector_counts_known_traffic():
    (client, address), = labtools.clients(SITE, 1)
    device = next(c["device"] for c in labtools.registered_clients(SITE) if c["ns"] == client)
    before = collect()

    status = labtools.curl(client, f"http://kompas.com/bytes/{DOWNLOAD}", timeout=20)
    assert status[:2] == (0, "200"), status[:2]
    for _ in range(BLOCKED_HTTP):
        assert labtools.curl(client, "http://roblox.com/")[1] == "403"
    router_ns, router = labtools.upstream()
    iperf = labtools.in_ns(client, "iperf3", "-c", router, "-p", "5203", "-R", "-n", str(IPERF_BYTES), "-J", timeout=60)
    assert iperf.returncode == 0, iperf.stdout[-500:]
    received = json.loads(iperf.stdout)["end"]["sum_received"]["bytes"]

    after = collect()
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731

    # Proxy log: exactly the requests made, bytes of the download plus headers.
    assert delta("gerbang_proxy_requests_total", decision="denied", category="games") == BLOCKED_HTTP
    assert delta("gerbang_proxy_device_requests_total", device=device, decision="denied") == BLOCKED_HTTP
    assert delta("gerbang_proxy_device_requests_total", device=device, decision="allowed") == 1
    assert DOWNLOAD <= delta("gerbang_proxy_domain_bytes_total", domain="kompas.com") <= DOWNLOAD + 2000
    assert DOWNLOAD <= delta("gerbang_proxy_device_bytes_total", device=device, decision="allowed") <= DOWNLOAD + 2000
    # nftables per-device counter: the proxied download and the forwarded iperf3 transfer
    # (IP bytes; TCP/IP overhead ~4 %).
    expected = DOWNLOAD + received
    assert expected <= delta("gerbang_device_bytes_total", device=device, direction="download") <= expected * 1.10
    # HTB: the device's class and the site root (layer-2 bytes).
    device_class = delta("gerbang_tc_bytes_total", direction="download", **{"class": "device"}, device=device)
    assert expected <= device_class <= expected * 1.12
    assert delta("gerbang_tc_bytes_total", direction="download", **{"class": "site"}) >= device_class
    assert value(after, "gerbang_devices_registered") == len(labtools.compiled_site(SITE)["devices"])
    assert value(after, "gerbang_devices_active") >= 1
    assert value(after, "gerbang_device_last_active_timestamp_seconds", device=device) >= value(before, "gerbang_collector_last_run_timestamp_seconds")
    for source in ("tc_download", "tc_upload", "nftables", "neighbours", "squid_log", "dnsmasq_log"):
        assert value(after, "gerbang_collector_source_up", source=source) == 1, source


def test_blocked_dns_lookups_are_counted():
    """dnsmasq's log: one blocked attempt per A look-up of a blocked name (cached answers too)."""
    (client, _address), = labtools.clients(SITE, 1)
    device = next(c["device"] for c in labtools.registered_clients(SITE) if c["ns"] == client)
    gateway = labtools.require_site(SITE)["lan_address"]
    before = collect()
    for _ in range(BLOCKED_DNS):
        assert labtools.dig(client, gateway, "roblox.com") == [gateway]
    after = collect()
    assert value(after, "gerbang_collector_source_up", source="dnsmasq_log") == 1
    assert value(after, "gerbang_dns_blocked_total", category="games") - value(before, "gerbang_dns_blocked_total", category="games") \
        == BLOCKED_DNS
    assert value(after, "gerbang_dns_device_blocked_total", device=device, category="games") \
        - value(before, "gerbang_dns_device_blocked_total", device=device, category="games") == BLOCKED_DNS


def test_prometheus_scrapes_every_site_with_its_labels():
    up = wait_for('up{job="gerbang-gateways",site=~"diskominfo|mcc"}', lambda r: len(r) == 2 and all(x["value"][1] == "1" for x in r))
    assert sorted((x["metric"]["site"], x["value"][1]) for x in up) == [("diskominfo", "1"), ("mcc", "1")]
    groups = {x["metric"]["site"]: x["metric"]["groups"] for x in up}
    assert groups["diskominfo"] == "," + ",".join(labtools.compiled_site(SITE)["groups"]) + ","
    # Every gateway of the city is a target; Prometheus spreads first scrapes over the interval,
    # so targets get their first `up` sample (0 for sites the scenario did not start) in turn.
    expected = str(len(labtools.city()["sites"]))
    targets = wait_for('count(up{job="gerbang-gateways"})', lambda r: bool(r) and r[0]["value"][1] == expected)
    assert targets[0]["value"][1] == expected


def test_prometheus_holds_the_gateway_counters():
    local = value(collect(), "gerbang_proxy_requests_total", decision="denied", category="games")
    assert local >= BLOCKED_HTTP
    query = f'sum(gerbang_proxy_requests_total{{site="{SITE}",decision="denied",category="games"}})'
    result = wait_for(query, lambda r: r and float(r[0]["value"][1]) >= local)
    assert result and float(result[0]["value"][1]) >= local
    device = prometheus(f'gerbang_device_bytes_total{{site="{SITE}",direction="download"}} > 0')
    assert {x["metric"]["device"] for x in device} <= {d["name"] for d in labtools.compiled_site(SITE)["devices"]}
    assert device


def test_alert_rules_are_loaded_and_a_missing_gateway_alerts():
    rules = json.loads(labtools.on_gateway("mcc", "curl", "-sf", "http://127.0.0.1:9090/api/v1/rules").stdout)
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"GerbangGatewayDown", "GerbangSiteAtCeiling", "GerbangBlockedSpike", "GerbangMoreDevicesThanRegistered"} <= names
    # setda is not up in this scenario: its target is down, so its alert is at least pending.
    alerts = wait_for('ALERTS{alertname="GerbangGatewayDown",site="setda"}', bool)
    assert alerts, "no GerbangGatewayDown for a gateway that does not answer"


def test_alert_rules_unit_tests():
    """promtool's rule tests (rules_test.yml) against the rules deployed on mcc."""
    rules_test = (REPO / "roles/prometheus/tests/rules_test.yml").read_text(encoding="utf-8")
    container = labtools.require_site("mcc")["container"]
    written = subprocess.run(["podman", "exec", "-i", container, "sh", "-c", "cat > /tmp/rules_test.yml"],
                             input=rules_test, capture_output=True, text=True, timeout=10, check=False)
    assert written.returncode == 0, written.stderr
    result = labtools.on_gateway("mcc", "promtool", "test", "rules", "/tmp/rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
