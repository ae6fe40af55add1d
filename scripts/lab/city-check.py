#!/usr/bin/env python3
"""Print what the city enforces now, as real lab clients see it (after site.yml rolled out).

    scripts/lab/city-check.sh [--sites a,b,c] [--seconds 3]

Per site: a registered device asks for a lease, the unregistered device asks too, the
registered device opens a site of a category whose block depends on the time of day — blocked
now when such a window is active, else shown allowed outside its window — and one site it
always may open, then measures its download rate through the shaper (iperf3). A block counts
only when the gateway gave it: its DNS answers with the gateway's own address (the block page)
and Squid, reached with the name's real address, cuts the connection and logs it DENIED with
the category. Every line is an observation; the expectation from the compiled policy is printed
beside it, and the exit code is 1 when any observation differs from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "lib"), str(REPO / "tests/lab")]

import labtools  # noqa: E402
from gerbang_kota import schedule  # noqa: E402

DEFAULT_SITES = ["diskominfo", "kec-kasemen", "rsud", "setda", "bappeda"]
# HTB counts layer-2 bytes; iperf3 reports TCP goodput (1448 of each 1514 bytes).
GOODPUT_RATIO = 1448 / 1514
# curl's exit when Squid closes the TLS handshake of a blocked name (no decryption, no page).
CURL_EXIT_TLS_CUT = {35, 56}


class Report:
    def __init__(self) -> None:
        self.mismatches = 0

    def line(self, what: str, observed: str, ok: bool, expected: str) -> None:
        self.mismatches += 0 if ok else 1
        print(f"  {'ok ' if ok else 'BAD'} {what:<44} {observed}" + ("" if ok else f"   (expected {expected})"))


def pick_allowed(site: dict, blocked_categories: list[str], names: dict) -> str:
    """A name the site never blocks: a government application first."""
    blocked = {d for c in blocked_categories for d in site["categories"].get(c, {}).get("domains", [])}
    for domain in site["govapp_domains"] + sorted(names):
        if domain in names and domain not in blocked and not domain.startswith("dns"):
            return domain
    raise SystemExit("city-check: no allowed stand-in name found")


def time_windowed(site: dict) -> list[str]:
    """Categories the site blocks in some windows only (no block of theirs is `always`)."""
    always = {b["category"] for b in site["blocks"] if site["schedules"][b["schedule"]].get("always")}
    return sorted({b["category"] for b in site["blocks"]} - always)


def pick_category(site: dict, now: dt.datetime, names: dict) -> tuple[str, bool, str] | None:
    """(category, blocked now, why) for the check: a time-windowed category blocked now if there
    is one, else a time-windowed one allowed now, else one always blocked. The decision is
    schedule.active_blocks'; a category whose decision changes within two minutes (a browser
    follows a DNS change within about two minutes) is not picked."""
    decisions = [set(schedule.active_blocks(site, now + dt.timedelta(minutes=m))) for m in (-1, 0, 2)]
    settled_blocked, blocked_any = set.intersection(*decisions), set.union(*decisions)
    served = [c for c in sorted(site["categories"]) if any(d in names for d in site["categories"][c]["domains"])]
    windowed = [c for c in time_windowed(site) if c in served]
    for category in windowed:
        if category in settled_blocked:
            return category, True, f"inside its window ({window_title(site, category)})"
    for category in windowed:
        if category not in blocked_any:
            return category, False, f"outside its window ({window_title(site, category)})"
    for category in served:
        if category in settled_blocked:
            return category, True, "blocked at all hours (no time-windowed category to show)"
    return None


def window_title(site: dict, category: str) -> str:
    return "; ".join(site["schedules"][b["schedule"]]["title"] for b in site["blocks"] if b["category"] == category)


def squid_denied(name: str, client_ip: str, category: str, domain: str, before: int) -> str | None:
    """The gateway's access-log line (written after byte ``before``) denying this request, if any."""
    for _ in range(10):
        log = labtools.on_gateway(name, "tail", "-c", f"+{before + 1}", "/var/log/squid/access.log").stdout
        for line in log.splitlines():
            if f" {client_ip} " in line and f" DENIED {category} " in line and f" {domain} " in line:
                return line
        time.sleep(0.5)
    return None


def access_log_size(name: str) -> int:
    out = labtools.on_gateway(name, "stat", "-c", "%s", "/var/log/squid/access.log").stdout.strip()
    return int(out) if out.isdigit() else 0


