#!/usr/bin/env python3
"""The lab's stand-in internet web server (runs inside the lab's internet namespace only).

Answers every name the lab DNS hands out: HTTP on 80, HTTPS on 443 (one certificate from the
lab CA covering every stand-in name, so SNI and verification work as on the real web), TLS on
853 (where a DNS-over-TLS resolver would listen) and a UDP echo on 443 (where QUIC would go).
Every request is logged as one JSON line, so tests can prove a blocked request never arrived.
``GET /bytes/<n>`` returns n bytes (traffic generation for monitoring tests); ``GET
/trickle/<n>`` returns n KiB, one a second (a stream that outlasts every buffer on the way, for
window-edge tests); ``POST`` (any path) reads the request body and answers with the number of
bytes received (upload tests).
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_LOCK = threading.Lock()


class StandIn(BaseHTTPRequestHandler):
    server_version = "gerbang-lab-standin/1"
    log_path = None

    def log_message(self, fmt, *args):  # quiet stderr; requests go to the JSON log
        return

    def _record(self, status: int, size: int) -> None:
        entry = {"time": time.time(), "client": self.client_address[0], "host": self.headers.get("Host", ""),
                 "path": self.path, "status": status, "bytes": size, "tls": isinstance(self.connection, ssl.SSLSocket)}
        with LOG_LOCK, open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    def do_GET(self):  # noqa: N802 (http.server's naming)
        host = (self.headers.get("Host") or "").split(":")[0]
        if self.path.startswith("/bytes/"):
            size = min(int(self.path.split("/")[2] or 0), 1 << 30)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            left = size
            while left > 0:
                self.wfile.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            self._record(200, size)
            return
        if self.path.startswith("/trickle/"):
            seconds = min(int(self.path.split("/")[2] or 0), 3600)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(seconds * 1024))
            self.end_headers()
            try:
                for _ in range(seconds):
                    self.wfile.write(b"x" * 1024)
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:  # the client (or the gateway's cutter) closed the connection
                self._record(499, 0)
                return
            self._record(200, seconds * 1024)
            return
        body = f"<html><body><h1>stand-in: {host}</h1><p>gerbang-lab {host}{self.path}</p></body></html>\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._record(200, len(body))

    do_HEAD = do_GET

    def do_POST(self):  # noqa: N802 (http.server's naming)
        left = int(self.headers.get("Content-Length") or 0)
        received = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            received += len(chunk)
            left -= len(chunk)
        body = f"received {received}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._record(200, received)


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, context):
        super().__init__(address, handler)
        self.context = context

    def get_request(self):
        sock, addr = super().get_request()
        sock.settimeout(10)
        try:
            return self.context.wrap_socket(sock, server_side=True), addr
        except (ssl.SSLError, OSError):
            sock.close()
            raise


def udp_echo(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        data, addr = sock.recvfrom(2048)
        sock.sendto(data, addr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    StandIn.log_path = args.log
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    servers = [ThreadingHTTPServer(("0.0.0.0", 80), StandIn)]
    servers += [TLSServer(("0.0.0.0", port), StandIn, context) for port in (443, 853)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=udp_echo, args=(443,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
