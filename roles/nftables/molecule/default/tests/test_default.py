"""The gateway firewall (table inet gerbang) on a lab gateway, from its clients' point of view.

setda after converge (nftables + dnsmasq). Clients are real network namespaces on the LAN,
the "internet" is the lab's stand-in namespace behind the WAN: nothing here leaves the lab.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[5]
sys.path.insert(0, str(REPO / "tests/lab"))

import labtools as L  # noqa: E402
from site_fixtures import client, site  # noqa: E402,F401 (fixtures, used by name)

SITE = "setda"
TCP_PROBE = ("import socket,sys\ntry:\n s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); print('open')\n"
             "except OSError as e: print('closed', type(e).__name__)")
# A connected UDP socket: an ICMP port-unreachable (reject) surfaces as ConnectionRefusedError,
# a silent drop as TimeoutError.
UDP_PROBE = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); "
             "s.connect((sys.argv[1],int(sys.argv[2]))); s.send(b'quic?')\n"
             "try: print(s.recv(100).decode())\nexcept OSError as e: print('no-answer', type(e).__name__)")
RECV_PROBE = ("import socket,sys\ntry:\n s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); "
              "print(s.recv(100).decode().strip())\nexcept OSError as e: print('closed', type(e).__name__)")
WEEK_MINUTES = 7 * 24 * 60
# Three gratuitous ARP requests and three unsolicited replies from eth0 claiming argv[1] (with
# eth0's own MAC), addressed to the gateway argv[2] / broadcast: what a PC sends on an address change.
GRATUITOUS_ARP = (
    "import socket,sys,time\n"
    "ip,gw=(socket.inet_aton(a) for a in sys.argv[1:3])\n"
    "mac=bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':',''))\n"
    "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind(('eth0',0))\n"
    "for op,tha,tpa in ((1,b'\\0'*6,ip),(2,b'\\xff'*6,gw))*3:\n"
    " s.send(b'\\xff'*6+mac+b'\\x08\\x06'+b'\\0\\x01\\x08\\0\\x06\\x04'+op.to_bytes(2,'big')+mac+ip+tha+tpa+b'\\0'*18); time.sleep(0.1)\n")


@pytest.fixture
def listener():
    """A throw-away TCP listener on the gateway (stands in for Squid / node exporter)."""
    units = []

    def start(port: int) -> None:
        unit = f"probe-{port}"
        code = (f"import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                f"s.bind(('0.0.0.0', {port})); s.listen(8)\nwhile True:\n c,a=s.accept(); c.sendall(b'gateway:{port}\\n'); c.close()")
        result = L.on_gateway(SITE, "systemd-run", f"--unit={unit}", "python3", "-c", code)
        assert result.returncode == 0, result.stderr
        units.append(unit)
        for _ in range(50):
            if f":{port}" in L.on_gateway(SITE, "ss", "-Hltn", "sport", f"= :{port}").stdout:
                return
            time.sleep(0.1)
        pytest.fail(f"listener on {port} did not start")

    yield start
    for unit in units:
        L.on_gateway(SITE, "systemctl", "stop", unit)


def site_port(name: str) -> int:
    """A port of the cross-role contract (group_vars/all/services.yml, gerbang_ports)."""
    services = yaml.safe_load((REPO / "group_vars/all/services.yml").read_text(encoding="utf-8"))
    return int(services["gerbang_ports"][name])


def counter(name: str, family: str = "inet") -> tuple[int, int]:
    """(packets, bytes) of a named counter of table <family> gerbang (the JSON form: comments may say "packets")."""
    out = L.on_gateway(SITE, "nft", "-j", "list", "counter", family, "gerbang", name).stdout
    [found] = [item["counter"] for item in json.loads(out)["nftables"] if "counter" in item]
    assert found["name"] == name, found
    return int(found["packets"]), int(found["bytes"])


def probe(ns: str, address: str, port: int, udp: bool = False) -> str:
    return L.in_ns(ns, "python3", "-c", UDP_PROBE if udp else TCP_PROBE, address, str(port)).stdout


def always_blocked_name(site: dict) -> str:
    """A name the compiled policy blocks at every minute of the week (independent of the clock)."""
    never_blocked = set(site["allow_domains"]) | set(site["govapp_domains"])
    for block in site["blocks"]:
        schedule = site["schedules"][block["schedule"]]
        minutes = sum(seg["end_minute"] - seg["start_minute"] for seg in schedule["segments"])
        if schedule["always"] or minutes >= WEEK_MINUTES:
            names = [d for d in site["categories"][block["category"]]["domains"] if d not in never_blocked]
            if names:
                return sorted(names)[0]
    pytest.fail(f"{site['name']} blocks no category at all times: the DNS redirect test needs one")


def test_ruleset_is_loaded_by_its_own_unit_and_other_tables_survive(host):
    assert host.service("gerbang-nftables").is_enabled
    tables = host.run("nft list tables").stdout
    assert "table inet gerbang" in tables
    assert "table inet other_role" in tables, "the role must not flush the ruleset"
    # A reload replaces our table atomically and leaves the other one alone.
    assert host.run("systemctl reload gerbang-nftables").rc == 0
    assert "table inet other_role" in host.run("nft list tables").stdout
    assert host.run("nft -c -f /etc/nftables.d/gerbang.nft").rc == 0
    assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"


def learnt_govapp_addresses() -> dict[str, int]:
    """{address: seconds left} of the set dnsmasq fills from government-app answers."""
    out = L.on_gateway(SITE, "nft", "-j", "list", "set", "inet", "gerbang", "govapp_v4").stdout
    [learnt] = [item["set"] for item in json.loads(out)["nftables"] if "set" in item]
    return {e["elem"]["val"]: e["elem"]["expires"] for e in learnt.get("elem", [])}


def test_a_reload_keeps_the_addresses_dnsmasq_learnt(client, site):
    # dnsmasq adds an address when it asks upstream, never when it answers from its cache: a
    # reload that emptied the set would keep government apps out of their class for a whole TTL.
    ns, _ip = client
    assert L.on_gateway(SITE, "systemctl", "reload", "dnsmasq").returncode == 0  # empty cache: asks upstream
    name = sorted(site["govapp_domains"])[0]
    address = next(a for a in L.dig(ns, site["lan"]["address"], name) if a.replace(".", "").isdigit())
    before = learnt_govapp_addresses()
    assert address in before, (name, address, before)
    assert L.on_gateway(SITE, "systemctl", "reload", "gerbang-nftables").returncode == 0
    after = learnt_govapp_addresses()
    assert address in after and 0 < after[address] <= before[address], (before, after)
    assert address in L.dig(ns, site["lan"]["address"], name)  # from dnsmasq's cache: adds nothing
    assert address in learnt_govapp_addresses()


def test_registered_device_is_forwarded_and_counted(client, site):
    ns, ip = client
    device = next(d for d in site["devices"] if d["ip"] == ip)
    up, down = counter(f"dev{device['host_index']}_up"), counter(f"dev{device['host_index']}_down")
    ping = L.in_ns(ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", L.upstream()[1])
    assert ping.returncode == 0, ping.stdout
    assert counter(f"dev{device['host_index']}_up")[0] >= up[0] + 3
    assert counter(f"dev{device['host_index']}_down")[0] >= down[0] + 3


def test_unregistered_device_with_a_hand_set_address_is_dropped(site):
    ns = L.unregistered_client(SITE)["ns"]
    lan = site["lan"]
    L.set_static(ns, lan["network"].rsplit(".", 1)[0] + ".200", lan["prefixlen"], lan["address"])
    try:
        before = counter("unregistered_dropped")[0]
        assert L.in_ns(ns, "ping", "-c", "1", "-W", "2", L.upstream()[1]).returncode != 0
        assert counter("unregistered_dropped")[0] > before
        assert L.dig(ns, lan["address"], "kompas.com") == [], "no DNS for an unregistered device either"
    finally:
        L.release(ns)


def test_registered_mac_with_a_colleagues_address_is_dropped(site):
    """Address and MAC are registered as a pair: a borrowed (or forged) address does not pass.

    The colleague here is a registered device with no lab client (offline); the next test
    borrows the address of a colleague who is online. Caught by whichever layer sees it first:
    `arp gerbang` drops the borrower's ARP (it claims a registered address from another MAC), or,
    when the borrower still knows the gateway's MAC, `inet gerbang` drops its packets.
    """
    devices = L.registered_clients(SITE)
    ns = devices[1]["ns"]
    online = {c["expected_ip"] for c in devices}
    colleague = next(d for d in site["devices"] if d["ip"] not in online and d["mac"] != devices[1]["mac"])
    L.set_static(ns, colleague["ip"], site["lan"]["prefixlen"], site["lan"]["address"])
    try:
        before = counter("unregistered_dropped")[0] + counter("spoof_dropped", "arp")[0]
        assert L.in_ns(ns, "ping", "-c", "1", "-W", "2", L.upstream()[1]).returncode != 0
        assert counter("unregistered_dropped")[0] + counter("spoof_dropped", "arp")[0] > before
    finally:
        L.release(ns)
        L.on_gateway(SITE, "ip", "neigh", "flush", "to", colleague["ip"], "dev", site["lan"]["interface"])


def neighbour_mac(site: dict, ip: str) -> str | None:
    """The MAC of the gateway's neighbour entry for ip on the LAN (None: no entry)."""
    out = L.on_gateway(SITE, "ip", "-j", "neigh", "show", "to", ip, "dev", site["lan"]["interface"]).stdout
    entries = [e for e in json.loads(out or "[]") if e.get("lladdr")]
    return entries[0]["lladdr"].lower() if entries else None


