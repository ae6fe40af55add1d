#!/usr/bin/env python3
"""What the TRUST+ list costs dnsmasq as roles/dnsmasq loads it: start-up, memory, window edges.

Generates a synthetic list of N domains (never downloads the real one), converts it with the
role's own converter (roles/dnsmasq/files/trustpositif-to-dnsmasq, timed, and again on the
unchanged list), then starts dnsmasq on a loopback port with the DNS part of the role's
gerbang.conf: no-resolv, servers-file (category blocks -> block responder port), addn-hosts
(SafeSearch), host-record, the TTL and cache settings, log-queries=extra to a file with
log-async, and the list through `conf-file=` exactly as the role includes it. Nothing is
forwarded anywhere (there is no upstream; an unlisted name gets REFUSED). Measured per form:

  test s     `dnsmasq --test` of the config: the role's validate, and Debian's ExecStartPre
             (checkconfig), so it is paid again on every restart
  start-up   process start until it answers (the DNS outage of a restart, after --test)
  rss        resident memory once loaded (VmRSS)
  edge       a window edge as gerbang-dns-schedule makes it: the servers-file and SafeSearch
             hosts are rewritten (a category's names added), then SIGHUP. SIGHUP does not
             re-read conf-file= (the 2M names stay loaded), but dnsmasq 2.86+ re-reads the
             servers-file and rebuilds its one sorted table of servers, which holds every
             local=/name/ too. Measured from outside: a client asks the gateway's own name
             every 5 ms; "edge outage" is the longest time between two answers around the
             SIGHUP, ">1 s" how many queries waited over a second (a client's retry)
  answers    a listed name, a subdomain of it, an unlisted name, the gateway's own name

Forms: local=/d/ x N (the role's, NXDOMAIN); no TRUST+ (the same gateway with the list off:
the baseline for the edge); server=/d/127.0.0.1#PORT (forward to the block responder, which
would show the block page), on the first --server-form-domains names (20,000 unless told;
--server-form-domains 2000000 takes the whole list). Every dnsmasq is killed at the end.

  python3 bench/dnsmasq_trustpositif.py [--domains 2000000] [--repeat 3]
  python3 bench/dnsmasq_trustpositif.py --podman localhost/gerbang-gw:latest   # the gateway's dnsmasq
"""
from __future__ import annotations

import argparse
import getpass
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trustpositif_common import REPO, generate, header, probe_outage, rss_mib, run_in_podman  # noqa: E402 (bench/ is put on the path first)

CONVERTER = REPO / "roles/dnsmasq/files/trustpositif-to-dnsmasq"
PORT = 55353
RESPONDER_PORT = 55354
GATEWAY = "gw.kantor.lan"
# Category names the switcher adds to the servers-file when a window opens.
CATEGORY = [f"video{i}.example" for i in range(40)]


def query(name: str, port: int = PORT, timeout: float = 0.5) -> tuple[int, list[str]] | None:
    """One UDP A query to 127.0.0.1:port -> (rcode, addresses) or None on timeout."""
    qid = random.randint(0, 65535)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    packet += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, ("127.0.0.1", port))
            while True:
                data, _ = sock.recvfrom(4096)
                if data[:2] == packet[:2]:
                    break
        except OSError:
            return None
    rcode, ancount = data[3] & 0x0F, struct.unpack(">H", data[6:8])[0]
    addresses = []
    if ancount:  # answers follow the question; A records end with 4 address bytes
        addresses = [socket.inet_ntoa(data[-4:])]
    return rcode, addresses


def wait_answer(name: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if query(name, timeout=0.2) is not None:
            return True
        time.sleep(0.01)
    return False


def write_switcher_files(work: Path, categories_open: bool) -> tuple[Path, Path]:
    """The two files gerbang-dns-schedule writes, before or after a window edge."""
    servers, hosts = work / "servers.conf", work / "safesearch.hosts"
    blocked = CATEGORY if categories_open else []
    servers.write_text("# Managed by gerbang-dns-schedule (benchmark copy)\n"
                       "server=/gov-app.example/127.0.0.1#%d\n" % RESPONDER_PORT
                       + "".join(f"server=/{d}/127.0.0.1#{RESPONDER_PORT}\n" for d in blocked))
    hosts.write_text("216.239.38.120 www.google.com  # SafeSearch\n"
                     + ("" if categories_open else "216.239.38.120 www.youtube.com  # SafeSearch\n"))
    return servers, hosts


def write_config(work: Path, list_file: Path | None) -> Path:
    servers, hosts = write_switcher_files(work, categories_open=False)
    conf = work / "dnsmasq.conf"
    conf.write_text(
        f"port={PORT}\nlisten-address=127.0.0.1\nbind-interfaces\nno-hosts\n"
        f"user={getpass.getuser()}\npid-file=\n"
        # The DNS part of roles/dnsmasq/templates/gerbang.conf.j2:
        f"no-resolv\nno-poll\nservers-file={servers}\ndomain-needed\nbogus-priv\ncache-size=10000\n"
        "max-ttl=60\nlocal-ttl=60\ndomain=kantor.lan,10.0.0.0/24,local\nexpand-hosts\n"
        f"host-record={GATEWAY},10.0.0.1\naddn-hosts={hosts}\n"
        + (f"conf-file={list_file}\n" if list_file else "")
        + f"log-queries=extra\nlog-facility={work / 'dnsmasq.log'}\nlog-async=50\n")
    return conf


def run_form(work: Path, list_file: Path | None, listed: str, timeout: float) -> dict:
    conf = write_config(work, list_file)
    log = work / "dnsmasq.log"
    log.unlink(missing_ok=True)
    t0 = time.monotonic()
    test = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True)
    test_s = time.monotonic() - t0
    if test.returncode != 0:
        raise RuntimeError(f"dnsmasq --test failed: {test.stderr[-2000:]}")
    started = time.monotonic()
    proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_answer(GATEWAY, started + timeout):
            raise RuntimeError(f"dnsmasq did not answer within {timeout} s: {proc.stderr.read(2000) if proc.poll() is not None else ''}")
        startup = time.monotonic() - started
        rss = rss_mib(proc.pid)
        hosts_read = f"read {work / 'safesearch.hosts'}"
        before = log.read_text(errors="replace").count(hosts_read)

        def window_edge() -> None:
            write_switcher_files(work, categories_open=True)
            proc.send_signal(signal.SIGHUP)

        def gateway_answers() -> bool:
            answer = query(GATEWAY, timeout=60)
            return answer is not None and answer[1] == ["10.0.0.1"]

        edge = probe_outage(gateway_answers, window_edge,
                            lambda: log.read_text(errors="replace").count(hosts_read) > before, limit=timeout)
        answers = {
            "listed": query(listed, timeout=2),
            "subdomain": query("www." + listed, timeout=2),
            "unlisted": query("not-listed-anywhere.example", timeout=2),
            "gateway": query(GATEWAY, timeout=2),
            "category": query(CATEGORY[0], timeout=0.5),
        }
        return {"test": test_s, "startup": startup, "rss": rss, "edge": edge, "answers": answers}
    finally:
        proc.kill()
        proc.wait()


