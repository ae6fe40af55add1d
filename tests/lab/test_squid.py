"""Squid in the whole-city lab, after `ansible-playbook site.yml` (real nftables redirects, real
dnsmasq): what an office PC gets for web sites, checked against the compiled decision function.

Clients resolve every name through their gateway's DNS (as a PC does), then connect to what it
answered: a name blocked by DNS leads to the gateway, an allowed one to the lab internet.

Most checks run on the live clock: each asks `gerbang_kota.schedule.active_blocks(site, now)`
what the answer must be, so the test is right at any hour (checks within a minute of a window
edge are retried after the edge). The window edges are proven on the gateway's real services:
`TestWindowEdges` moves the gateway's DNS switcher (`--at`) and its running Squid
(scripts/lab/clock.sh, libfaketime) to Monday 06:59 / 07:00 / 15:59 / 16:00 and a Saturday,
and asks each streaming name over HTTP and HTTPS both through the site's DNS and with the
client resolving the name to the real stand-in server itself (so Squid's SNI decision is
proven apart from the DNS block). One test moves a whole gateway to Monday 06:59 to show a
download running across the 07:00 edge being closed by `gerbang-squid-cut --at`.

Uses these helpers of tests/lab/labtools.py (lab engineer):
  labtools.compiled_site(site) -> dict            the compiled site policy
  labtools.clients(site, count) -> [(netns, ip)]  registered devices of the site, leased and online
  labtools.gateway_exec(site) -> [argv prefix]    runs a command on the site's gateway
The lab internet must answer HTTP (80) and HTTPS (443) for any name its DNS resolves.
"""

from __future__ import annotations

import datetime as dt
import html
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

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import labtools  # noqa: E402
from gerbang_kota.schedule import active_blocks  # noqa: E402

STREAMING = ["youtube.com", "vidio.com", "vimeo.com"]
CURL_EXIT_TLS_CUT = {35, 56}
HUMAS_SITE, OTHER_OPD_SITE = "diskominfo", "bapenda"  # diskominfo is in group humas, bapenda is not


def resolve(site, netns, name):
    lan = labtools.compiled_site(site)["lan"]["address"]
    out = subprocess.run(["ip", "netns", "exec", netns, "dig", "+short", "+time=2", "+tries=1", f"@{lan}", name, "A"],
                         capture_output=True, text=True, timeout=10).stdout.split()
    addresses = [a for a in out if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a)]
    assert addresses, f"{site}: no A record for {name}"
    return addresses[0]


def curl_argv(site, client, url, timeout, *extra, ca=None):
    """curl from a LAN client to the address the site's DNS answers for the URL's name; with
    `ca`, the server's certificate must be signed by it (else it is not checked)."""
    netns, ip = client
    name = re.match(r"https?://([^/:]+)", url).group(1)
    port = 443 if url.startswith("https") else 80
    tls = ["--cacert", ca] if ca else ["-k"]
    return ["ip", "netns", "exec", netns, "curl", "-sS", *tls, "-m", str(timeout), "--interface", ip,
            "--resolve", f"{name}:{port}:{resolve(site, netns, name)}", *extra, url]


def curl(site, client, url, timeout=8):
    proc = subprocess.run(curl_argv(site, client, url, timeout, "-w", "\n%{http_code}"),
                          capture_output=True, text=True, timeout=timeout + 5)
    body, _, code = proc.stdout.rpartition("\n")
    return proc.returncode, int(code or 0), body


def blocked_now(site, category):
    """The compiled answer, or None within a minute of a change (the caller retries later)."""
    compiled = labtools.compiled_site(site)
    now = dt.datetime.now(dt.timezone.utc)
    answers = {category in active_blocks(compiled, now + dt.timedelta(seconds=s)) for s in (-60, 0, 60)}
    return answers.pop() if len(answers) == 1 else None


def decided(site, category):
    for _ in range(3):
        answer = blocked_now(site, category)
        if answer is not None:
            return answer
        time.sleep(60)
    raise AssertionError("the schedule kept changing")


def gateway_log(site):
    return subprocess.run(labtools.gateway_exec(site) + ["cat", "/var/log/squid/access.log"],
                          capture_output=True, text=True, timeout=20).stdout


