"""dnsmasq on a lab gateway, from its clients' point of view (diskominfo, after converge).

Clients are real network namespaces on the gateway's LAN (DHCP with dhclient, DNS with dig);
upstream answers come from the lab's stand-in internet. Schedule edges are set with the
gateway's own switcher (`gerbang-dns-schedule --at`, the program its timer runs every minute);
the timer is paused while a test holds a chosen time and the real state is restored after.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

REPO = Path(__file__).resolve().parents[5]
sys.path.insert(0, str(REPO / "tests/lab"))
sys.path.insert(0, str(REPO / "lib"))

import labtools as L  # noqa: E402
from site_fixtures import client, site  # noqa: E402,F401 (fixtures, used by name)
from gerbang_kota.schedule import active_blocks  # noqa: E402

SITE = "diskominfo"
LEASES = "/var/lib/misc/dnsmasq.leases"
ROLE = REPO / "roles/dnsmasq"
# The role's own syntax check (what its deploy validates with), not a copy of it.
TEST_COMMAND = yaml.safe_load((ROLE / "vars/main.yml").read_text(encoding="utf-8"))["__dnsmasq_test_command"]
BROKEN = "no-such-option-gerbang-test=1\n"


@pytest.fixture
def clock():
    """Hold DNS blocking at a chosen local time; afterwards back to the real time and timer."""
    held = []

    def hold(at: str) -> None:
        if not held:
            L.on_gateway(SITE, "systemctl", "stop", "gerbang-dns-schedule.timer")
        held.append(at)
        result = L.on_gateway(SITE, "gerbang-dns-schedule", "--at", at)
        assert result.returncode == 0, result.stderr

    yield hold
    if held:
        L.on_gateway(SITE, "gerbang-dns-schedule")
        L.on_gateway(SITE, "systemctl", "start", "gerbang-dns-schedule.timer")


def answer(ns: str, site: dict, name: str, server: str | None = None) -> list[str]:
    return L.dig(ns, server or site["lan"]["address"], name)


def upstream_answer(name: str) -> list[str]:
    """What the lab's internet resolver says (asked from the gateway, bypassing its dnsmasq)."""
    upstream = L.compiled_site(SITE)["dns"]["upstream"][0]
    out = L.on_gateway(SITE, "dig", "+short", "+time=2", "+tries=1", f"@{upstream}", name).stdout
    return [line for line in out.split() if line and not line.startswith(";")]


def safe_address(site: dict, name: str) -> str:
    return next(t["address"] for t in site["safe_mode"]["safesearch_targets"] if name in t["names"])


def main_pid() -> str:
    return L.on_gateway(SITE, "systemctl", "show", "-p", "MainPID", "--value", "dnsmasq").stdout.strip()


def test_config_passes_dnsmasq_test(host):
    assert "{{" not in TEST_COMMAND
    result = host.run(TEST_COMMAND)
    assert result.rc == 0, result.stderr
    # The Debian unit's own ExecStartPre check agrees.
    assert host.run("/usr/share/dnsmasq/systemd-helper checkconfig").rc == 0
    assert host.service("dnsmasq").is_running
    assert host.service("gerbang-dns-block").is_running
    assert host.service("gerbang-dns-schedule.timer").is_running


def test_registered_device_gets_its_fixed_lease(client, site):
    ns, ip = client
    device = next(d for d in site["devices"] if d["ip"] == ip)
    started = time.monotonic()
    assert L.dhcp(ns) == device["ip"]
    print(f"lease in {time.monotonic() - started:.2f} s")
    route = L.in_ns(ns, "ip", "route", "show", "default").stdout
    assert f"via {site['lan']['address']}" in route


def test_unregistered_device_gets_no_lease():
    stranger = L.unregistered_client(SITE)
    assert L.dhcp(stranger["ns"], timeout=6) is None
    log = L.on_gateway(SITE, "grep", "-c", f"{stranger['mac']} ignored", "/var/log/dnsmasq.log").stdout.strip()
    assert int(log or 0) >= 1


def test_registered_device_reaches_the_upstream_through_the_gateway(client, site):
    ns, _ip = client
    expected = upstream_answer("detik.com")
    assert expected, "the lab internet should know detik.com"
    assert answer(ns, site, "detik.com") == expected


