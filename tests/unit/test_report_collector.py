"""The gateway's metrics collector (roles/monitoring_agent/files/gerbang-metrics): parsing,
incremental log reading through rotation, and the exposition it writes."""

import importlib.machinery
import importlib.util
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles/monitoring_agent/files/gerbang-metrics"


def load():
    loader = importlib.machinery.SourceFileLoader("gerbang_metrics", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gerbang_metrics", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gm = load()

SQUID_LINES = [
    "2026-11-23T07:00:01+0700 10.20.16.12 diskominfo-pc-02 DENIED streaming 403 2093 GET youtube.com - TCP_DENIED",
    "2026-11-23T15:57:14+0700 10.20.16.11 diskominfo-pc-01 DENIED games 0 0 CONNECT 198.51.100.10 roblox.com NONE_NONE",
    "2026-11-23T15:57:15+0700 10.20.16.11 diskominfo-pc-01 ALLOWED govapp 200 342 GET simral.serangkota.go.id - TCP_MISS",
    "2026-11-23T15:56:58+0700 10.20.16.250 - DENIED unregistered 403 1620 GET example.org - TCP_DENIED",
    "2026-11-23T15:58:00+0700 10.20.16.11 diskominfo-pc-01 ALLOWED - 200 2000250 GET kompas.com:80 - TCP_MISS",
]
QDISCS = [
    {"kind": "htb", "handle": "1:", "root": True, "bytes": 5000, "packets": 10, "drops": 1, "overlimits": 3},
    {"kind": "pfifo", "handle": "10b:", "parent": "1:10b", "bytes": 3000, "packets": 5, "drops": 1, "overlimits": 0},
    {"kind": "pfifo", "handle": "2:", "parent": "1:2", "bytes": 1500, "packets": 3},
    {"kind": "pfifo", "handle": "3:", "parent": "1:3", "bytes": 500, "packets": 2},
    {"kind": "pfifo", "handle": "99:", "parent": "1:999", "bytes": 7},
]


def test_squid_lines_parse_per_docs_squid_md():
    entries = [gm.parse_squid_line(line) for line in SQUID_LINES]
    assert [e["decision"] for e in entries] == ["denied", "denied", "allowed", "denied", "allowed"]
    assert [e["category"] for e in entries] == ["streaming", "games", "govapp", "unregistered", "none"]
    assert [e["domain"] for e in entries] == ["youtube.com", "roblox.com", "simral.serangkota.go.id", "example.org", "kompas.com"]
    assert entries[3]["device"] == "unregistered"
    assert entries[4]["bytes"] == 2000250
    assert gm.parse_squid_line("garbage line") is None


def test_tc_counters_label_site_govapp_default_and_devices():
    counters = gm.tc_counters(QDISCS, {"1:2": ("govapp", ""), "1:3": ("default", ""), "1:10b": ("device", "pc-01")})
    assert counters[("site", "")]["bytes"] == 5000
    assert counters[("device", "pc-01")]["drops"] == 1
    assert counters[("govapp", "")]["bytes"] == 1500
    assert len(counters) == 4   # the unknown class 1:999 is not exported


def test_nft_counters_map_host_index_to_device():
    nft = {"nftables": [{"metainfo": {}},
                        {"counter": {"family": "inet", "table": "gerbang", "name": "dev11_down", "packets": 4, "bytes": 4000}},
                        {"counter": {"family": "inet", "table": "gerbang", "name": "dev11_up", "packets": 2, "bytes": 200}},
                        {"counter": {"family": "inet", "table": "gerbang", "name": "bypass_rejected", "packets": 1, "bytes": 60}},
                        {"counter": {"family": "inet", "table": "gerbang", "name": "dev99_up", "packets": 1, "bytes": 1}}]}
    assert gm.nft_device_counters(nft, {11: "pc-01"}) == {("pc-01", "download"): {"bytes": 4000, "packets": 4},
                                                          ("pc-01", "upload"): {"bytes": 200, "packets": 2}}


def test_active_neighbours_only_recent_lan_addresses():
    neigh = [{"dst": "10.20.16.11", "state": ["REACHABLE"]}, {"dst": "10.20.16.12", "state": ["STALE"]},
             {"dst": "10.20.16.13", "state": ["FAILED"]}, {"dst": "100.64.0.1", "state": ["REACHABLE"]},
             {"dst": "10.20.16.1", "state": ["PERMANENT", "NOARP"]}, {"dst": "fe80::1", "state": ["REACHABLE"]}]
    assert gm.active_neighbours(neigh, "10.20.16.0/24", {"10.20.16.1"}) == {"10.20.16.11", "10.20.16.12"}


LOCAL = ("diskominfo.gerbang.lan", "gerbang.lan", "in-addr.arpa")
DNS_LOG = """Nov 23 09:29:37 dnsmasq[779]: 1 10.20.16.11/35674 query[A] roblox.com from 10.20.16.11
Nov 23 09:29:37 dnsmasq[779]: 1 10.20.16.11/35674 forwarded roblox.com to 127.0.0.1#5354
Nov 23 09:29:37 dnsmasq[779]: 1 10.20.16.11/35674 reply roblox.com is 10.20.16.1
Nov 23 09:29:37 dnsmasq[779]: 2 10.20.16.11/58902 query[AAAA] www.roblox.com from 10.20.16.11
Nov 23 09:29:37 dnsmasq[779]: 2 10.20.16.11/58902 reply error is REFUSED
Nov 23 09:29:37 dnsmasq[779]: 3 10.20.16.11/48027 query[A] www.roblox.com from 10.20.16.11
Nov 23 09:29:37 dnsmasq[779]: 3 10.20.16.11/48027 cached www.roblox.com is 10.20.16.1
Nov 23 09:29:38 dnsmasq[779]: 7 10.20.16.11/33580 query[A] kompas.com from 10.20.16.11
Nov 23 09:29:38 dnsmasq[779]: 7 10.20.16.11/33580 reply kompas.com is 100.64.0.10
Nov 23 09:29:38 dnsmasq[779]: 8 10.20.16.11/46895 query[A] gateway.diskominfo.gerbang.lan from 10.20.16.11
Nov 23 09:29:38 dnsmasq[779]: 8 10.20.16.11/46895 config gateway.diskominfo.gerbang.lan is 10.20.16.1
Nov 23 09:29:39 dnsmasq[779]: 9 10.20.16.11/46896 query[A] judi-slot-contoh.test from 10.20.16.11
Nov 23 09:29:39 dnsmasq[779]: 9 10.20.16.11/46896 config judi-slot-contoh.test is NXDOMAIN
Nov 23 09:29:40 dnsmasq[779]: query[A] youtube.com from 10.20.16.12
Nov 23 09:29:40 dnsmasq[779]: cached youtube.com is 10.20.16.1
Nov 23 09:29:41 dnsmasq[779]: 10 10.20.16.11/46897 reply nosuch.example is NXDOMAIN
"""


def test_dns_log_counts_queries_and_blocked_answers():
    categories = {"games": ["roblox.com"], "streaming": ["youtube.com"]}
    events = [gm.parse_dns_line(line, "10.20.16.1", LOCAL, categories, "trustpositif") for line in DNS_LOG.splitlines()]
    assert sum(1 for e in events if e == ("query", None)) == 7
    assert [e[1] for e in events if e and e[0] == "blocked"] == ["games", "games", "trustpositif", "streaming"]


def test_log_reading_is_incremental_and_follows_rotation(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("one\ntwo\npart")
    lines, position = gm.read_new_lines(str(log), {})
    assert lines == ["one", "two"]
    with log.open("a") as handle:
        handle.write("ial\nthree\n")
    lines, position = gm.read_new_lines(str(log), position)
    assert lines == ["partial", "three"]
    with log.open("a") as handle:
        handle.write("four\n")
    os.rename(log, tmp_path / "access.log.1")          # logrotate: the rest of the old file is still read
    log.write_text("five\n")
    lines, position = gm.read_new_lines(str(log), position)
    assert lines == ["four", "five"]
    log.write_text("")                                 # copytruncate
    assert gm.read_new_lines(str(log), position)[0] == []
    assert gm.read_new_lines(str(tmp_path / "missing.log"), {}) == ([], {})
    # A different log path (configuration change) starts from its beginning.
    other = tmp_path / "other.log"
    other.write_text("x\n")
    assert gm.read_new_lines(str(other), position)[0] == ["x"]


def test_state_of_an_older_collector_is_upgraded(tmp_path):
    cfg = config(tmp_path)
    text, state = gm.collect(cfg, {"dns": {"position": {}, "blocked": {"games": 3}}, "squid": {"position": {}}}, 5.0, fake_commands(1))
    assert 'gerbang_dns_blocked_total{site="diskominfo",category="games"} 3' in text
    assert state["dns"]["queries"] == 0


def config(tmp_path):
    return {
        "site": "diskominfo", "title": "Dinas Kominfo", "groups": ["dinas", "gateways"],
        "lan_interface": "eth1", "lan_subnet": "10.20.16.0/24", "lan_address": "10.20.16.1", "wan_interface": "eth0",
        "allocation": {"download": {"rate": 6, "ceil": 10}, "upload": {"rate": 6, "ceil": 10}},
        "devices": [{"name": "diskominfo-pc-01", "ip": "10.20.16.11", "host_index": 11, "classid": "1:10b"}],
        "categories": {"games": ["roblox.com"]}, "dns_unlisted_category": "trustpositif",
        "squid_log": str(tmp_path / "access.log"), "dnsmasq_log": str(tmp_path / "dnsmasq.log"), "dns_local_suffixes": list(LOCAL),
        "top_domains": 2, "state_domains_max": 3,
        "state_file": str(tmp_path / "state.json"), "textfile": str(tmp_path / "out" / "gerbang.prom"),
    }


def fake_commands(tc_bytes: int):
    """Stand-ins for tc/nft/ip: the collector's own parsing is what is under test here."""
    def run(argv):
        if argv[0] == "tc":
            return [{**QDISCS[0], "bytes": tc_bytes}, QDISCS[1]]
        if argv[0] == "nft":
            return {"nftables": [{"counter": {"name": "dev11_down", "bytes": 9, "packets": 1}}]}
        if argv[0] == "ip":
            return [{"dst": "10.20.16.11", "state": ["REACHABLE"]}, {"dst": "10.20.16.77", "state": ["STALE"]}]
        raise AssertionError(argv)
    return run


def test_collect_accumulates_log_counts_and_bounds_domains(tmp_path):
    cfg = config(tmp_path)
    Path(cfg["squid_log"]).write_text("\n".join(SQUID_LINES) + "\n")
    Path(cfg["dnsmasq_log"]).write_text(DNS_LOG)
    text, state = gm.collect(cfg, {}, 1000.0, fake_commands(5000))
    assert 'gerbang_proxy_requests_total{site="diskominfo",decision="denied",category="games"} 1' in text
    assert 'gerbang_dns_blocked_total{site="diskominfo",category="games"} 2' in text
    assert 'gerbang_dns_queries_total{site="diskominfo"} 7' in text
    # First run: nothing is known to have moved yet; the unregistered neighbour counts.
    assert 'gerbang_devices_active{site="diskominfo"} 1' in text
    assert 'gerbang_devices_active_unregistered{site="diskominfo"} 1' in text
    assert "gerbang_device_last_active_timestamp_seconds" not in text
    # Blocked look-ups by asking device: the registered address by name, a line without
    # log-queries=extra's client as unknown; the exposition's per-device sum is the total.
    assert 'gerbang_dns_device_blocked_total{site="diskominfo",device="diskominfo-pc-01",category="games"} 2' in text
    assert 'gerbang_dns_device_blocked_total{site="diskominfo",device="diskominfo-pc-01",category="trustpositif"} 1' in text
    assert 'gerbang_dns_device_blocked_total{site="diskominfo",device="unknown",category="other"} 1' in text
    # Proxy bytes per device and decision (the unregistered client's denial included).
    assert 'gerbang_proxy_device_bytes_total{site="diskominfo",device="diskominfo-pc-01",decision="allowed"} 2000592' in text
    assert 'gerbang_proxy_device_bytes_total{site="diskominfo",device="unregistered",decision="denied"} 1620' in text
    assert 'gerbang_device_bytes_total{site="diskominfo",device="diskominfo-pc-01",direction="download"} 9' in text
    assert 'gerbang_allocation_bits{site="diskominfo",direction="download",kind="ceil"} 10000000' in text
    assert text.count("# TYPE gerbang_tc_bytes_total counter") == 1
    assert len(state["squid"]["domains"]) == 3     # state_domains_max
    assert text.count("gerbang_proxy_domain_requests_total{") == 2   # top_domains
    # Second run: the same log lines are not counted again, new ones are; rate from tc bytes.
    with open(cfg["squid_log"], "a") as handle:
        handle.write(SQUID_LINES[1] + "\n")
    state = json.loads(json.dumps(state))           # survives the state file
    text, state = gm.collect(cfg, state, 1010.0, fake_commands(5000 + 12500))
    assert 'gerbang_proxy_requests_total{site="diskominfo",decision="denied",category="games"} 2' in text
    assert 'gerbang_tc_rate_bits{site="diskominfo",direction="download",class="site",device=""} 10000' in text
    assert 'gerbang_collector_source_up{site="diskominfo",source="squid_log"} 1' in text
    assert 'gerbang_proxy_device_bytes_total{site="diskominfo",device="diskominfo-pc-01",decision="denied"} 0' in text


def test_devices_are_active_while_their_counters_move(tmp_path):
    cfg = {**config(tmp_path), "active_seconds": 60}
    nft = {"bytes": 9}

    def commands(argv):
        if argv[0] == "nft":
            return {"nftables": [{"counter": {"name": "dev11_down", "bytes": nft["bytes"], "packets": 1}}]}
        if argv[0] == "ip":   # the neighbour table lists the device all along (STALE for hours)
            return [{"dst": "10.20.16.11", "state": ["STALE"]}]
        return fake_commands(1)(argv)

    active = 'gerbang_devices_active{site="diskominfo"} '
    text, state = gm.collect(cfg, {}, 1000.0, commands)
    assert active + "0" in text
    nft["bytes"] = 5000
    text, state = gm.collect(cfg, state, 1015.0, commands)
    assert active + "1" in text
    assert 'gerbang_device_last_active_timestamp_seconds{site="diskominfo",device="diskominfo-pc-01"} 1015' in text
    text, state = gm.collect(cfg, state, 1070.0, commands)       # idle, still inside 60 s
    assert active + "1" in text
    text, state = gm.collect(cfg, state, 1080.0, commands)       # idle for 65 s
    assert active + "0" in text
    nft["bytes"] = 300                                            # ruleset reloaded (counter reset), then traffic
    text, state = gm.collect(cfg, state, 1095.0, commands)
    assert active + "1" in text


def test_dns_blocks_are_labelled_with_the_asking_device():
    by_ip, own = {"10.20.16.11": "diskominfo-pc-01"}, {"10.20.16.1"}
    line = "Nov 23 09:29:37 dnsmasq[779]: 1 {}/35674 reply roblox.com is 10.20.16.1"
    assert gm.dns_device(line.format("10.20.16.11"), by_ip, own) == "diskominfo-pc-01"
    assert gm.dns_device(line.format("10.20.16.99"), by_ip, own) == "unregistered"
    assert gm.dns_device(line.format("127.0.0.1"), by_ip, own) == "gateway"
    assert gm.dns_device(line.format("10.20.16.1"), by_ip, own) == "gateway"
    assert gm.dns_device("Nov 23 09:29:40 dnsmasq[779]: cached youtube.com is 10.20.16.1", by_ip, own) == "unknown"


def test_the_gateways_own_lookups_are_not_blocked_attempts(tmp_path):
    """Squid resolving a name it denies (through dnsmasq on 127.0.0.1) is the proxy denial's
    attempt again: labelled "gateway" per device, left out of gerbang_dns_blocked_total."""
    cfg = config(tmp_path)
    Path(cfg["dnsmasq_log"]).write_text(
        "Nov 23 09:29:37 dnsmasq[779]: 1 127.0.0.1/40000 reply roblox.com is 10.20.16.1\n"
        "Nov 23 09:29:38 dnsmasq[779]: 2 10.20.16.11/40001 reply roblox.com is 10.20.16.1\n")
    text, _state = gm.collect(cfg, {}, 1000.0, fake_commands(1))
    assert 'gerbang_dns_blocked_total{site="diskominfo",category="games"} 1' in text
    assert 'gerbang_dns_device_blocked_total{site="diskominfo",device="gateway",category="games"} 1' in text
    assert 'gerbang_dns_device_blocked_total{site="diskominfo",device="diskominfo-pc-01",category="games"} 1' in text


def test_collector_main_writes_textfile_and_state(tmp_path):
    cfg = config(tmp_path)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(cfg))
    assert gm.main(["--config", str(path)]) == 0   # tc/nft/ip of this machine; logs missing
    text = Path(cfg["textfile"]).read_text()
    assert 'gerbang_collector_source_up{site="diskominfo",source="squid_log"} 0' in text
    assert 'gerbang_site_info{site="diskominfo",title="Dinas Kominfo",groups="dinas,gateways"} 1' in text
    assert json.loads(Path(cfg["state_file"]).read_text())["time"] > 0
