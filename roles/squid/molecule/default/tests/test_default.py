"""Behaviour of the squid role on one gateway, seen from office PCs behind it.

prepare.yml wired the container: WAN eth0 <-> namespace sq-up (the upstream router, which also
runs upstream.py: any name's web site and a DNS that answers every name with its address),
LAN eth1 <-> namespace sq-lan (client addresses). Clients resolve names with curl --resolve to
the stand-in internet, as a PC resolving through the city's DNS would.

The nftables role is not part of this scenario: the `nft_redirects` fixture installs, inside the
gateway, the redirects that role provides in the city (LAN tcp/80 -> 3129, tcp/443 -> 3130,
docs/architecture.md), plus redirects of the second client to a clock-shifted copy of Squid
(libfaketime) that proves the schedule edges with the role's own rendered squid.conf.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "lib"))
from gerbang_kota.schedule import active_blocks  # noqa: E402

LAN_NS, UP_NS = "sq-lan", "sq-up"
TEST_PORTS = {3128: 13128, 3129: 13129, 3130: 13130}
FAKETIME_PID = "/run/gerbang-squid-faketime.pid"
SHIFTED_SQUID_PID = "/run/squid-faketime.pid"
ACCESS_LOG = "/var/log/squid/access.log"
FAKETIME_LOG = "/var/log/squid/access-faketime.log"
STREAMING = ["youtube.com", "vidio.com", "vimeo.com"]
# A games site (blocked at all hours) that is not on Chromium's HSTS preload list: for preloaded
# names (youtube.com, facebook.com, roblox.com, ...) a browser never sends plain HTTP, so it shows
# its own connection error instead of the block page (docs/squid.md, "What the user sees").
BROWSER_URL = "http://y8.com/"
CURL_EXIT_TLS_CUT = {35, 56}  # handshake cut by Squid's terminate (SSL_connect error / recv failure)


@pytest.fixture(scope="module")
def lab():
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "squid-site.json"
    data = json.loads(path.read_text())
    data["internet"] = data["site"]["wan"]["gateway"]
    data["live_client"], data["shifted_client"] = data["clients"]
    return data


@pytest.fixture(scope="module")
def nft_redirects(host, lab):
    """The nftables role's redirects, and the shifted client's redirects to the test ports."""
    shifted = lab["shifted_client"]
    ruleset = (
        "table ip squid_test {\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        f"    iifname \"eth1\" ip saddr {shifted} tcp dport 80 redirect to :{TEST_PORTS[3129]}\n"
        f"    iifname \"eth1\" ip saddr {shifted} tcp dport 443 redirect to :{TEST_PORTS[3130]}\n"
        "    iifname \"eth1\" tcp dport 80 redirect to :3129\n"
        "    iifname \"eth1\" tcp dport 443 redirect to :3130\n"
        "  }\n"
        "}\n")
    host.run("nft delete table ip squid_test")
    result = host.run(f"printf '%s' '{ruleset}' | nft -f -")
    assert result.rc == 0, result.stderr
    yield
    host.run("nft delete table ip squid_test")


def curl_argv(lab, url, client=None, *extra, timeout=5):
    """curl from a LAN client; the name resolves to the stand-in internet (like DNS would)."""
    name = re.match(r"https?://([^/:]+)", url).group(1)
    port = 443 if url.startswith("https") else 80
    return ["ip", "netns", "exec", LAN_NS, "curl", "-sS", "-k", "-m", str(timeout),
            "--interface", client or lab["live_client"], "--resolve", f"{name}:{port}:{lab['internet']}",
            *extra, url]


def curl(lab, url, client=None, *extra, timeout=5):
    proc = subprocess.run(curl_argv(lab, url, client, "-w", "\n%{http_code}", *extra, timeout=timeout),
                          capture_output=True, text=True, timeout=timeout + 5)
    body, _, code = proc.stdout.rpartition("\n")
    return proc.returncode, int(code or 0), body


def start_download(lab, url, client, seconds):
    """A slow download (one KiB a second) from a LAN client, running in the background."""
    cmd = curl_argv(lab, f"{url.rstrip('/')}/slow?seconds={seconds}", client,
                    "-o", "/dev/null", "-w", "%{http_code} %{size_download}", timeout=seconds + 20)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def log_lines(host, path, needle):
    return [line for line in host.file(path).content_string.splitlines() if needle in line]


def wait_for_log(host, path, needle, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = log_lines(host, path, needle)
        if lines:
            return lines
        time.sleep(0.2)
    return []


# --- the service ---------------------------------------------------------------------------------

def test_squid_runs_with_the_site_time_zone(host, lab):
    assert host.service("squid").is_enabled
    assert host.service("squid").is_running
    env = host.check_output("systemctl show squid -p Environment")
    assert f"TZ={lab['site']['timezone']}" in env


def test_listens_on_the_lan_address_only(host, lab):
    listening = host.check_output("ss -Hltn")
    lan = lab["site"]["lan"]["address"]
    for port in (3128, 3129, 3130):
        sockets = re.findall(rf"(\S+):{port}\s", listening)
        assert sockets == [lan], f"port {port} bound to {sockets}"


def test_no_open_proxy_towards_wan(lab):
    """The internet side reaching the LAN address gets a refusal, not a proxy."""
    lan = lab["site"]["lan"]["address"]
    proc = subprocess.run(["ip", "netns", "exec", UP_NS, "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                           "-x", f"http://{lan}:3128", "http://example.org/"], capture_output=True, text=True, timeout=10)
    assert proc.stdout == "403"
    wan_ip = lab["site"]["wan"]["ip"]
    proc = subprocess.run(["ip", "netns", "exec", UP_NS, "curl", "-sS", "-m", "5", "-x", f"http://{wan_ip}:3128",
                           "http://example.org/"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 7, "nothing may listen on the WAN address"


def test_bump_certificate_is_generated_on_the_gateway(host):
    cert = host.file("/etc/squid/gerbang/bump.pem")
    assert cert.exists and cert.user == "root" and cert.group == "proxy" and cert.mode == 0o640
    subject = host.check_output("openssl x509 -noout -subject -in /etc/squid/gerbang/bump.pem")
    assert "tidak untuk klien" in subject


def test_nothing_is_bumped_so_no_certificate_helper_runs(host):
    assert "security_file_certgen" not in host.check_output("ps -eo args")
    assert "sslcrtd_program" not in host.file("/etc/squid/squid.conf").content_string


def test_each_registered_device_marks_its_outgoing_connections(host, lab):
    """Uploads through the proxy leave from the gateway: Squid marks each device's connections
    (mark 0x47000000 + host index) so the nftables role can put them in the device's class."""
    conf = host.file("/etc/squid/squid.conf").content_string
    marks = dict(re.findall(r"^tcp_outgoing_mark (0x[0-9a-f]{8}) gerbang_dev_(\d+)$", conf, re.M))
    devices = lab["site"]["devices"]
    assert sorted(marks) == sorted(f"{0x47000000 + d['host_index']:#010x}" for d in devices)
    for device in devices:
        assert marks[f"{0x47000000 + device['host_index']:#010x}"] == str(device["host_index"]), device["name"]
        assert f"acl gerbang_dev_{device['host_index']} src {device['ip']}\n" in conf
    # Squid keeps CAP_NET_ADMIN for its kids (SO_MARK), as it does for interception.
    status = host.run("cat /proc/$(pgrep -u proxy -x squid | head -1)/status").stdout
    assert int(re.search(r"CapEff:\s+([0-9a-f]+)", status).group(1), 16) & (1 << 12), status