def test_borrowing_an_online_colleagues_address_does_not_take_the_colleague_offline(site):
    """ARP spoofing: a device that configures a colleague's address announces it (gratuitous
    ARP, as every OS does on an address change) and asks for the gateway from it. Table
    `arp gerbang` drops ARP claiming a registered address from another MAC, so the gateway's
    neighbour entry keeps the colleague's MAC and the colleague keeps working."""
    victim, borrower = L.registered_clients(SITE)[:2]
    [(victim_ns, victim_ip)] = L.clients(SITE, 1)
    assert victim_ip == victim["expected_ip"]
    victim_mac = L.in_ns(victim_ns, "cat", "/sys/class/net/eth0/address").stdout.strip().lower()
    gateway, lan_if = site["lan"]["address"], site["lan"]["interface"]
    allowed = site["govapp_domains"][0]
    assert L.in_ns(victim_ns, "ping", "-c", "1", "-W", "2", gateway).returncode == 0
    assert neighbour_mac(site, victim_ip) == victim_mac
    before = counter("spoof_dropped", "arp")[0]
    L.set_static(borrower["ns"], victim_ip, site["lan"]["prefixlen"], gateway)
    try:
        # Gratuitous ARP (request and reply) claiming the colleague's address, then traffic.
        forged = L.in_ns(borrower["ns"], "python3", "-c", GRATUITOUS_ARP, victim_ip, gateway)
        assert forged.returncode == 0, forged.stderr
        L.in_ns(borrower["ns"], "ping", "-c", "3", "-i", "0.3", "-W", "1", gateway)
        failures, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline:
            mac = neighbour_mac(site, victim_ip)
            answer = L.dig(victim_ns, gateway, allowed)
            ping = L.in_ns(victim_ns, "ping", "-c", "1", "-W", "1", L.upstream()[1]).returncode
            if mac != victim_mac or not answer or ping != 0:
                failures.append((round(deadline - time.monotonic(), 1), mac, answer, ping))
            time.sleep(0.5)
        assert failures == [], f"colleague {victim_ip} ({victim_mac}) disturbed: {failures}"
        assert counter("spoof_dropped", "arp")[0] >= before + 6, "the forged ARP was dropped and counted"
    finally:
        L.release(borrower["ns"])
        L.dhcp(borrower["ns"])