@pytest.mark.parametrize("at, blocked", [
    ("2025-01-06 06:59", False),   # Monday, a minute before the window
    ("2025-01-06 07:00", True),    # the window opens
    ("2025-01-06 15:59", True),    # last minute inside
    ("2025-01-06 16:00", False),   # the window closed
    ("2025-01-11 10:00", False),   # Saturday
])
def test_streaming_blocked_only_in_working_hours(client, site, clock, at, blocked):
    ns, _ip = client
    assert ("streaming" in active_blocks(site, dt.datetime.fromisoformat(at))) == blocked
    clock(at)
    block_ip = site["block_page"]["ip"]
    # youtube.com is also a SafeSearch name: outside the window it gets the safe endpoint.
    assert answer(ns, site, "youtube.com") == ([block_ip] if blocked else [safe_address(site, "youtube.com")])
    vimeo = answer(ns, site, "vimeo.com")
    assert (vimeo == [block_ip]) if blocked else (vimeo == upstream_answer("vimeo.com") and vimeo != [block_ip])


def test_the_switch_at_the_real_time_agrees_with_the_decision_function(client, site):
    ns, _ip = client
    L.on_gateway(SITE, "gerbang-dns-schedule")
    decided = json.loads(L.on_gateway(SITE, "gerbang-dns-schedule", "--print").stdout)
    now = dt.datetime.now(ZoneInfo(site["timezone"]))
    if now.strftime("%Y-%m-%d %H:%M") != decided["at"]:
        pytest.skip("the minute turned between the two readings")
    assert decided["blocked"] == active_blocks(site, now)
    blocked = "streaming" in decided["blocked"]
    assert (answer(ns, site, "vimeo.com") == [site["block_page"]["ip"]]) == blocked


def test_games_blocked_at_any_time(client, site, clock):
    ns, _ip = client
    for at in ("2025-01-06 03:00", "2025-01-12 20:00"):
        clock(at)
        assert answer(ns, site, "roblox.com") == [site["block_page"]["ip"]]
        assert answer(ns, site, "www.roblox.com") == [site["block_page"]["ip"]]


def test_government_apps_always_resolve_and_fill_the_priority_set(client, site, clock):
    ns, _ip = client
    clock("2025-01-06 10:00")
    name = site["govapp_domains"][0]
    resolved = answer(ns, site, name)
    assert resolved and resolved == upstream_answer(name)
    elements = L.on_gateway(SITE, "nft", "list", "set", "inet", "gerbang", "govapp_v4").stdout
    assert resolved[0] in elements


def test_safesearch_names_get_the_safe_endpoints(client, site, clock):
    ns, _ip = client
    clock("2025-01-06 10:00")   # streaming blocked: YouTube names get the block instead
    for target in site["safe_mode"]["safesearch_targets"]:
        if target["engine"] == "youtube":
            continue
        for name in target["names"]:
            assert answer(ns, site, name) == [target["address"]], name


def test_trustpositif_names_do_not_resolve(client, site):
    ns, _ip = client
    listed = (REPO / "files/trustpositif/domains.txt").read_text(encoding="utf-8").split()[0]
    out = L.in_ns(ns, "dig", "+time=2", "+tries=1", f"@{site['lan']['address']}", listed).stdout
    assert "status: NXDOMAIN" in out


def test_another_dns_server_still_gets_the_gateways_answer(client, site, clock):
    ns, _ip = client
    clock("2025-01-06 10:00")
    assert answer(ns, site, "youtube.com", server="8.8.8.8") == [site["block_page"]["ip"]]


def test_blocked_lookups_are_logged_for_monitoring(client, site, clock):
    ns, _ip = client
    clock("2025-01-06 10:00")
    answer(ns, site, "netflix.com")
    time.sleep(0.5)   # log-async
    log = L.on_gateway(SITE, "tail", "-n", "200", "/var/log/dnsmasq.log").stdout
    assert "forwarded netflix.com to 127.0.0.1" in log
    assert "query[A] netflix.com from" in log


def test_switching_keeps_the_process_and_the_leases(client, site, clock):
    ns, ip = client
    pid, leases = main_pid(), L.on_gateway(SITE, "cat", LEASES).stdout
    assert ip in leases
    for at in ("2025-01-06 10:00", "2025-01-06 17:00", "2025-01-07 08:00"):
        clock(at)
    assert main_pid() == pid, "a schedule switch must be a SIGHUP, not a restart"
    assert ip in L.on_gateway(SITE, "cat", LEASES).stdout
    assert L.dhcp(ns) == ip