def test_logrotate_config_is_valid(host):
    assert host.run("logrotate -d /etc/logrotate.d/squid").rc == 0


# --- policy, live clock (rules that do not depend on the time of day) ----------------------------

def test_government_app_is_served_over_http_and_https(lab, nft_redirects):
    rc, code, body = curl(lab, "http://simral.serangkota.go.id/")
    assert (rc, code) == (0, 200) and "host=simral.serangkota.go.id" in body
    rc, code, body = curl(lab, "https://simral.serangkota.go.id/")
    assert (rc, code) == (0, 200) and "host=simral.serangkota.go.id" in body


def test_games_are_always_blocked_with_the_block_page(lab, nft_redirects):
    rc, code, body = curl(lab, "http://www.roblox.com/")
    assert code == 403
    site = lab["site"]
    assert site["block_page"]["title"] in body
    assert site["categories"]["games"]["title"] in body
    assert "Selalu: sepanjang waktu" in body
    assert "helpdesk@serangkota.go.id" in body and "Diskominfo" in body
    assert "http://www.roblox.com/" in body, "the page names the requested address"
    assert site["title"] in body


def test_games_over_https_are_cut_without_decrypting(lab, nft_redirects):
    rc, code, body = curl(lab, "https://roblox.com/")
    assert rc in CURL_EXIT_TLS_CUT and "upstream ok" not in body