def test_arp_table_is_ours_and_replaced_with_inet_gerbang(host, site):
    tables = host.run("nft list tables").stdout
    assert "table arp gerbang" in tables
    ruleset = host.run("nft list table arp gerbang").stdout
    for device in site["devices"]:
        assert f"{device['ip']} . {device['mac']}" in ruleset, device["name"]
    # A reload replaces both tables and keeps the other role's.
    assert host.run("systemctl reload gerbang-nftables").rc == 0
    tables = host.run("nft list tables").stdout
    assert "table arp gerbang" in tables and "table inet other_role" in tables


def test_dns_to_any_server_is_answered_by_the_gateway(client, site):
    """Whatever server a device asks (UDP or TCP), the gateway's dnsmasq answers.

    A name blocked at all times gets the block page from the gateway, while the lab's internet
    resolver (also asked directly here) would give its stand-in web server; 8.8.8.8 does not
    exist in the lab at all. An allowed name gets the same answer as from the gateway itself.
    """
    ns, _ip = client
    block, gateway = site["block_page"]["ip"], site["lan"]["address"]
    blocked = always_blocked_name(site)
    inet_ns, resolver = L.state()["internet"]["ns"], L.state()["internet"]["dns"]
    assert L.dig(inet_ns, resolver, blocked) not in ([], [block]), "the internet's resolver gives its own answer"
    allowed = site["govapp_domains"][0]
    assert L.dig(ns, gateway, allowed) == [L.state()["internet"]["names"][allowed]]
    for server in ("8.8.8.8", resolver):
        for tcp in (False, True):
            assert L.dig(ns, server, blocked, tcp=tcp) == [block], (server, blocked, tcp)
            assert L.dig(ns, server, allowed, tcp=tcp) == L.dig(ns, gateway, allowed, tcp=tcp), (server, allowed, tcp)


