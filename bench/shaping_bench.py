#!/usr/bin/env python3
"""Print measured shaping figures: accuracy, fairness, government-app guarantee and latency.

    .venv/bin/python bench/shaping_bench.py --standalone [--sites bappeda,diskominfo,rsud]
    .venv/bin/python bench/shaping_bench.py --lab [--sites diskominfo,rsud]   (lab up, site.yml applied)

--standalone renders the shaping role's script for each site (bench/shaping_render.yml, from
the compiled policy, leaf qdisc pfifo limit 30 as in the lab) and applies it in a gateway
namespace this bench creates (shpb-gw between shpb-up = upstream and shpb-lan = clients).
The nftables role's classification contract (docs/architecture.md: `meta priority set` from
per-device maps, government-app addresses to 1:2) is loaded beside it. Everything is torn down
at the end. --lab measures sites of the running whole-city lab through tests/lab/labtools.py
(real nftables classification, the government app's stand-in in the lab internet). Goodput is judged against 0.956 x the class rate (HTB counts layer-2 bytes).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import shaping_measure as measure  # noqa: E402

# Parallel streams of device 0 in the fairness and government-app measurements (as
# tests/lab/test_shaping.py): a device with more demand than the others.
GREEDY_STREAMS = 8


@dataclass
class SiteUnderTest:
    site: dict                       # compiled site policy
    gateway: list[str]               # command prefix that runs a command on the gateway
    clients: list[tuple[str, str]]   # registered devices: (netns, address)
    upstream: tuple[str, str]        # (netns, address) where iperf3 servers run
    govapp: tuple[str, str]          # (netns, address) of a government app

    def flow(self, client, download=True, server=None, streams=1):
        return measure.Flow(*client, *(server or self.upstream), download, streams)


def measure_site(sut: SiteUnderTest, seconds: float = 5) -> dict:
    bw = sut.site["bandwidth"]
    ceil, up_ceil = bw["ceil_mbit"], bw["upload_ceil_mbit"]
    dev_ceil = min(bw["device_ceil_mbit"], ceil)
    out = {"site": sut.site["name"], "ceil_mbit": ceil}
    [down] = measure.run_flows([sut.flow(sut.clients[0])], seconds)
    [up] = measure.run_flows([sut.flow(sut.clients[0], download=False)], seconds)
    out["download"] = {"goodput": down, "expected": measure.expected_goodput(dev_ceil)}
    out["upload"] = {"goodput": up, "expected": measure.expected_goodput(min(bw["device_ceil_mbit"], up_ceil))}
    # Unequal demand: device 0 opens GREEDY_STREAMS streams, the others one each.
    shares = measure.run_flows([sut.flow(c, streams=GREEDY_STREAMS if i == 0 else 1) for i, c in enumerate(sut.clients[:5])],
                               seconds + 1, omit=2)
    out["fairness"] = {"shares": shares, "jain": measure.jain(shares), "sum": sum(shares),
                       "expected_sum": measure.expected_goodput(ceil)}
    # Government app: one bulk flow from the app to device 0 while device 0 itself saturates the
    # site with GREEDY_STREAMS streams from the internet and four others one stream each (without
    # class 1:2 the app would share device 0's class with its own streams).
    saturating = [sut.flow(sut.clients[0], streams=GREEDY_STREAMS)] + [sut.flow(c) for c in sut.clients[1:5]]
    gov = sut.flow(sut.clients[0], server=sut.govapp)
    before = measure.class_bytes(sut.gateway, sut.site["lan"]["interface"])
    results = measure.run_flows_detailed([gov] + saturating, seconds + 1, omit=2)
    after = measure.class_bytes(sut.gateway, sut.site["lan"]["interface"])
    out["govapp"] = {"goodput": results[0]["mbit"], "guaranteed": measure.expected_goodput(bw["govapp_rate_mbit"]),
                     "bytes": results[0]["bytes_total"], "class_bytes": after.get("1:2", 0) - before.get("1:2", 0),
                     "others": [r["mbit"] for r in results[1:]]}
    # Latency of the government-app class from that saturating device: idle, then loaded; its
    # ping to the internet meanwhile waits in its own queue (what the app would see without 1:2).
    idle = measure.ping(*sut.clients[0], sut.govapp[1], count=20)
    background = measure.start_background(saturating, seconds=14)
    try:
        time.sleep(3)
        loaded = measure.ping(*sut.clients[0], sut.govapp[1], count=30, interval=0.2)
        own_queue = measure.ping(*sut.clients[0], sut.upstream[1], count=20, interval=0.2)
    finally:
        measure.finish_background(background)
    out["latency"] = {"govapp_idle": idle, "govapp_loaded": loaded, "own_queue_loaded": own_queue}
    return out


# ---- standalone: a gateway namespace running the role's rendered script ----------------------

GW, UP, LAN = "shpb-gw", "shpb-up", "shpb-lan"


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def teardown():
    for ns in (GW, UP, LAN):
        sh("ip", "netns", "del", ns, check=False)


def classification(site: dict, clients: list[str]) -> str:
    """The nftables role's contract for these clients (docs/architecture.md)."""
    by_ip = {d["ip"]: d["classid"] for d in site["devices"]}
    elements = ", ".join(f"{ip} : {by_ip[ip]}" for ip in clients)
    govapps = ", ".join(site["govapp_cidrs"])
    return f"""table inet shaping_bench {{
  set govapp_v4 {{ type ipv4_addr; flags interval; elements = {{ {govapps} }}; }}
  map download {{ type ipv4_addr : classid; elements = {{ {elements} }}; }}
  map upload {{ type ipv4_addr : classid; elements = {{ {elements} }}; }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    meta priority set ip daddr map @download
    meta priority set ip saddr map @upload
    ip saddr @govapp_v4 meta priority set 1:2
    ip daddr @govapp_v4 meta priority set 1:2
  }}
}}
"""