def test_unregistered_device_is_refused_and_logged(host, lab, nft_redirects):
    rc, code, _ = curl(lab, "http://example.org/", client=lab["unregistered"])
    assert code == 403
    lines = wait_for_log(host, ACCESS_LOG, f" {lab['unregistered']} - DENIED unregistered ")
    assert lines and lines[-1].endswith(' "-"'), lines


def test_log_names_the_device_the_decision_and_the_category(host, lab, nft_redirects):
    device = next(d for d in lab["site"]["devices"] if d["ip"] == lab["live_client"])
    curl(lab, "http://www.roblox.com/log-check")
    curl(lab, "http://siapkeh.serangkota.go.id/log-check")
    denied = wait_for_log(host, ACCESS_LOG, f"{lab['live_client']} {device['name']} DENIED games 403 ")
    allowed = wait_for_log(host, ACCESS_LOG, f"{lab['live_client']} {device['name']} ALLOWED govapp 200 ")
    assert any("GET www.roblox.com" in line for line in denied)
    assert any("GET siapkeh.serangkota.go.id" in line for line in allowed)
    # time, client, device, decision, category, status, bytes, method, host, SNI, Squid status,
    # and last the device's owner from the registry, quoted (it may hold spaces)
    fields = re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \S+ (\S+) \S+ \S+ \d+ \d+ \S+ \S+ \S+ \S+ "(.*)"$', denied[-1])
    assert fields and fields.groups() == (device["name"], device["owner"]), denied[-1]
    assert allowed[-1].endswith(f' "{device["owner"]}"'), allowed[-1]


def test_https_log_line_carries_the_sni(host, lab, nft_redirects):
    curl(lab, "https://steampowered.com/")
    lines = wait_for_log(host, ACCESS_LOG, " DENIED games 0 0 CONNECT ")
    assert any(line.split()[9] == "steampowered.com" for line in lines)


def test_government_apps_are_never_cached(host, lab, nft_redirects):
    for _ in range(2):
        curl(lab, "http://lapor.go.id/cacheable")
        curl(lab, "http://example.net/cacheable")
    time.sleep(1)
    gov = [line.split()[10] for line in log_lines(host, ACCESS_LOG, "GET lapor.go.id")]
    other = [line.split()[10] for line in log_lines(host, ACCESS_LOG, "GET example.net")]
    assert gov[-2:] == ["TCP_MISS", "TCP_MISS"]
    assert other[-1] in ("TCP_MEM_HIT", "TCP_HIT"), "the control object must be cacheable, or this test proves nothing"


def test_reconfigure_keeps_a_running_download(host, lab, nft_redirects):
    pid_before = host.check_output("systemctl show squid -p MainPID --value")
    seconds = 6
    download = start_download(lab, "http://example.com/", None, seconds)
    time.sleep(2)
    assert host.run("systemctl reload squid").rc == 0
    out, err = download.communicate(timeout=40)
    assert download.returncode == 0, err
    assert out == f"200 {seconds * 1024}"
    assert host.check_output("systemctl show squid -p MainPID --value") == pid_before, "reload must not restart"
    assert "Reconfiguring Squid" in host.file("/var/log/squid/cache.log").content_string


# --- schedules: the same rendered squid.conf under a shifted clock -------------------------------

@pytest.fixture(scope="module")
def shifted_config(host):
    conf = host.file("/etc/squid/squid.conf").content_string
    for live, test in TEST_PORTS.items():
        conf = re.sub(rf"^(https?_port \S+):{live}\b", rf"\g<1>:{test}", conf, flags=re.M)
    conf = conf.replace(f"daemon:{ACCESS_LOG}", f"daemon:{FAKETIME_LOG}")
    conf += f"pid_filename {SHIFTED_SQUID_PID}\ncache_log /var/log/squid/cache-faketime.log\n"
    path = "/etc/squid/squid-faketime.conf"
    assert host.run(f"cat > {path} <<'SQUIDCONF'\n{conf}SQUIDCONF").rc == 0
    yield path
    host.run(f"rm -f {path}")