@pytest.mark.parametrize("site", [OTHER_OPD_SITE, HUMAS_SITE])
@pytest.mark.parametrize("name", STREAMING)
def test_streaming_follows_the_schedule(site, name):
    blocked = decided(site, "streaming")
    [client] = labtools.clients(site, 1)
    rc, code, body = curl(site, client, f"http://{name}/")
    if blocked:
        assert code == 403 and "Video dan musik streaming" in body
    else:
        assert rc == 0 and code != 403 and "Akses dibatasi" not in body
    rc, code, body = curl(site, client, f"https://{name}/")
    if blocked:
        assert rc in CURL_EXIT_TLS_CUT
    else:
        assert rc == 0


def test_humas_may_use_social_media_while_other_opds_may_not():
    assert "social_media" not in [b["category"] for b in labtools.compiled_site(HUMAS_SITE)["blocks"]]
    [client] = labtools.clients(HUMAS_SITE, 1)
    rc, code, body = curl(HUMAS_SITE, client, "https://facebook.com/")
    assert rc == 0
    blocked = decided(OTHER_OPD_SITE, "social_media")
    [client] = labtools.clients(OTHER_OPD_SITE, 1)
    rc, code, body = curl(OTHER_OPD_SITE, client, "http://facebook.com/")
    assert (code == 403) == blocked


@pytest.mark.parametrize("site", [OTHER_OPD_SITE, HUMAS_SITE, "rsud"])
def test_government_app_is_always_served(site):
    [client] = labtools.clients(site, 1)
    for url in ("http://simral.serangkota.go.id/", "https://simral.serangkota.go.id/"):
        rc, code, body = curl(site, client, url)
        assert rc == 0 and code != 403, url


def test_block_page_and_log_name_the_device():
    site = OTHER_OPD_SITE
    compiled = labtools.compiled_site(site)
    [client] = labtools.clients(site, 1)
    device = next(d for d in compiled["devices"] if d["ip"] == client[1])
    rc, code, body = curl(site, client, "http://www.roblox.com/lab-check")
    assert code == 403
    for text in (compiled["block_page"]["title"], "Permainan daring", "Selalu: sepanjang waktu", "Diskominfo", compiled["title"]):
        assert text in body
    lines = [line for line in gateway_log(site).splitlines() if "/lab-check" in line or " www.roblox.com " in line]
    # The device's name and, last and quoted (it may hold spaces), its owner from the registry.
    assert any(f" {client[1]} {device['name']} DENIED games 403 " in line and line.endswith(f' "{device["owner"]}"')
               for line in lines), lines


def chromium_argv(chromium, profile):
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-features=HttpsUpgrades", f"--user-data-dir={profile}"]


def test_block_page_screenshot_from_a_lab_client():
    """A real browser on an office PC gets the block page: the screenshot is kept under
    artifacts/, and the DOM Chromium rendered from the same URL by the same path must carry the
    block text, the site, the category and its window (a browser error page has none of them)."""
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium on the controller (scripts/lab/setup-host.sh does)"
    site = OTHER_OPD_SITE
    compiled = labtools.compiled_site(site)
    netns, _ip = labtools.clients(site, 1)[0]
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / f"squid-block-page-{site}.png"
    shot.unlink(missing_ok=True)
    url = "http://y8.com/"
    with tempfile.TemporaryDirectory(prefix="squid-chromium-") as profile:
        env = dict(os.environ, HOME=profile)
        browser = ["ip", "netns", "exec", netns, *chromium_argv(chromium, profile)]
        subprocess.run([*browser, "--window-size=1100,900", f"--screenshot={shot}", url],
                       capture_output=True, timeout=90, check=False, env=env)
        dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=False, env=env)
    assert shot.exists() and shot.stat().st_size > 20_000 and shot.read_bytes()[:4] == b"\x89PNG"
    text = html.unescape(dom.stdout)
    for expected in (compiled["block_page"]["title"], compiled["title"], compiled["categories"]["games"]["title"],
                     "Selalu: sepanjang waktu", url):
        assert expected in text, (expected, dom.stdout[-2000:], dom.stderr[-1000:])


EDGE_SITE = "setda"  # blocks streaming Monday-Friday 07:00-16:00
MONDAY_0659, MONDAY_0700 = "2026-11-23 06:59", "2026-11-23 07:00"


