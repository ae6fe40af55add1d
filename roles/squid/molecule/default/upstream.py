#!/usr/bin/env python3
"""Stand-in for the internet behind the gateway: DNS, HTTP on :80 and HTTPS on :443 for any name.

Runs in the scenario's upstream namespace. Every answer names the Host (or SNI) it was asked for,
so a test can tell a served page from Squid's block page. `/cacheable` may be cached;
`/slow?seconds=N` trickles one 1 KiB chunk per second for N seconds (a long download that must
survive `squid -k reconfigure`).
The DNS answers every A question with this server's address (Squid verifies intercepted Host
headers and SNIs against DNS, as it does against the gateway's dnsmasq in the city).
"""

from __future__ import annotations

import argparse
import http.server
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server API)
        url = urlparse(self.path)
        host = (self.headers.get("Host") or "").split(":")[0]
        if url.path == "/slow":
            seconds = int(parse_qs(url.query).get("seconds", ["5"])[0])
            chunk = b"x" * 1024
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(chunk) * seconds))
            self.end_headers()
            for _ in range(seconds):
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(1)
            return
        body = f"upstream ok host={host}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        # /cacheable may be kept by a cache; everything else must always come from here.
        self.send_header("Cache-Control", "max-age=600" if url.path == "/cacheable" else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_dns(address: str) -> None:
    """Answer every standard query with one A record (TTL 5 s) pointing at `address`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    answer_ip = socket.inet_aton(address)
    while True:
        query, client = sock.recvfrom(512)
        if len(query) < 12:
            continue
        end = 12
        while end < len(query) and query[end] != 0:
            end += query[end] + 1
        question = query[12:end + 5]
        qtype = question[-4:-2]
        header = query[:2] + b"\x81\x80" + b"\x00\x01" + (b"\x00\x01" if qtype == b"\x00\x01" else b"\x00\x00") + b"\x00\x00\x00\x00"
        record = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04" + answer_ip if qtype == b"\x00\x01" else b""
        sock.sendto(header + question + record, client)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "upstream.key", directory / "upstream.crt"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=upstream.test", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    return key, cert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--state", type=Path, required=True, help="directory for the key pair")
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    key, cert = self_signed(args.state)
    plain = Server((args.address, 80), Handler)
    secure = Server((args.address, 443), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    threading.Thread(target=serve_dns, args=(args.address,), daemon=True).start()
    secure.serve_forever()


if __name__ == "__main__":
    main()
