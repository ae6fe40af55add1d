#!/usr/bin/env python3
"""What carrying the TRUST+ list in Squid would cost: parse time, start-up, RSS, reconfigure stall.

Generates N synthetic domains (the shape of Kominfo's TRUST+ export: one plain name a line),
loads them into one `dstdomain` ACL exactly as roles/squid does with squid_trustpositif_enabled,
and measures on 127.0.0.1 only (an explicit proxy port on loopback; every request is for a
listed name, so Squid answers 403 itself and never resolves or connects anywhere):

  parse_s        `squid -k parse` of the config (what gerbang_deploy's validate costs)
  start_s        launch to the first 403 answered
  rss_mb         resident memory of the Squid process once serving
  reconfigure_s  SIGHUP (= systemctl reload squid) to the next 403 answered: every policy
                 change would stall web traffic this long

Runs where a `squid` binary is (a gateway), or with --podman IMAGE inside a throw-away
container of the gateway image with no network at all (--network none):

  .venv/bin/python bench/squid_trustpositif.py --podman localhost/gerbang-gw:latest --sizes 10000,100000,2000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT = 39128


def write_domains(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(f"situs{i:07d}.contoh-{i % 997:03d}.test\n")


def write_config(directory: Path, domains: Path) -> Path:
    conf = directory / "squid.conf"
    conf.write_text(
        f"http_port 127.0.0.1:{PORT}\n"
        "visible_hostname bench.gerbang.lan\n"
        f"pid_filename {directory}/squid.pid\n"
        f"cache_log {directory}/cache.log\n"
        "access_log none\n"
        "cache deny all\n"
        "cache_mem 8 MB\n"
        "shutdown_lifetime 0 seconds\n"
        f"coredump_dir {directory}\n"
        f"acl trustpositif dstdomain -n \"{domains}\"\n"
        "http_access deny trustpositif\n"
        "http_access deny all\n")
    return conf


def denied_answer(name: str, timeout: float) -> bool:
    """One explicit-proxy request for a listed name; True when Squid answers 403."""
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=timeout) as sock:
            sock.sendall(f"GET http://{name}/ HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.1 403")
    except OSError:
        return False


def wait_denied(name: str, limit: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if denied_answer(name, timeout=limit):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(squid: str, count: int, limit: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="squid-trustpositif-") as tmp:
        directory = Path(tmp)
        os.chmod(directory, 0o755)
        domains = directory / "trustpositif.domains"
        write_domains(domains, count)
        conf = write_config(directory, domains)
        if os.geteuid() == 0:
            shutil.chown(directory, "proxy", "proxy")
        last = f"situs{count - 1:07d}.contoh-{(count - 1) % 997:03d}.test"

        started = time.monotonic()
        parse = subprocess.run([squid, "-k", "parse", "-f", str(conf)], capture_output=True, text=True, timeout=limit)
        parse_s = time.monotonic() - started
        if parse.returncode != 0:
            raise SystemExit(f"squid -k parse failed:\n{parse.stderr[-2000:]}")

        started = time.monotonic()
        proc = subprocess.Popen([squid, "-N", "-n", "benchtp", "-f", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            start_s = wait_denied(last, limit)
            if start_s is None:
                raise SystemExit(f"squid did not serve within {limit} s at {count} domains")
            memory = rss_mb(proc.pid)
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.05)  # let Squid close its port before probing again
            reconfigure_s = wait_denied(last, limit)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return {"domains": count, "list_mb": round(domains.stat().st_size / 2**20, 1), "parse_s": round(parse_s, 2),
                "start_s": round(start_s, 2), "rss_mb": round(memory, 1),
                "reconfigure_s": None if reconfigure_s is None else round(reconfigure_s + 0.05, 2)}


def run_in_podman(image: str, argv: list[str]) -> int:
    """Re-run this script inside a throw-away gateway container with no network."""
    script = Path(__file__).resolve()
    cmd = ["podman", "run", "--rm", "--network", "none", "-v", f"{script}:/bench/{script.name}:ro",
           "--entrypoint", "python3", image, f"/bench/{script.name}", *argv]
    return subprocess.call(cmd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000,2000000", help="comma-separated domain counts")
    parser.add_argument("--squid", default=shutil.which("squid") or "/usr/sbin/squid")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds allowed for any one step")
    parser.add_argument("--podman", metavar="IMAGE", help="run inside a throw-away container of IMAGE")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args()
    if args.podman:
        passed = ["--sizes", args.sizes, "--limit", str(args.limit)] + (["--json"] if args.json else [])
        return run_in_podman(args.podman, passed)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not args.json:
        print(f"{'domains':>9} {'list MB':>8} {'parse s':>8} {'start s':>8} {'RSS MB':>7} {'reconfigure s':>14}")
    for count in sizes:
        row = measure(args.squid, count, args.limit)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['domains']:>9} {row['list_mb']:>8} {row['parse_s']:>8} {row['start_s']:>8} "
                  f"{row['rss_mb']:>7} {str(row['reconfigure_s']):>14}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