def trickle(site, client, url, seconds):
    """A client download of `seconds` KiB, one a second from the server, in the background;
    the certificate must be the stand-in server's own (Squid splices, it never answers itself)."""
    cmd = curl_argv(site, client, f"{url}/trickle/{seconds}", seconds + 30,
                    "-o", "/dev/null", "-w", "%{http_code} %{size_download}", ca=labtools.state()["internet"]["ca"])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_window_edge_closes_a_running_stream_but_not_a_government_app():
    """The whole gateway at Monday 06:59 (DNS switcher and Squid's clock), a video and a
    government app downloading; at 07:00 the cutter closes the video's connection only."""
    site, clock = EDGE_SITE, str(REPO / "scripts/lab/clock.sh")
    assert "streaming" in active_blocks(labtools.compiled_site(site), dt.datetime.fromisoformat(MONDAY_0700))
    [client] = labtools.clients(site, 1)
    for timer in ("gerbang-dns-schedule.timer", "gerbang-squid-cut.timer"):
        labtools.on_gateway(site, "systemctl", "stop", timer)
    try:
        assert labtools.on_gateway(site, "gerbang-dns-schedule", "--at", MONDAY_0659).returncode == 0
        subprocess.run(["bash", clock, "service", site, "squid", f"{MONDAY_0659}:00"], check=True, capture_output=True, timeout=60)
        stream = trickle(site, client, "https://vidio.com", 40)
        govapp = trickle(site, client, "https://simral.serangkota.go.id", 8)
        time.sleep(3)
        seen = labtools.on_gateway(site, "gerbang-squid-cut", "--print", "--at", MONDAY_0700).stdout
        assert '"streaming": 1' in seen, seen
        edge = labtools.on_gateway(site, "gerbang-squid-cut", "--at", MONDAY_0700)
        cut_at = time.monotonic()
        assert "closed 1 connection(s) of streaming" in edge.stdout, (edge.stdout, edge.stderr)
        stream_out, stream_err = stream.communicate(timeout=90)
        stream_ended = time.monotonic() - cut_at
        govapp_out, govapp_err = govapp.communicate(timeout=90)
    finally:
        subprocess.run(["bash", clock, "service", site, "squid", "--real"], capture_output=True, timeout=60)
        labtools.on_gateway(site, "gerbang-dns-schedule")
        for timer in ("gerbang-dns-schedule.timer", "gerbang-squid-cut.timer"):
            labtools.on_gateway(site, "systemctl", "start", timer)
    received = int(stream_out.split()[-1]) if stream_out.split() else 0
    # Cut (curl 18/56: body ended early), not timed out (28), within seconds of the cut.
    assert stream.returncode in (18, 56) and 0 < received < 40 * 1024, (stream.returncode, stream_out, stream_err)
    assert stream_ended < 10, stream_ended
    assert (govapp.returncode, govapp_out) == (0, f"200 {8 * 1024}"), govapp_err


# --- window edges on the gateway's real services -------------------------------------------------

CLOCK = str(REPO / "scripts/lab/clock.sh")
EDGES = [
    ("2026-11-23 06:59", False),  # Monday, the minute before working hours
    ("2026-11-23 07:00", True),
    ("2026-11-23 15:59", True),   # the window's last minute
    ("2026-11-23 16:00", False),
    ("2026-11-28 10:00", False),  # Saturday
]
EXCEPTION_SITE = "dindikbud"  # host_vars/dindikbud/policy.yml: youtube.com is an exception there


@pytest.fixture(scope="class")
def gateway_clock():
    """Sets a gateway's DNS switcher (`--at`) and its running Squid (libfaketime, restarted on a
    clock starting at that minute) to a local time; teardown puts both back on the real clock."""
    held = []

    def hold(site, at):
        if site not in held:
            held.append(site)
            for timer in ("gerbang-dns-schedule.timer", "gerbang-squid-cut.timer"):
                labtools.on_gateway(site, "systemctl", "stop", timer)
        switched = labtools.on_gateway(site, "gerbang-dns-schedule", "--at", at)
        assert switched.returncode == 0, switched.stderr
        moved = subprocess.run(["bash", CLOCK, "service", site, "squid", f"{at}:00"], capture_output=True, text=True, timeout=60)
        assert moved.returncode == 0, moved.stderr

    yield hold
    for site in held:
        subprocess.run(["bash", CLOCK, "service", site, "squid", "--real"], capture_output=True, timeout=60)
        labtools.on_gateway(site, "gerbang-dns-schedule")
        for timer in ("gerbang-dns-schedule.timer", "gerbang-squid-cut.timer"):
            labtools.on_gateway(site, "systemctl", "start", timer)


