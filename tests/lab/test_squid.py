"""Squid in the whole-city lab, after `ansible-playbook site.yml` (real nftables redirects, real
dnsmasq): what an office PC gets for web sites, checked against the compiled decision function.

Clients resolve every name through their gateway's DNS (as a PC does), then connect to what it
answered: a name blocked by DNS leads to the gateway, an allowed one to the lab internet.

The schedule edges themselves are proven in the Molecule scenario (a clock-shifted copy of the
same squid.conf under libfaketime); here the live clock decides, and each check asks
`gerbang_kota.schedule.active_blocks(site, now)` what the answer must be, so the test is right
at any hour (checks within a minute of a window edge are retried after the edge). One test
moves a whole gateway to Monday 06:59 (DNS switcher `--at`, Squid under libfaketime) to show a
download running across the 07:00 edge being closed by `gerbang-squid-cut --at`.

Uses these helpers of tests/lab/labtools.py (lab engineer):
  labtools.compiled_site(site) -> dict            the compiled site policy
  labtools.clients(site, count) -> [(netns, ip)]  registered devices of the site, leased and online
  labtools.gateway_exec(site) -> [argv prefix]    runs a command on the site's gateway
The lab internet must answer HTTP (80) and HTTPS (443) for any name its DNS resolves.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    assert any(f" {client[1]} {device['name']} DENIED games 403 " in line for line in lines)


def test_block_page_screenshot_from_a_lab_client():
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium on the controller (scripts/lab/setup-host.sh does)"
    site = OTHER_OPD_SITE
    netns, _ip = labtools.clients(site, 1)[0]
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / f"squid-block-page-{site}.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="squid-chromium-") as profile:
        subprocess.run(["ip", "netns", "exec", netns, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-features=HttpsUpgrades",
                        f"--user-data-dir={profile}", "--window-size=1100,900", f"--screenshot={shot}",
                        "http://y8.com/"], capture_output=True, timeout=90, check=False, env=dict(os.environ, HOME=profile))
    assert shot.exists() and shot.stat().st_size > 20_000 and shot.read_bytes()[:4] == b"\x89PNG"


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
