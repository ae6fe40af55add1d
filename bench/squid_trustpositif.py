#!/usr/bin/env python3
"""What carrying the TRUST+ list in Squid costs, loaded as roles/squid loads it.

With squid_trustpositif_enabled the role's squid.conf reads the one list file twice:
  acl gerbang_trustpositif dstdomain -n "<list>"         (HTTP: http_access deny)
  acl gerbang_trustpositif_sni ssl::server_name "<list>"  (HTTPS: ssl_bump terminate)
so Squid builds two trees of N names. This benchmark generates N synthetic names
(trustpositif_common.generate: random, shuffled, one plain name a line like Kominfo's export),
writes a config with those two ACLs and the role's rules for them (deny, then peek at step 1,
terminate the listed SNI, splice the rest), and runs Squid the way Debian's unit does
(`squid --foreground -YC`: a master process and its kid). Everything is on loopback: an
explicit proxy port for HTTP and an explicit ssl-bump port for the SNI check (the role's
intercept ports need NAT; the ACLs are the same). A stand-in TLS "server" on 127.0.0.2:443
only counts connections, to tell a terminated handshake (never reaches it) from a spliced one.

  parse_s      `squid -k parse` (the role's validate before every change goes live; `squid -k
               reconfigure` also parses the config before it signals)
  start_s      launch to the first 403 for a listed name (after a restart, web traffic waits this long)
  rss_mib      resident memory once serving: master + kid (both hold the parsed config)
  reload       SIGHUP to the master (= systemctl reload squid, the role's on_change) with a
               client asking for a listed name every 20 ms: the longest time between two
               answers ("stall"), and when Squid logged that it accepts connections again
  answers      HTTP listed -> 403; HTTP www.<listed> (Squid's dstdomain without a leading dot
               does not cover subdomains, unlike dnsmasq's local=/name/); SNI listed ->
               terminated (server never contacted); SNI unlisted -> spliced (server contacted)

Runs where a `squid` binary is (a gateway), or with --podman IMAGE inside a throw-away container
of the gateway image with no network at all (--network none):

  python3 bench/squid_trustpositif.py --podman localhost/gerbang-gw:latest --sizes 100000,2000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trustpositif_common import children, generate, header, probe_outage, rss_mib, run_in_podman  # noqa: E402 (bench/ is put on the path first)

PORT = 39128
BUMP_PORT = 39129
SERVER = ("127.0.0.2", 443)


def write_config(directory: Path, domains: Path, cert: Path) -> Path:
    conf = directory / "squid.conf"
    conf.write_text(
        f"http_port 127.0.0.1:{PORT}\n"
        f"http_port 127.0.0.1:{BUMP_PORT} ssl-bump tls-cert={cert} generate-host-certificates=off\n"
        "visible_hostname bench.gerbang.lan\n"
        f"pid_filename {directory}/squid.pid\n"
        f"cache_log {directory}/cache.log\n"
        "access_log none\n"
        "cache deny all\n"
        "cache_mem 8 MB\n"
        "shutdown_lifetime 0 seconds\n"
        # Nothing resolves here: an unlisted name fails fast instead of waiting for DNS.
        "dns_nameservers 127.0.0.1\n"
        "dns_timeout 2 seconds\n"
        f"coredump_dir {directory}\n"
        "acl bench_local src 127.0.0.0/8\n"
        "acl gerbang_step1 at_step SslBump1\n"
        # The role's two TRUST+ lines (roles/squid/templates/squid.conf.j2) and their rules:
        f"acl gerbang_trustpositif dstdomain -n \"{domains}\"\n"
        f"acl gerbang_trustpositif_sni ssl::server_name \"{domains}\"\n"
        "acl gerbang_note_trustpositif annotate_transaction decision=DENIED category=trustpositif\n"
        "http_access deny gerbang_trustpositif gerbang_note_trustpositif\n"
        "http_access allow bench_local\n"
        "http_access deny all\n"
        "ssl_bump peek gerbang_step1\n"
        "ssl_bump terminate gerbang_trustpositif_sni gerbang_note_trustpositif\n"
        "ssl_bump splice all\n")
    return conf


def http_status(name: str, timeout: float) -> int | None:
    """One explicit-proxy request; Squid's status code, or None when it did not answer."""
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=timeout) as sock:
            sock.sendall(f"GET http://{name}/ HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
            return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None
    except (OSError, ValueError, IndexError):
        return None


def wait_denied(name: str, limit: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if http_status(name, timeout=limit) == 403:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


class CountingServer:
    """Accepts TCP on 127.0.0.2:443 and counts connections (a spliced ClientHello lands here)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(SERVER)
        self.count = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()


def sni_reaches_server(name: str, server: CountingServer, timeout: float = 10) -> bool:
    """CONNECT to the stand-in's address, then a TLS ClientHello with SNI `name` through Squid."""
    before = server.count
    try:
        with socket.create_connection(("127.0.0.1", BUMP_PORT), timeout=timeout) as sock:
            sock.sendall(f"CONNECT {SERVER[0]}:{SERVER[1]} HTTP/1.1\r\nHost: {SERVER[0]}:{SERVER[1]}\r\n\r\n".encode())
            if not sock.recv(4096).startswith(b"HTTP/1.1 200"):
                raise SystemExit("Squid refused the CONNECT to the stand-in server")
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            try:
                context.wrap_socket(sock, server_hostname=name).close()
            except (OSError, ssl.SSLError):
                pass  # terminated by Squid, or the stand-in closed: told apart by its count
    except OSError:
        pass
    time.sleep(0.2)
    return server.count > before


def make_cert(directory: Path) -> Path:
    cert = directory / "bench.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench",
                    "-keyout", str(cert), "-out", str(cert)], check=True, capture_output=True)
    return cert