def new_log_lines(site, skip, wanted, seconds=8.0):
    """Squid's log lines after the first `skip`, once every predicate in `wanted` matches one
    (Squid's log daemon writes a line when the transaction ends, a moment after curl does)."""
    deadline = time.monotonic() + seconds
    while True:
        lines = [line.split() for line in gateway_log(site).splitlines()[skip:]]
        if all(any(match(f) for f in lines if len(f) >= 11) for match in wanted) or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


def sni_line(client_ip, upstream_ip, name, decision, category=None, squid_status=None):
    """Predicate: a log line of an intercepted TLS connection to `upstream_ip` with SNI `name`."""
    def match(f):
        return (f[1] == client_ip and f[3] == decision and f[7] == "CONNECT" and f[8] == upstream_ip and f[9] == name
                and (category is None or f[4] == category) and (squid_status is None or f[10] == squid_status))
    return match


def server_address(site, name):
    """The stand-in server's address for `name` as the city's DNS gives it when it is not blocked:
    a SafeSearch name's safe endpoint (youtube.com -> restrict.youtube.com's), else the name's own.
    (Asked for youtube.com at another address of the stand-in, the lab's Squid cut the handshake
    even outside the window: it checks an intercepted name against its own DNS answer.)"""
    for target in labtools.compiled_site(site)["safe_mode"]["safesearch_targets"]:
        if name in target["names"]:
            return target["address"]
    return labtools.state()["internet"]["names"][name]


def request_both_ways(site, client, name, ca):
    """HTTP and HTTPS to `name`, each through the site's DNS and with the client resolving it to
    the stand-in server itself (DNS bypassed): {(scheme, path): (curl exit, status, body)}."""
    upstream_ip = server_address(site, name)
    netns, ip = client
    out = {}
    for scheme, port in (("http", 80), ("https", 443)):
        for path, address in (("dns", resolve(site, netns, name)), ("direct", upstream_ip)):
            argv = ["ip", "netns", "exec", netns, "curl", "-sS", "--cacert", ca, "-m", "8", "--interface", ip,
                    "--resolve", f"{name}:{port}:{address}", "-w", "\n%{http_code}", f"{scheme}://{name}/"]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=15)
            body, _, code = proc.stdout.rpartition("\n")
            out[(scheme, path)] = (proc.returncode, int(code or 0), body)
    return out


class TestWindowEdges:
    """The gateway's own DNS switcher and Squid, moved to each edge; checks grouped per setting
    (one Squid restart each). HTTPS is verified against the lab CA: a served page is the stand-in
    server's own certificate and body (Squid spliced), never something Squid made up."""

    @pytest.mark.parametrize(("at", "blocked"), EDGES, ids=[e[0] for e in EDGES])
    def test_streaming_is_refused_inside_the_window_and_served_outside(self, gateway_clock, at, blocked):
        site = EDGE_SITE
        compiled = labtools.compiled_site(site)
        assert ("streaming" in active_blocks(compiled, dt.datetime.fromisoformat(at))) == blocked
        [client] = labtools.clients(site, 1)
        ca = labtools.state()["internet"]["ca"]
        gateway_clock(site, at)
        skip = len(gateway_log(site).splitlines())
        wanted = []
        for name in STREAMING:
            upstream_ip = server_address(site, name)
            assert (resolve(site, client[0], name) == compiled["lan"]["address"]) == blocked, (at, name, "DNS")
            got = request_both_ways(site, client, name, ca)
            for path in ("dns", "direct"):
                rc, code, body = got[("http", path)]
                if blocked:
                    assert code == 403 and "Video dan musik streaming" in body, (at, name, path, rc, code)
                else:
                    assert (rc, code) == (0, 200) and f"stand-in: {name}" in body, (at, name, path, rc, code)
                rc, code, body = got[("https", path)]
                if blocked:
                    assert rc in CURL_EXIT_TLS_CUT, (at, name, path, rc, code)
                else:
                    assert (rc, code) == (0, 200) and f"stand-in: {name}" in body, (at, name, path, rc, code, body)
            # The direct HTTPS connection never met the DNS block: Squid decided by its SNI (the
            # peek's line names the server's address), and an allowed one was spliced (the
            # tunnel's line names the SNI as its host).
            if blocked:
                wanted.append((name, sni_line(client[1], upstream_ip, name, "DENIED", "streaming")))
            else:
                wanted.append((name, sni_line(client[1], upstream_ip, name, "ALLOWED")))
                wanted.append((name, sni_line(client[1], name, name, "ALLOWED", squid_status="TCP_TUNNEL")))
        lines = new_log_lines(site, skip, [match for _name, match in wanted])
        for name, match in wanted:
            seen = [f for f in lines if len(f) >= 11 and match(f)]
            assert seen, (at, name, [" ".join(f) for f in lines])
            # Logged by the Squid on the moved clock (its log time is the site's local time).
            assert all(f[0].startswith(at[:10] + "T") for f in seen), (at, seen)

    def test_a_sites_exception_is_served_inside_the_window(self, gateway_clock):
        """dindikbud's `allow_domains` keeps youtube.com open in working hours (DNS, HTTP, HTTPS,
        also by SNI alone) while the rest of streaming (vidio.com) stays refused there."""
        site, at = EXCEPTION_SITE, "2026-11-23 10:00"
        compiled = labtools.compiled_site(site)
        assert "youtube.com" in compiled["allow_domains"]
        assert "streaming" in active_blocks(compiled, dt.datetime.fromisoformat(at))
        [client] = labtools.clients(site, 1)
        ca = labtools.state()["internet"]["ca"]
        gateway_clock(site, at)
        skip = len(gateway_log(site).splitlines())
        assert resolve(site, client[0], "youtube.com") != compiled["lan"]["address"]
        assert resolve(site, client[0], "vidio.com") == compiled["lan"]["address"]
        for key, (rc, code, body) in request_both_ways(site, client, "youtube.com", ca).items():
            assert (rc, code) == (0, 200) and "stand-in: youtube.com" in body, (key, rc, code)
        refused = request_both_ways(site, client, "vidio.com", ca)
        for path in ("dns", "direct"):
            assert refused[("http", path)][1] == 403, path
            assert refused[("https", path)][0] in CURL_EXIT_TLS_CUT, path
        allowed = sni_line(client[1], server_address(site, "youtube.com"), "youtube.com", "ALLOWED", "exception")
        denied = sni_line(client[1], server_address(site, "vidio.com"), "vidio.com", "DENIED", "streaming")
        lines = new_log_lines(site, skip, [allowed, denied])
        assert any(allowed(f) for f in lines if len(f) >= 11), [" ".join(f) for f in lines]
        assert any(denied(f) for f in lines if len(f) >= 11), [" ".join(f) for f in lines]


