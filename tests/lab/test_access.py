"""Access control in the whole-city lab after `ansible-playbook site.yml`: registered devices
only, DNS on schedule with SafeSearch, and no way around the gateway's DNS or proxy.

Every check runs from a real client namespace behind a real gateway container. Schedule edges
are set with `gerbang-dns-schedule --at` on the gateway — the same program its timer runs every
minute, deciding from the same compiled segments (README: time control); the timer is paused
while a test holds a chosen time and the real state is restored afterwards.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

import labtools as L

SITE = "setda"            # group humas: social media open, streaming closed in working hours
OTHER = "rsud"            # public service + hospital: streaming always closed
STREAMING = ["youtube.com", "vidio.com", "vimeo.com"]
UDP_PROBE = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); "
             "s.sendto(b'quic?',(sys.argv[1],int(sys.argv[2])));\n"
             "try: print(s.recvfrom(100)[0].decode())\nexcept OSError as e: print('no-answer', e)")
TCP_PROBE = ("import socket,sys\ntry:\n s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); print('open')\n"
             "except OSError as e: print('closed', type(e).__name__)")


def gateway_ip(site: str) -> str:
    return L.compiled_site(site)["lan"]["address"]


@pytest.fixture(scope="module")
def client():
    L.require_site(SITE)
    [(ns, ip)] = L.clients(SITE, 1)
    return ns, ip


@pytest.fixture
def clock_on(request):
    """Hold the site's DNS blocks at chosen local times; restore the real state afterwards."""
    sites = set()

    def hold(site: str, at: str) -> None:
        if site not in sites:
            L.on_gateway(site, "systemctl", "stop", "gerbang-dns-schedule.timer")
            sites.add(site)
        result = L.on_gateway(site, "gerbang-dns-schedule", "--at", at)
        assert result.returncode == 0, result.stderr

    yield hold
    for site in sites:
        L.on_gateway(site, "gerbang-dns-schedule")
        L.on_gateway(site, "systemctl", "start", "gerbang-dns-schedule.timer")


def test_registered_device_gets_its_fixed_lease_and_reaches_the_internet(client):
    ns, ip = client
    device = L.registered_clients(SITE)[0]
    assert ip == device["expected_ip"]
    assert L.dhcp(ns) == device["expected_ip"], "a renewed lease keeps the registered address"
    ping = L.in_ns(ns, "ping", "-c", "1", "-W", "2", L.upstream()[1])
    assert ping.returncode == 0, ping.stdout
    rc, status, body = L.curl(ns, "http://kompas.com/", resolve_to=L.dig(ns, gateway_ip(SITE), "kompas.com")[0])
    assert (rc, status) == (0, "200") and "stand-in: kompas.com" in body


@pytest.mark.parametrize("site", [SITE, OTHER])
def test_unregistered_device_gets_no_lease(site):
    L.require_site(site)
    assert L.dhcp(L.unregistered_client(site)["ns"], timeout=6) is None


def test_unregistered_device_with_a_hand_set_address_gets_nowhere():
    ns = L.unregistered_client(SITE)["ns"]
    lan = L.compiled_site(SITE)["lan"]
    L.set_static(ns, lan["network"].rsplit(".", 1)[0] + ".200", lan["prefixlen"], lan["address"])
    try:
        assert L.in_ns(ns, "ping", "-c", "1", "-W", "2", L.upstream()[1]).returncode != 0
        assert L.dig(ns, lan["address"], "kompas.com") == [], "not even the gateway's DNS answers"
        rc, _, _ = L.curl(ns, "http://kompas.com/", resolve_to="100.64.0.10", timeout=4)
        assert rc != 0
    finally:
        L.release(ns)


def test_registered_mac_with_another_devices_address_gets_nowhere():
    """MAC and address are registered together: borrowing a colleague's address does not work."""
    devices = L.registered_clients(SITE)
    ns = devices[1]["ns"]
    lan = L.compiled_site(SITE)["lan"]
    L.set_static(ns, devices[0]["expected_ip"].rsplit(".", 1)[0] + ".201", lan["prefixlen"], lan["address"])
    try:
        assert L.in_ns(ns, "ping", "-c", "1", "-W", "2", L.upstream()[1]).returncode != 0
    finally:
        L.release(ns)


