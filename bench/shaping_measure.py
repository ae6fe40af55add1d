"""Measure what shaped clients really get: iperf3 goodput, fairness (Jain), ping latency.

Used by the shaping role's molecule tests, tests/lab/test_shaping.py and bench/shaping_bench.py.
Every command runs inside network namespaces the project created (`ip netns exec NS ...`).

HTB counts layer-2 bytes: a full TCP segment carries 1448 payload bytes (timestamps on) in a
1514-byte frame, so a class of R Mbit/s yields at most ``GOODPUT_RATIO * R`` of iperf3 goodput.
Accuracy is judged against that expected goodput.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MSS_BYTES = 1448  # payload of a full TCP segment (timestamps on)
GOODPUT_RATIO = MSS_BYTES / 1514  # 0.956


def expected_goodput(rate_mbit: float) -> float:
    return rate_mbit * GOODPUT_RATIO


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1.0 = perfectly equal, 1/n = one takes everything."""
    if not values or not any(values):
        return 0.0
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def netns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@dataclass(frozen=True)
class Flow:
    """One iperf3 flow between a client address (in client_ns) and the upstream server."""
    client_ns: str
    client_ip: str
    server_ns: str
    server_ip: str
    download: bool = True  # True: upstream sends to the client (iperf3 -R)
    streams: int = 1       # parallel TCP streams of this flow (iperf3 -P): a device with more demand


def _start_server(flow: Flow, port: int) -> subprocess.Popen:
    server = subprocess.Popen(netns(flow.server_ns, "iperf3", "-s", "-1", "-B", flow.server_ip, "-p", str(port)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until it listens
        probe = subprocess.run(netns(flow.server_ns, "ss", "-Hltn", f"sport = :{port}"), capture_output=True, text=True)
        if probe.stdout.strip():
            return server
        time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"iperf3 server on {flow.server_ns}:{port} did not start")


def run_flows(flows: list[Flow], seconds: float = 5, omit: int = 1, base_port: int = 5401) -> list[float]:
    """Run the flows at the same time; return each one's receiver goodput in Mbit/s."""
    return [r["mbit"] for r in run_flows_detailed(flows, seconds, omit, base_port)]


def run_flows_detailed(flows: list[Flow], seconds: float = 5, omit: int = 1, base_port: int = 5401) -> list[dict]:
    """Run the flows at the same time; per flow the receiver's goodput in Mbit/s and ``bytes``,
    the omitted start left out, and ``bytes_total``: for a download every payload byte the client
    received, the omitted seconds included (what a class counter on the path saw, less the
    headers); for an upload the same as ``bytes``. ``unread`` (payload the sender wrote that the
    receiver had not counted when the test ended, still crossing the path) and ``retransmits``
    (segments the sender sent again) are what a class counter may see on top of ``bytes_total``."""
    servers = [_start_server(flow, base_port + i) for i, flow in enumerate(flows)]
    clients = []
    try:
        for i, flow in enumerate(flows):
            argv = ["iperf3", "-c", flow.server_ip, "-B", flow.client_ip, "-p", str(base_port + i),
                    "-t", str(seconds), "-O", str(omit), "-P", str(flow.streams), "-J"]
            if flow.download:
                argv.append("-R")
            clients.append(subprocess.Popen(netns(flow.client_ns, *argv), stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True))
        results = []
        for proc, flow in zip(clients, flows):
            out, err = proc.communicate(timeout=seconds + omit + 20)
            data = json.loads(out) if out.strip() else {}
            if proc.returncode != 0 or "error" in data:
                raise RuntimeError(f"iperf3 failed: {data.get('error', err)}")
            received = data["end"]["sum_received"]
            # For -R the client is the receiver and its intervals count what it received.
            total = sum(i["sum"]["bytes"] for i in data["intervals"]) if flow.download else received["bytes"]
            sent = data["end"].get("sum_sent", {})
            results.append({"mbit": received["bits_per_second"] / 1e6, "bytes": received["bytes"],
                            "bytes_total": total, "unread": max(0, sent.get("bytes", 0) - received["bytes"]),
                            "retransmits": sent.get("retransmits", 0)})
        return results
    finally:
        for proc in clients + servers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def start_background(flows: list[Flow], seconds: float, base_port: int = 5501) -> subprocess.Popen:
    """Saturating flows in a child process, while the caller measures something else; read
    their outcome with finish_background (a failed iperf3 makes it raise)."""
    code = ("import sys, json; sys.path.insert(0, %r); import shaping_measure as m; "
            "flows = [m.Flow(**f) for f in json.loads(sys.argv[1])]; "
            "print(json.dumps(m.run_flows_detailed(flows, %r, omit=0, base_port=%d)))"
            % (str(Path(__file__).resolve().parent), seconds, base_port))
    spec = json.dumps([dataclasses.asdict(f) for f in flows])
    return subprocess.Popen([sys.executable, "-c", code, spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_background(proc: subprocess.Popen, timeout: float = 60) -> list[dict]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"background flows failed (exit {proc.returncode}): {err.strip()[-2000:]}")
    return json.loads(out)


def ping(ns: str, source: str, target: str, count: int = 20, interval: float = 0.2) -> dict:
    """Median and 95th percentile RTT (ms) of `count` pings."""
    out = subprocess.run(netns(ns, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", "-I", source, target),
                         capture_output=True, text=True, timeout=count * interval + 15).stdout
    rtts = sorted(float(m) for m in re.findall(r"time=([\d.]+) ms", out))
    if not rtts:
        raise RuntimeError(f"no ping reply from {target}: {out}")
    return {"median": statistics.median(rtts), "p95": rtts[min(len(rtts) - 1, int(0.95 * len(rtts)))],
            "received": len(rtts), "sent": count}


def class_bytes(exec_prefix: list[str], device: str) -> dict[str, int]:
    """Bytes sent per HTB class on `device`, read from the leaf qdiscs' JSON counters
    (iproute2 6.1 prints HTB classes only as text; each leaf qdisc's parent is its class)."""
    out = subprocess.run([*exec_prefix, "tc", "-j", "-s", "qdisc", "show", "dev", device],
                         capture_output=True, text=True, check=True).stdout
    return {q["parent"]: q["bytes"] for q in json.loads(out) if "parent" in q}