DROPIN = "/etc/systemd/system/squid.service.d/gerbang.conf"


def squid_main_pid(site):
    for _ in range(50):
        pid = labtools.on_gateway(site, "systemctl", "show", "-p", "MainPID", "--value", "squid").stdout.strip()
        if pid not in ("", "0"):
            return pid
        time.sleep(0.2)
    raise AssertionError(f"systemd names no squid main process on {site}")


def squid_log_offset(site, client):
    """The UTC offset in the log line of a fresh request: Squid writes its local time, so this
    is the TZ the running Squid has (its /proc environ is not readable from the container)."""
    skip = len(gateway_log(site).splitlines())
    host = "simral.serangkota.go.id"
    curl(site, client, f"http://{host}/")

    def match(f):
        return f[1] == client[1] and f[7] == "GET" and f[8] == host

    seen = [f for f in new_log_lines(site, skip, [match]) if len(f) >= 11 and match(f)]
    assert seen, f"no log line for {host}"
    return seen[-1][0][-5:]


def test_a_changed_unit_drop_in_restarts_squid():
    """The drop-in (TZ for `acl time`) reaches Squid only through a restart: a gateway whose
    Squid runs from a drifted drop-in (TZ=UTC) is restarted by the rollout, not reloaded."""
    site = EDGE_SITE
    timezone = labtools.compiled_site(site)["timezone"]
    offset = dt.datetime.now(ZoneInfo(timezone)).strftime("%z")
    assert offset != "+0000"
    [client] = labtools.clients(site, 1)
    labtools.on_gateway(site, "sed", "-i", f"s|^Environment=TZ={timezone}$|Environment=TZ=UTC|", DROPIN)
    labtools.on_gateway(site, "systemctl", "daemon-reload")
    labtools.on_gateway(site, "systemctl", "restart", "squid")
    try:
        drifted_pid = squid_main_pid(site)
        assert squid_log_offset(site, client) == "+0000"
    finally:  # the rollout also puts the gateway right when the set-up failed
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
        run = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(REPO / "inventory/lab"), "--limit", site,
                              "playbooks/gateways.yml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert squid_main_pid(site) != drifted_pid, "a reload keeps the process and its old TZ"
    assert squid_log_offset(site, client) == offset