@pytest.mark.parametrize(("at", "blocked"), [
    ("2026-11-23 06:59", False),   # Monday, before working hours
    ("2026-11-23 07:00", True),
    ("2026-11-23 15:59", True),
    ("2026-11-23 16:00", False),
    ("2026-11-28 10:00", False),   # Saturday
])
def test_streaming_is_refused_in_working_hours_only(client, clock_on, at, blocked):
    ns, _ = client
    clock_on(SITE, at)
    gateway = gateway_ip(SITE)
    for name in STREAMING:
        answer = L.dig(ns, gateway, name)
        if blocked:
            assert answer == [gateway], f"{at}: {name} must lead to the gateway's block page, got {answer}"
        else:
            assert answer and answer != [gateway], f"{at}: {name} must resolve, got {answer}"


def test_humas_keeps_social_media_while_the_hospital_never_streams(client, clock_on):
    ns, _ = client
    clock_on(SITE, "2026-11-23 10:00")
    assert L.dig(ns, gateway_ip(SITE), "instagram.com") != [gateway_ip(SITE)]
    [(rsud_ns, _)] = L.clients(OTHER, 1)
    clock_on(OTHER, "2026-11-29 22:00")  # Sunday night
    assert L.dig(rsud_ns, gateway_ip(OTHER), "vidio.com") == [gateway_ip(OTHER)]


def test_government_apps_always_resolve_to_their_servers(client, clock_on):
    ns, _ = client
    clock_on(SITE, "2026-11-23 10:00")
    names = L.state()["internet"]["names"]
    for domain in ["simral.serangkota.go.id", "lpse.serangkota.go.id", "srikandi.arsip.go.id"]:
        assert L.dig(ns, gateway_ip(SITE), domain) == [names[domain]]
    # ... and their addresses join the shaping priority set (dnsmasq nftset).
    out = L.on_gateway(SITE, "nft", "list", "set", "inet", "gerbang", "govapp_v4").stdout
    assert names["lpse.serangkota.go.id"] in out


def test_another_dns_server_still_gets_the_gateways_answer(client, clock_on):
    ns, _ = client
    clock_on(SITE, "2026-11-23 10:00")
    gateway = gateway_ip(SITE)
    for server in ["8.8.8.8", "1.1.1.1", L.upstream()[1]]:
        assert L.dig(ns, server, "vidio.com") == [gateway], f"UDP to {server}"
        assert L.dig(ns, server, "vidio.com", tcp=True) == [gateway], f"TCP to {server}"


def test_safesearch_names_resolve_to_the_safe_endpoints(client, clock_on):
    ns, _ = client
    clock_on(SITE, "2026-11-23 17:00")  # outside working hours: youtube is not blocked
    expected = {t["engine"]: t["address"] for t in L.compiled_site(SITE)["safe_mode"]["safesearch_targets"]}
    # Google's guide: www.google.com and every country domain (the neighbours' ones too).
    for name in ("www.google.com", "www.google.co.id", "google.co.id", "www.google.com.sg", "www.google.com.my", "www.google.co.uk"):
        assert L.dig(ns, gateway_ip(SITE), name) == [expected["google"]], name
    assert L.dig(ns, gateway_ip(SITE), "www.bing.com") == [expected["bing"]]
    assert L.dig(ns, gateway_ip(SITE), "www.youtube.com") == [expected["youtube"]]
    assert L.dig(ns, gateway_ip(SITE), "duckduckgo.com") == [expected["duckduckgo"]]
    assert L.dig(ns, gateway_ip(SITE), "maps.google.com") != [expected["google"]], "only the listed names"