def measure(squid: str, count: int, limit: float, server: CountingServer) -> dict:
    with tempfile.TemporaryDirectory(prefix="squid-trustpositif-") as tmp:
        directory = Path(tmp)
        os.chmod(directory, 0o755)
        domains = directory / "trustpositif.domains"
        names = generate(domains, count)
        conf = write_config(directory, domains, make_cert(directory))
        if os.geteuid() == 0:
            for path in [directory, *directory.iterdir()]:
                shutil.chown(path, "proxy", "proxy")
        listed, unlisted = names[len(names) // 2], "not-listed-anywhere.example"

        started = time.monotonic()
        parse = subprocess.run([squid, "-k", "parse", "-f", str(conf)], capture_output=True, text=True, timeout=limit)
        parse_s = time.monotonic() - started
        if parse.returncode != 0:
            raise SystemExit(f"squid -k parse failed:\n{parse.stderr[-2000:]}")

        log = directory / "cache.log"
        started = time.monotonic()
        proc = subprocess.Popen([squid, "--foreground", "-YC", "-f", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            start_s = wait_denied(listed, limit)
            if start_s is None:
                raise SystemExit(f"squid did not serve within {limit} s at {count} domains:\n"
                                 f"{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
            kids = children(proc.pid)
            memory = {"master": rss_mib(proc.pid), "kids": sum(rss_mib(pid) for pid in kids)}
            answers = {
                "http_listed": http_status(listed, 30),
                "http_subdomain": http_status("www." + listed, 30),
                "sni_listed_spliced": sni_reaches_server(listed, server),
                "sni_unlisted_spliced": sni_reaches_server(unlisted, server),
            }
            accepting = "Accepting "  # one line per listening port, again after a reconfigure
            before = log.read_text(errors="replace").count(accepting)
            reload = probe_outage(lambda: http_status(listed, limit) == 403, lambda: proc.send_signal(signal.SIGHUP),
                                  lambda: log.read_text(errors="replace").count(accepting) >= 2 * before,
                                  limit=limit, interval=0.02)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return {"domains": count, "list_mib": round(domains.stat().st_size / 2**20, 1), "parse_s": round(parse_s, 2),
                "start_s": round(start_s, 2), "rss_master_mib": round(memory["master"]), "rss_kid_mib": round(memory["kids"]),
                "kids": len(kids), "reload_stall_s": round(reload["outage"], 2),
                "reload_logged_s": None if reload["reload_logged_after"] is None else round(reload["reload_logged_after"], 2),
                "reload_over_1s": reload["over_1s"], "reload_failed": reload["failed"], **answers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000,2000000", help="comma-separated domain counts")
    parser.add_argument("--squid", default=shutil.which("squid") or "/usr/sbin/squid")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds allowed for any one step")
    parser.add_argument("--podman", metavar="IMAGE", help="run inside a throw-away container of IMAGE")
    parser.add_argument("--name", default=f"gerbang-bench-squid-{os.getpid()}", help="container name (--podman)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args()
    if args.podman:
        passed = ["--sizes", args.sizes, "--limit", str(args.limit)] + (["--json"] if args.json else [])
        return run_in_podman(args.podman, Path(__file__).name, passed, args.name)
    if not os.path.exists(args.squid):
        print("squid is not installed (use --podman IMAGE)", file=sys.stderr)
        return 2
    header(subprocess.run([args.squid, "-v"], capture_output=True, text=True).stdout.splitlines()[0])
    server = CountingServer()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not args.json:
        print(f"{'domains':>9} {'list MiB':>8} {'parse s':>8} {'start s':>8} {'RSS MiB master+kid':>19} "
              f"{'reload stall s':>15} {'>1 s':>5}  HTTP listed / www.listed; SNI listed / unlisted")
    for count in sizes:
        row = measure(args.squid, count, args.limit, server)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            sni = " / ".join("spliced" if row[k] else "terminated" for k in ("sni_listed_spliced", "sni_unlisted_spliced"))
            print(f"{row['domains']:>9,} {row['list_mib']:>8} {row['parse_s']:>8} {row['start_s']:>8} "
                  f"{row['rss_master_mib']:>9}+{row['rss_kid_mib']:<9} {row['reload_stall_s']:>15} {row['reload_over_1s']:>5}  "
                  f"{row['http_listed']} / {row['http_subdomain']}; {sni}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