def test_validation_reads_what_the_service_reads(host):
    """A broken file in /etc/dnsmasq.d (where gerbang.conf and, through it, TRUST+ live) fails
    the role's check, as it fails the service's start; `.dpkg-old` files are skipped by both."""
    broken, skipped = "/etc/dnsmasq.d/zz-gerbang-broken-test.conf", "/etc/dnsmasq.d/zz-gerbang-test.conf.dpkg-old"
    try:
        host.run(f"printf '%s' '{BROKEN}' > {broken}")
        result = host.run(TEST_COMMAND)
        assert result.rc != 0 and broken in result.stderr, result.stderr
        assert host.run("/usr/share/dnsmasq/systemd-helper checkconfig").rc != 0
        host.run(f"mv {broken} {skipped}")
        assert host.run(TEST_COMMAND).rc == 0
        assert host.run("/usr/share/dnsmasq/systemd-helper checkconfig").rc == 0
    finally:
        host.run(f"rm -f {broken} {skipped}")
    assert host.run(TEST_COMMAND).rc == 0
    assert host.service("dnsmasq").is_running


def test_a_broken_config_is_rolled_back_by_the_deploy(host):
    """The deploy module with the role's validation: a bad gerbang.conf plus a new bad file in
    /etc/dnsmasq.d fail the task, both are rolled back, dnsmasq is not touched."""
    live = "/etc/dnsmasq.d/gerbang.conf"
    extra = "/etc/dnsmasq.d/zz-gerbang-rollback-test.conf"
    before, pid = host.file(live).sha256sum, main_pid()
    play = [{
        "hosts": SITE, "gather_facts": False,
        "tasks": [
            {"name": "Read the live config", "ansible.builtin.slurp": {"src": live}, "register": "live"},
            {"name": "Deploy a broken config", "gerbang_deploy": {
                "files": [
                    {"path": live, "content": "{{ live.content | b64decode }}" + BROKEN},
                    {"path": extra, "content": BROKEN},
                ],
                "validate": TEST_COMMAND,
                "service": "dnsmasq",
                "on_change": "restart",
            }},
        ],
    }]
    with tempfile.NamedTemporaryFile("w", prefix="gerbang-rollback-", suffix=".yml", delete=False) as handle:
        yaml.safe_dump(play, handle)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LIBRARY=str(REPO / "plugins/modules"),
               ANSIBLE_MODULE_UTILS=str(REPO / "plugins/module_utils"),
               ANSIBLE_NOCOLOR="1")
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(REPO / "inventory/lab"),
             "--limit", SITE, handle.name],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        os.unlink(handle.name)
        host.run(f"rm -f {extra}")   # only if the rollback failed
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "all files were rolled back" in out and "bad option at line" in out and live in out, out
    assert host.file(live).sha256sum == before
    assert not host.file(extra).exists
    assert main_pid() == pid, "a failed validation must not restart dnsmasq"
    assert host.run(TEST_COMMAND).rc == 0


def test_a_stale_pid_file_is_never_signalled(client, site, clock):
    """The switcher signals dnsmasq's main process as systemd knows it, not whatever process
    /run/dnsmasq/dnsmasq.pid names (a sleep here: SIGHUP would end it)."""
    ns, _ip = client
    pid_file = "/run/dnsmasq/dnsmasq.pid"
    unit = "gerbang-test-stale-pid"
    saved = L.on_gateway(SITE, "cat", pid_file).stdout
    L.on_gateway(SITE, "systemctl", "stop", f"{unit}.service")
    assert L.on_gateway(SITE, "systemd-run", f"--unit={unit}", "sleep", "600").returncode == 0
    try:
        sleeper = L.on_gateway(SITE, "systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()
        assert sleeper not in ("", "0")
        clock("2025-01-06 06:00")      # nothing blocked but games
        L.on_gateway(SITE, "sh", "-c", f"echo {sleeper} > {pid_file}")
        clock("2025-01-06 10:00")      # streaming blocked: dnsmasq must re-read the servers-file
        assert answer(ns, site, "vimeo.com") == [site["block_page"]["ip"]], "dnsmasq was not signalled"
        assert L.on_gateway(SITE, "systemctl", "is-active", unit).stdout.strip() == "active", \
            "the switcher signalled the process a stale pid file names"
    finally:
        L.on_gateway(SITE, "sh", "-c", f"printf '%s' '{saved}' > {pid_file}")
        L.on_gateway(SITE, "systemctl", "stop", f"{unit}.service")