def test_trustpositif_domains_are_blocked_at_any_time(client):
    """TRUST+ names (and their subdomains) do not exist for office devices (local=/name/: NXDOMAIN).

    NXDOMAIN rather than the block page: the list has ~2 million names and `local=` is the
    cheapest form (bench/dnsmasq_trustpositif.py: forwarding each name to the block responder
    takes twice the start-up, three times the memory and the window-edge pause; docs/access.md).
    """
    ns, _ = client
    listed = [line.strip() for line in (L.REPO / "files/trustpositif/domains.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed
    for name in listed + ["www." + listed[0]]:
        out = L.in_ns(ns, "dig", "+time=2", "+tries=1", f"@{gateway_ip(SITE)}", name).stdout
        assert "status: NXDOMAIN" in out, f"{name}: {out}"


def test_dns_over_tls_https_and_quic_are_closed(client):
    ns, _ = client
    web = L.state()["internet"]["public_web"]
    inet_ns = L.state()["internet"]["ns"]
    # The stand-in internet does listen there (seen from inside it) ...
    assert "open" in L.in_ns(inet_ns, "python3", "-c", TCP_PROBE, web, "853").stdout
    assert "quic?" in L.in_ns(inet_ns, "python3", "-c", UDP_PROBE, web, "443").stdout
    # ... but not for an office device.
    assert "closed" in L.in_ns(ns, "python3", "-c", TCP_PROBE, web, "853").stdout
    assert "no-answer" in L.in_ns(ns, "python3", "-c", UDP_PROBE, web, "443").stdout
    doh = L.compiled_site(SITE)["doh_addresses"][0]
    assert "closed" in L.in_ns(ns, "python3", "-c", TCP_PROBE, doh, "443").stdout
    # A DoH resolver's name resolves (so dnsmasq learns its current address: nftset=) and that
    # address is closed on 443, also when it is not in the policy's address list.
    learnt = L.dig(ns, gateway_ip(SITE), "dns.google")
    assert learnt and learnt != [gateway_ip(SITE)]
    assert learnt[0] in L.on_gateway(SITE, "nft", "list", "set", "inet", "gerbang", "doh_dns_v4").stdout
    assert "closed" in L.in_ns(ns, "python3", "-c", TCP_PROBE, learnt[0], "443").stdout


def test_no_dns_or_proxy_answers_on_the_wan():
    site = L.compiled_site(SITE)
    inet_ns = L.state()["internet"]["ns"]
    assert L.dig(inet_ns, site["wan"]["ip"], "kompas.com") == []
    for port in (3128, 3129, 3130, 53):
        assert "closed" in L.in_ns(inet_ns, "python3", "-c", TCP_PROBE, site["wan"]["ip"], str(port)).stdout


def test_per_device_counters_count_a_download(client):
    ns, ip = client
    device = next(d for d in L.compiled_site(SITE)["devices"] if d["ip"] == ip)

    def down_bytes():
        out = L.on_gateway(SITE, "nft", "list", "counter", "inet", "gerbang", f"dev{device['host_index']}_down").stdout
        return int(out.split("bytes")[1].split()[0])

    before = down_bytes()
    rc, status, _ = L.curl(ns, "http://kompas.com/bytes/2000000", resolve_to=L.dig(ns, gateway_ip(SITE), "kompas.com")[0],
                           timeout=30, extra=["-o", "/dev/null"])
    assert (rc, status) == (0, "200")
    assert down_bytes() - before >= 2_000_000


def test_the_schedule_switch_keeps_dhcp_state(client, clock_on):
    ns, ip = client
    pid_before = L.on_gateway(SITE, "systemctl", "show", "-p", "MainPID", "dnsmasq").stdout
    leases_before = L.on_gateway(SITE, "cat", "/var/lib/misc/dnsmasq.leases").stdout
    clock_on(SITE, "2026-11-23 07:00")
    clock_on(SITE, "2026-11-23 16:00")
    assert L.on_gateway(SITE, "systemctl", "show", "-p", "MainPID", "dnsmasq").stdout == pid_before
    assert ip in leases_before
    assert ip in L.on_gateway(SITE, "cat", "/var/lib/misc/dnsmasq.leases").stdout


def test_timer_switches_within_a_minute_of_the_edge():
    """The live state matches the compiled decision for the gateway's current minute."""
    from gerbang_kota.schedule import active_blocks  # noqa: PLC0415

    shown = json.loads(L.on_gateway(SITE, "gerbang-dns-schedule", "--print").stdout)["blocked"]
    now = dt.datetime.now(dt.timezone.utc)
    expected = active_blocks(L.compiled_site(SITE), now)
    if shown != expected:  # a window edge passed between the two reads
        now = dt.datetime.now(dt.timezone.utc)
        expected = active_blocks(L.compiled_site(SITE), now)
    assert shown == expected
    # ... and the live DNS answer follows it.
    [(ns, _)] = L.clients(SITE, 1)
    blocked_now = "streaming" in json.loads(L.on_gateway(SITE, "gerbang-dns-schedule", "--print").stdout)["blocked"]
    assert (L.dig(ns, gateway_ip(SITE), "vimeo.com") == [gateway_ip(SITE)]) == blocked_now
    assert L.on_gateway(SITE, "systemctl", "is-active", "gerbang-dns-schedule.timer").stdout.strip() == "active"
