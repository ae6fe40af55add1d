#!/usr/bin/env python3
"""How long dnsmasq takes to load a TRUST+-sized list, and what it costs, per list form.

Generates a synthetic list of N domains (never downloads the real one), converts it with the
role's own converter (roles/dnsmasq/files/trustpositif-to-dnsmasq, timed), then for each form
starts dnsmasq on a loopback port (no upstream: nothing leaves the machine) and measures:
  start-up   process start until a listed name is answered
  rss        resident memory once loaded (VmRSS)
  hup        SIGHUP (what every schedule switch sends) until an answer again
  answers    a listed name, a subdomain of it, and an unlisted name
Forms: local=/d/ (the role's, NXDOMAIN) and server=/d/127.0.0.1#PORT (forward to the block
responder, which would show the block page). The server form loads so slowly that it is only
measured on the first --server-form-domains names. Every dnsmasq is killed at the end.

  python3 bench/dnsmasq_trustpositif.py [--domains 2000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[1]
CONVERTER = REPO / "roles/dnsmasq/files/trustpositif-to-dnsmasq"
TLDS = ["com", "net", "org", "info", "xyz", "id", "co.id", "top", "site", "online"]
PORT = 55353
RESPONDER_PORT = 55354


def generate(path: Path, count: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    names = set()
    while len(names) < count:
        label = "".join(rnd.choices(alphabet, k=rnd.randint(6, 16)))
        names.add(f"{label}.{rnd.choice(TLDS)}")
    ordered = list(names)
    rnd.shuffle(ordered)
    with path.open("w", encoding="ascii") as handle:
        handle.write("# synthetic TRUST+ list for the benchmark\n")
        handle.writelines(name + "\n" for name in ordered)
    return ordered


def query(name: str, port: int = PORT, timeout: float = 0.5) -> tuple[int, list[str]] | None:
    """One UDP A query to 127.0.0.1:port -> (rcode, addresses) or None on timeout."""
    qid = random.randint(0, 65535)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    packet += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, ("127.0.0.1", port))
            data, _ = sock.recvfrom(4096)
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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_form(workdir: Path, list_file: Path, listed: str, timeout: float) -> dict:
    servers = workdir / "servers.conf"
    servers.write_text("# empty servers-file, re-read on SIGHUP like the role's\n")
    conf = workdir / "dnsmasq.conf"
    conf.write_text(
        f"port={PORT}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nuser={os.environ.get('USER', 'root')}\n"
        f"pid-file=\nservers-file={servers}\nconf-file={list_file}\nlog-facility=-\n")
    started = time.monotonic()
    proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_answer(listed, started + timeout):
            raise RuntimeError(f"dnsmasq did not answer within {timeout} s: {proc.stderr.read(2000) if proc.poll() is not None else ''}")
        startup = time.monotonic() - started
        rss = rss_mib(proc.pid)
        hup_start = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.001)
        wait_answer("unlisted-after-hup.example", hup_start + timeout)
        hup = time.monotonic() - hup_start
        answers = {
            "listed": query(listed, timeout=2),
            "subdomain": query("www." + listed, timeout=2),
            "unlisted": query("not-listed-anywhere.example", timeout=2),
        }
        return {"startup": startup, "rss": rss, "hup": hup, "answers": answers}
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--server-form-domains", type=int, default=20_000)
    args = parser.parse_args()
    if not shutil.which("dnsmasq"):
        print("dnsmasq is not installed", file=sys.stderr)
        return 2
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
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
        print(f"{version}; {args.domains:,} synthetic domains (generated in {gen_s:.1f} s); "
              f"converted by the role's converter in {convert_s:.1f} s ({converted.stat().st_size / 2**20:.0f} MiB), "
              f"re-run on an unchanged list {recheck_s:.2f} s ({again.split(':')[0]})")
        print(f"{'form':<30} {'start-up s':>12} {'RSS MiB':>9} {'SIGHUP s':>10}  answers: rcode listed / subdomain / unlisted")
        print("  (rcode 3 = NXDOMAIN; 5 = REFUSED: no upstream here; timeout = forwarded to the absent responder)")
        forms = ((f"local=/d/ x {args.domains:,} (role)", converted),
                 (f"server=/d/ x {len(subset):,}", server_form))
        for label, path in forms:
            runs = [run_form(work, path, listed, args.timeout) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in ("startup", "rss", "hup")}
            a = runs[-1]["answers"]
            shown = " / ".join("timeout" if v is None else str(v[0]) for v in (a["listed"], a["subdomain"], a["unlisted"]))
            spread = f"{min(r['startup'] for r in runs):.2f}-{max(r['startup'] for r in runs):.2f}"
            print(f"{label:<30} {med['startup']:>6.2f} ({spread}) {med['rss']:>9.0f} {med['hup']:>10.2f}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