def show(answer: tuple[int, list[str]] | None) -> str:
    if answer is None:
        return "timeout"
    return f"{answer[0]}" + (f" {answer[1][0]}" if answer[1] else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--server-form-domains", type=int, default=20_000)
    parser.add_argument("--podman", metavar="IMAGE", help="run inside a throw-away container of IMAGE")
    parser.add_argument("--name", default=f"gerbang-bench-dnsmasq-{os.getpid()}", help="container name (--podman)")
    args = parser.parse_args()
    if args.podman:
        return run_in_podman(args.podman, Path(__file__).name,
                             ["--domains", str(args.domains), "--repeat", str(args.repeat), "--timeout", str(args.timeout),
                              "--server-form-domains", str(args.server_form_domains)], args.name)
    if not shutil.which("dnsmasq"):
        print("dnsmasq is not installed (use --podman IMAGE)", file=sys.stderr)
        return 2
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    header(version)
    with tempfile.TemporaryDirectory(prefix="gerbang-bench-dns-") as tmp:
        work = Path(tmp)
        source = work / "domains.txt"
        t0 = time.monotonic()
        names = generate(source, args.domains)
        gen_s = time.monotonic() - t0
        converted = work / "trustpositif.conf"
        t0 = time.monotonic()
        subprocess.run([sys.executable, str(CONVERTER), "--source", str(source), "--dest", str(converted)],
                       check=True, capture_output=True)
        convert_s = time.monotonic() - t0
        t0 = time.monotonic()
        again = subprocess.run([sys.executable, str(CONVERTER), "--source", str(source), "--dest", str(converted)],
                               check=True, capture_output=True, text=True).stdout.strip()
        recheck_s = time.monotonic() - t0
        server_form = work / "trustpositif-server.conf"
        listed = names[len(names) // 2]
        subset = set(names[: args.server_form_domains]) | {listed}
        with server_form.open("w", encoding="ascii") as dst:
            dst.writelines(f"server=/{name}/127.0.0.1#{RESPONDER_PORT}\n" for name in sorted(subset))
        print(f"{args.domains:,} synthetic domains (generated in {gen_s:.1f} s); "
              f"converted by the role's converter in {convert_s:.1f} s ({converted.stat().st_size / 2**20:.0f} MiB), "
              f"re-run on an unchanged list {recheck_s:.2f} s ({again.split(':')[0]})")
        print(f"{'form':<28} {'test s':>7} {'start-up s':>16} {'RSS MiB':>8} {'edge outage s':>20} {'>1 s':>5}"
              "  answers: listed / subdomain / unlisted / gateway / category")
        print("  (median (min-max) of the runs; rcode 0 = answer, 3 = NXDOMAIN, 5 = REFUSED: no upstream here;"
              " timeout = forwarded to the absent block responder)")
        forms = ((f"local=/d/ x {args.domains:,} (role)", converted),
                 ("no TRUST+ (baseline)", None),
                 (f"server=/d/ x {len(subset):,}", server_form))
        for label, path in forms:
            runs = [run_form(work, path, listed, args.timeout) for _ in range(args.repeat)]
            if not all(r["edge"]["completed"] for r in runs):
                print(f"  {label}: dnsmasq never logged the re-read after SIGHUP within {args.timeout} s")
            med = {k: statistics.median(r[k] for r in runs) for k in ("test", "startup", "rss")}
            outages = [r["edge"]["outage"] for r in runs]
            a = runs[-1]["answers"]
            shown = " / ".join(show(a[k]) for k in ("listed", "subdomain", "unlisted", "gateway", "category"))
            startup = (f"{med['startup']:.2f} ({min(r['startup'] for r in runs):.2f}-"
                       f"{max(r['startup'] for r in runs):.2f})")
            edge = f"{statistics.median(outages):.3f} ({min(outages):.3f}-{max(outages):.3f})"
            over = sum(r["edge"]["over_1s"] for r in runs)
            print(f"{label:<28} {med['test']:>7.2f} {startup:>16} {med['rss']:>8.0f} {edge:>20} {over:>5}  {shown}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