def check_category(name: str, site: dict, client: dict, address: str, now: dt.datetime, names: dict,
                   report: Report) -> None:
    """Open a site of the picked category: blocked by the gateway now, or allowed now."""
    picked = pick_category(site, now, names)
    if picked is None:
        print(f"  --  no category to show at this minute (blocks: "
              f"{', '.join(sorted({b['category'] for b in site['blocks']})) or 'none'})")
        return
    category, blocked, why = picked
    domain = next(d for d in site["categories"][category]["domains"] if d in names)
    gateway = site["lan"]["address"]
    answer = labtools.dig(client["ns"], gateway, domain)
    if not blocked:
        print(f"  --  {category} is allowed now: {why}")
        code, status, body = labtools.curl(client["ns"], f"https://{domain}/", resolve_to=names[domain], timeout=5)
        report.line(f"allowed ({category}) DNS {domain}", " ".join(answer) or "no answer", answer == [names[domain]],
                    names[domain])
        report.line(f"allowed ({category}) https://{domain}", f"curl exit {code}, HTTP {status or '-'}",
                    code == 0 and status == "200" and domain in body, "HTTP 200 with the site's page")
        return
    print(f"  --  {category} is blocked now: {why}")
    # The gateway's DNS answers with its own address (the block page), not the site's.
    report.line(f"blocked ({category}) DNS {domain}", " ".join(answer) or "no answer", answer == [gateway],
                f"{gateway} (the gateway's block page)")
    # Past DNS, with the name's real address: Squid must cut it and log it as its own decision.
    before = access_log_size(name)
    code, status, body = labtools.curl(client["ns"], f"https://{domain}/", resolve_to=names[domain], timeout=5)
    line = squid_denied(name, address, category, domain, before)
    loaded = code == 0 and status == "200" and domain in body
    report.line(f"blocked ({category}) https://{domain}", f"curl exit {code}, Squid: "
                + ("DENIED " + category if line else "no DENIED line") + (" (page loaded)" if loaded else ""),
                not loaded and code in CURL_EXIT_TLS_CUT and line is not None,
                f"connection cut by Squid (curl exit 35/56) and logged DENIED {category}")


def check_site(name: str, seconds: float, port: int, report: Report) -> None:
    lab_site = labtools.state()["sites"][name]
    site = labtools.compiled_site(name)
    now = dt.datetime.now(dt.timezone.utc)
    local = schedule.local_time(site, now)
    print(f"{name} ({site['title']}), {local:%a %H:%M} {site['timezone']}, LAN {site['lan']['subnet']}")

    registered = next(c for c in lab_site["clients"] if c["registered"])
    address = labtools.dhcp(registered["ns"])
    report.line(f"lease {registered['device']}", address or "no lease", address == registered["expected_ip"],
                registered["expected_ip"])
    stranger = next(c for c in lab_site["clients"] if not c["registered"])
    leaked = labtools.dhcp(stranger["ns"], timeout=5)
    report.line(f"lease unregistered {stranger['mac']}", leaked or "no lease", leaked is None, "no lease")
    labtools.release(stranger["ns"])
    if address is None:
        return

    names = labtools.state()["internet"]["names"]
    blocked_now = schedule.active_blocks(site, now)
    check_category(name, site, registered, address, now, names, report)
    allowed = pick_allowed(site, blocked_now, names)
    code, status, body = labtools.curl(registered["ns"], f"https://{allowed}/", timeout=5)
    report.line(f"allowed https://{allowed}", f"curl exit {code}, HTTP {status or '-'}",
                code == 0 and status == "200" and allowed in body, "HTTP 200 with the site's page")

    server = labtools.state()["internet"]["iperf3"]["address"]
    rate = iperf_download(registered["ns"], address, server, port, seconds)
    bw = site["bandwidth"]
    limit = min(bw["device_ceil_mbit"], bw["ceil_mbit"])
    expected = limit * GOODPUT_RATIO
    report.line("download (iperf3 -R)", f"{rate:.2f} Mbit/s of a {limit} Mbit/s class" if rate is not None else "failed",
                rate is not None and abs(rate - expected) <= 0.1 * expected,
                f"{expected:.2f} Mbit/s goodput of a {limit} Mbit/s class")


def iperf_download(ns: str, source: str, server: str, port: int, seconds: float) -> float | None:
    proc = labtools.in_ns(ns, "iperf3", "-c", server, "-p", str(port), "-B", source, "-R", "-J", "-O", "1",
                          "-t", str(seconds), timeout=seconds + 20)
    try:
        return json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
    except (ValueError, KeyError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", help="comma-separated sites (default: a few of those up)")
    parser.add_argument("--seconds", type=float, default=3, help="iperf3 duration per site")
    args = parser.parse_args()
    try:
        up = labtools.state()["sites"]
    except FileNotFoundError as exc:
        print(f"city-check: {exc}", file=sys.stderr)
        return 2
    sites = args.sites.split(",") if args.sites else [s for s in DEFAULT_SITES if s in up] or sorted(up)[:3]
    ports = labtools.state()["internet"]["iperf3"]["ports"]
    report = Report()
    for index, name in enumerate(sites):
        if name not in up:
            print(f"{name}: not in lab {labtools.LAB}")
            report.mismatches += 1
            continue
        check_site(name, args.seconds, ports[index % len(ports)], report)
    print(f"city-check: {len(sites)} site(s), {report.mismatches} observation(s) differ from the policy")
    return 1 if report.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