class ShiftedSquid:
    """A second Squid with the live config on test ports, started by libfaketime at `when`."""

    def __init__(self, host, config, timezone):
        self.host, self.config, self.timezone = host, config, timezone

    def __enter__(self):
        return self

    def start(self, when):
        self.stop()
        # setsid: the instance and its helpers form one process group, killed at once in stop()
        # (a transient systemd unit would wait for a cgroup-empty event this container never gets).
        cmd = (f"TZ={self.timezone} setsid faketime -f '@{when}' /usr/sbin/squid -N -n gerbangfaketime -f {self.config} "
               f"> /var/log/squid/faketime.out 2>&1 < /dev/null & echo $! > {FAKETIME_PID}")
        result = self.host.run(cmd)
        assert result.rc == 0, result.stderr
        for _ in range(50):
            if f":{TEST_PORTS[3130]} " in self.host.check_output("ss -Hltn"):
                return
            time.sleep(0.1)
        raise AssertionError(self.host.run("cat /var/log/squid/faketime.out /var/log/squid/cache-faketime.log").stdout[-3000:])

    def stop(self):
        # SIGKILL to Squid itself (its pid_filename): its helpers exit on the closed pipes, and the
        # faketime wrapper with it. The wrapper's process group is killed too, in case Squid never started.
        self.host.run(f"test -s {SHIFTED_SQUID_PID} && kill -KILL $(cat {SHIFTED_SQUID_PID}); "
                      f"test -s {FAKETIME_PID} && kill -KILL -$(cat {FAKETIME_PID}); rm -f {FAKETIME_PID} {SHIFTED_SQUID_PID}")
        for _ in range(50):
            if f":{TEST_PORTS[3130]} " not in self.host.check_output("ss -Hltn"):
                return
            time.sleep(0.1)
        raise AssertionError("the clock-shifted Squid did not stop")

    def __exit__(self, *_exc):
        self.stop()


# Monday 2026-11-23; jam_kerja = Mon-Fri 07:00-16:00 local time (the site's time zone).
EDGES = [
    ("2026-11-23 06:59:30", False, "half a minute before the window: served"),
    ("2026-11-23 07:00:01", True, "window opened: refused"),
    ("2026-11-23 15:59:30", True, "last minute of the window: refused"),
    ("2026-11-23 16:00:01", False, "window closed: served"),
    ("2026-11-28 10:00:00", False, "Saturday: served"),
]


@pytest.mark.parametrize("when,blocked,why", EDGES, ids=[e[0] for e in EDGES])
def test_streaming_follows_the_working_hours_window(host, lab, nft_redirects, shifted_config, when, blocked, why):
    # Squid and the compiled decision function (used by DNS and the reports) must agree.
    local = dt.datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(lab["site"]["timezone"]))
    assert ("streaming" in active_blocks(lab["site"], local)) == blocked
    client = lab["shifted_client"]
    with ShiftedSquid(host, shifted_config, lab["site"]["timezone"]) as squid:
        squid.start(when)
        for name in STREAMING:
            rc, code, body = curl(lab, f"http://{name}/", client=client)
            if blocked:
                assert code == 403 and "Video dan musik streaming" in body and "Jam kerja: Senin s.d. Jumat" in body, (name, why)
            else:
                assert (code, body.strip()) == (200, f"upstream ok host={name}"), (name, why)
            rc, code, body = curl(lab, f"https://{name}/", client=client)
            if blocked:
                assert rc in CURL_EXIT_TLS_CUT, (name, why, rc)
            else:
                assert (rc, code, body.strip()) == (0, 200, f"upstream ok host={name}"), (name, why)


def test_exception_group_humas_gets_social_media_in_working_hours(host, lab, nft_redirects, shifted_config):
    """diskominfo is in group humas: the city's social-media block does not apply there."""
    assert "social_media" not in [b["category"] for b in lab["site"]["blocks"]]
    with ShiftedSquid(host, shifted_config, lab["site"]["timezone"]) as squid:
        squid.start("2026-11-23 10:00:00")
        for url in ("http://facebook.com/", "https://www.instagram.com/"):
            rc, code, body = curl(lab, url, client=lab["shifted_client"])
            assert (rc, code) == (0, 200) and "upstream ok" in body, url
        rc, code, _ = curl(lab, "http://youtube.com/", client=lab["shifted_client"])
        assert code == 403, "streaming is still blocked at 10:00 on a Monday"