def standalone_site(site: dict, script: Path) -> SiteUnderTest:
    teardown()
    for ns in (GW, UP, LAN):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    wan, lan = site["wan"], site["lan"]
    govapp_ip = str(next(ipaddress.ip_network(site["govapp_cidrs"][0]).hosts()))
    sh("ip", "-n", GW, "link", "add", wan["interface"], "type", "veth", "peer", "name", "up0", "netns", UP)
    sh("ip", "-n", GW, "link", "add", lan["interface"], "type", "veth", "peer", "name", "lan0", "netns", LAN)
    sh("ip", "-n", GW, "addr", "add", wan["address"], "dev", wan["interface"])
    sh("ip", "-n", GW, "addr", "add", f"{lan['address']}/{lan['prefixlen']}", "dev", lan["interface"])
    sh("ip", "-n", UP, "addr", "add", f"{wan['gateway']}/{wan['prefixlen']}", "dev", "up0")
    sh("ip", "-n", UP, "addr", "add", f"{govapp_ip}/32", "dev", "up0")
    clients = [d["ip"] for d in site["devices"]][:5]
    for ip in clients:
        sh("ip", "-n", LAN, "addr", "add", f"{ip}/{lan['prefixlen']}", "dev", "lan0")
    for ns, dev in ((GW, wan["interface"]), (GW, lan["interface"]), (UP, "up0"), (LAN, "lan0")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", GW, "route", "add", "default", "via", wan["gateway"])
    sh("ip", "-n", UP, "route", "add", lan["subnet"], "via", wan["ip"])
    sh("ip", "-n", LAN, "route", "add", "default", "via", lan["address"])
    sh("ip", "netns", "exec", GW, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    subprocess.run(["ip", "netns", "exec", GW, "nft", "-f", "-"], input=classification(site, clients), text=True, check=True)
    sh("ip", "netns", "exec", GW, "sh", str(script), "apply")
    time.sleep(1.5)  # let IPv6 DAD and neighbour discovery settle
    return SiteUnderTest(site, ["ip", "netns", "exec", GW], [(LAN, ip) for ip in clients], (UP, wan["gateway"]), (UP, govapp_ip))


def lab_site(name: str) -> SiteUnderTest:
    """A site of the running whole-city lab, after site.yml (real nftables classification)."""
    sys.path.insert(0, str(REPO / "tests/lab"))
    import labtools  # noqa: PLC0415 (lab mode only)
    return SiteUnderTest(labtools.compiled_site(name), labtools.gateway_exec(name), labtools.clients(name, 5),
                         labtools.upstream(), labtools.govapp_server())


def render(sites: list[str], inventory: str, workdir: Path) -> None:
    subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", inventory, str(REPO / "bench/shaping_render.yml"),
                    "--limit", ",".join(sites), "-e", f"shaping_bench_dir={workdir}", "-e", "shaping_leaf_qdisc=pfifo",
                    "-e", "shaping_leaf_qdisc_options='limit 30'"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def report(result: dict) -> None:
    def pct(measured, expected):
        return f"{measured:7.2f} Mbit/s (expected {expected:6.2f}, {100 * (measured / expected - 1):+5.1f} %)"
    print(f"\n== {result['site']} (site ceiling {result['ceil_mbit']} Mbit/s)")
    print(f"  download, one device   {pct(result['download']['goodput'], result['download']['expected'])}")
    print(f"  upload, one device     {pct(result['upload']['goodput'], result['upload']['expected'])}")
    fair = result["fairness"]
    print(f"  {len(fair['shares'])} devices together (first with {GREEDY_STREAMS} streams)  {' '.join(f'{s:.2f}' for s in fair['shares'])}  "
          f"Jain {fair['jain']:.3f}  sum {pct(fair['sum'], fair['expected_sum'])}")
    gov = result["govapp"]
    print(f"  govapp flow to a device saturating itself + 4 busy  {gov['goodput']:7.2f} Mbit/s (guaranteed "
          f"{gov['guaranteed']:.2f}); class 1:2 +{gov['class_bytes']} B for {gov['bytes']} B received; "
          f"others {' '.join(f'{s:.2f}' for s in gov['others'])}")
    lat = result["latency"]
    print(f"  govapp ping idle       median {lat['govapp_idle']['median']:.3f} ms  p95 {lat['govapp_idle']['p95']:.3f} ms")
    print(f"  govapp ping, loaded    median {lat['govapp_loaded']['median']:.3f} ms  p95 {lat['govapp_loaded']['p95']:.3f} ms")
    print(f"  same device to the internet, loaded (its own queue) median {lat['own_queue_loaded']['median']:.3f} ms  "
          f"p95 {lat['own_queue_loaded']['p95']:.3f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--standalone", action="store_true", help="build a gateway namespace and apply the rendered script")
    mode.add_argument("--lab", action="store_true", help="measure sites of the running lab (after site.yml; 5 clients each)")
    parser.add_argument("--sites", help="comma-separated sites (default: bappeda,diskominfo,rsud standalone; diskominfo,rsud lab)")
    parser.add_argument("--inventory", default="inventory/production", help="used only to compile the policy; no host is contacted")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    sites = (args.sites or ("diskominfo,rsud" if args.lab else "bappeda,diskominfo,rsud")).split(",")
    results = []
    if args.lab:
        for name in sites:
            results.append(measure_site(lab_site(name), args.seconds))
            report(results[-1])
        sites = []
    with tempfile.TemporaryDirectory(prefix="shaping-bench-") as tmp:
        work = Path(tmp)
        render(sites, args.inventory, work)
        try:
            for name in sites:
                site = json.loads((work / f"{name}.json").read_text())
                results.append(measure_site(standalone_site(site, work / f"{name}.sh"), args.seconds))
                report(results[-1])
        finally:
            teardown()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