def test_dns_over_tls_quic_and_doh_are_closed(client, site, listener):
    """Rejected (fail fast: TCP refused, UDP port unreachable), not dropped, and counted."""
    ns, _ip = client
    web, inet = L.state()["internet"]["public_web"], L.state()["internet"]["ns"]
    assert "open" in probe(inet, web, 853), "the stand-in internet listens on tcp/853 ..."
    assert probe(inet, web, 443, udp=True).strip() == "quic?", "... and echoes udp/443"
    # Were DoH resolvers redirected like other HTTPS, this listener would answer instead.
    listener(3130)
    attempts = [(web, 853, False, "closed ConnectionRefusedError"),
                (web, 853, True, "no-answer ConnectionRefusedError"),
                (web, 443, True, "no-answer ConnectionRefusedError"),
                (site["doh_addresses"][0], 443, False, "closed ConnectionRefusedError")]
    for address, port, udp, expected in attempts:
        before = counter("bypass_rejected")[0]
        assert probe(ns, address, port, udp=udp).strip() == expected, (address, port, udp)
        assert counter("bypass_rejected")[0] == before + 1, (address, port, udp)


def test_web_traffic_is_redirected_to_the_proxy_ports(client, site, listener):
    """LAN tcp/80 -> 3129 and tcp/443 -> 3130 on the gateway, whatever the destination."""
    ns, _ip = client
    ports = {80: site_port("proxy_http_intercept"), 443: site_port("proxy_https_intercept")}
    for port in ports.values():
        listener(port)
    for address in (L.state()["internet"]["public_web"], site["lan"]["address"]):
        for port, proxy in ports.items():
            out = L.in_ns(ns, "python3", "-c", RECV_PROBE, address, str(port)).stdout
            assert out.strip() == f"gateway:{proxy}", (address, port)


def test_wan_side_offers_nothing_but_the_exporter_to_the_command_center(site, listener):
    # Something listens on every port probed (on all addresses): only the firewall closes them.
    ports = (22, 3128, 3129, 3130, 9100)
    for port in ports:
        listener(port)
    inet = L.state()["internet"]["ns"]
    wan = site["wan"]["ip"]
    assert L.dig(inet, wan, "kompas.com") == []
    for port in ports:
        assert probe(inet, wan, port).strip() == "closed TimeoutError", port
    ruleset = L.on_gateway(SITE, "nft", "list", "chain", "inet", "gerbang", "input").stdout
    assert f"ip saddr {site['command_center_ip']} tcp dport 9100 accept" in ruleset
    for network in site["management"]["networks"]:
        assert network in L.on_gateway(SITE, "nft", "list", "set", "inet", "gerbang", "management").stdout


def test_lan_clients_reach_the_gateway_services_only_when_registered(client, site, listener):
    ns, _ip = client
    listener(3128)
    listener(22)
    assert "open" in probe(ns, site["lan"]["address"], 3128)
    assert probe(ns, site["lan"]["address"], 22).strip() == "closed TimeoutError", "SSH only from the management network"
    unregistered = L.unregistered_client(SITE)["ns"]
    lan = site["lan"]
    L.set_static(unregistered, lan["network"].rsplit(".", 1)[0] + ".201", lan["prefixlen"], lan["address"])
    try:
        assert probe(unregistered, lan["address"], 3128).strip() == "closed TimeoutError", "not for an unregistered device"
    finally:
        L.release(unregistered)


def test_after_a_flushed_ruleset_the_next_answers_refill_the_learnt_sets(client, site):
    """`nft flush ruleset` by hand, then the unit's reload (what a rollout's repair runs): there is
    nothing to carry over, so dnsmasq's cache is emptied and its next answer fills the set again.
    Last in this file: the flush also removes the tables other tests add."""
    ns, _ip = client
    name = sorted(site["govapp_domains"])[0]
    L.dig(ns, site["lan"]["address"], name)  # in dnsmasq's cache from here on
    assert L.on_gateway(SITE, "nft", "flush", "ruleset").returncode == 0
    reload = L.on_gateway(SITE, "systemctl", "reload", "gerbang-nftables")
    assert reload.returncode == 0, reload.stderr
    assert learnt_govapp_addresses() == {}
    journal = L.on_gateway(SITE, "journalctl", "-u", "gerbang-nftables", "-n", "20", "--no-pager").stdout
    assert "dnsmasq's cache emptied so its answers refill the learnt sets" in journal
    address = next(a for a in L.dig(ns, site["lan"]["address"], name) if a.replace(".", "").isdigit())
    assert address in learnt_govapp_addresses()