def test_cut_timer_runs_every_minute(host):
    timer = host.service("gerbang-squid-cut.timer")
    assert timer.is_enabled and timer.is_running
    assert "OnCalendar=*-*-* *:*:00" in host.file("/etc/systemd/system/gerbang-squid-cut.timer").content_string


def test_window_edge_closes_open_streaming_but_not_government_apps(host, lab, nft_redirects, shifted_config):
    """A video started at 06:59 ends when the window opens at 07:00 (gerbang-squid-cut, the
    program the timer runs); a government app's download opened at the same moment runs on."""
    govapp = lab["site"]["govapp_domains"][0]
    client = lab["shifted_client"]
    # The timer runs on the real clock: stopped, so only the times the test names decide.
    assert host.run("systemctl stop gerbang-squid-cut.timer").rc == 0
    try:
        with ShiftedSquid(host, shifted_config, lab["site"]["timezone"]) as squid:
            squid.start("2026-11-23 06:59:00")
            downloads = {
                "https://vidio.com/": start_download(lab, "https://vidio.com/", client, 20),
                "http://youtube.com/": start_download(lab, "http://youtube.com/", client, 20),
                f"https://{govapp}/": start_download(lab, f"https://{govapp}/", client, 6),
            }
            time.sleep(2)
            before = host.run("gerbang-squid-cut --at '2026-11-23 06:59'")
            assert (before.rc, before.stdout) == (0, ""), before.stderr
            seen = json.loads(host.check_output("gerbang-squid-cut --print --at '2026-11-23 07:00'"))
            assert "streaming" in seen["blocked"] and seen["open"]["streaming"] == 2, seen
            edge = host.run("gerbang-squid-cut --at '2026-11-23 07:00'")
            assert edge.rc == 0 and "closed 2 connection(s) of streaming" in edge.stdout, (edge.stdout, edge.stderr)
            results = {url: (d.communicate(timeout=60), d.returncode) for url, d in downloads.items()}
    finally:
        host.run("systemctl start gerbang-squid-cut.timer")
    for url in ("https://vidio.com/", "http://youtube.com/"):
        (out, err), rc = results[url]
        received = int(out.split()[-1]) if out.split() else 0
        assert rc != 0 and received < 20 * 1024, (url, rc, out, err)
    (out, err), rc = results[f"https://{govapp}/"]
    assert (rc, out) == (0, f"200 {6 * 1024}"), (out, err)


# --- what the user sees ---------------------------------------------------------------------------

def test_block_page_screenshot_in_a_real_browser(lab, nft_redirects):
    """The screenshot is kept under artifacts/; the DOM Chromium rendered from the same URL by the
    same path must carry the block text, the site, the category and its window (a browser's own
    error page, which also makes a large PNG, has none of them)."""
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium on the controller (scripts/lab/setup-host.sh does)"
    artifacts = Path(__file__).resolve().parents[5] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "squid-block-page.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="squid-chromium-") as profile:
        browser = ["ip", "netns", "exec", LAN_NS, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                   "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--disable-features=HttpsUpgrades",
                   f"--user-data-dir={profile}", f"--host-resolver-rules=MAP * {lab['internet']}"]
        subprocess.run([*browser, "--window-size=1100,900", f"--screenshot={shot}", BROWSER_URL],
                       capture_output=True, timeout=90, check=False)
        dom = subprocess.run([*browser, "--dump-dom", BROWSER_URL], capture_output=True, text=True, timeout=90, check=False)
    # A blank 1100x900 page compresses to ~3 KB; the rendered block page is ~80 KB.
    assert shot.exists() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    site = lab["site"]
    text = html.unescape(dom.stdout)
    for expected in (site["block_page"]["title"], site["title"], site["categories"]["games"]["title"],
                     "Selalu: sepanjang waktu", BROWSER_URL):
        assert expected in text, (expected, dom.stdout[-2000:], dom.stderr[-1000:])
