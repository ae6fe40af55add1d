#!/usr/bin/env python3
"""What HTB does when the children's guaranteed rates add up to more than their parent's rate.

    .venv/bin/python bench/htb_oversubscription.py [--devices 14] [--ceil 10] [--seconds 8]

Three namespaces this script creates and removes: ovs-snd -> ovs-mid -> ovs-rcv. The shaper
is an HTB tree on ovs-snd's egress, shaped like a site's (docs/shaping.md): root 1:1 rate = ceil
= the site ceiling, 1:2 government apps (prio 0), 1:3 default, one class per device. Every
device class carries one saturating TCP flow (iperf3), classified by destination port (u32).

Run 1 and 2, the HTB tree alone (no government-app class): device classes at 1 Mbit/s each
(their rates add up to more than the root's) against the fair share (ceil - default) / devices:
the site total is measured.
Run 3 and 4, the same site tree with a government-app flow, and behind the shaper a 10 Mbit/s
line (tbf on ovs-mid's egress, a site that really has only its allocation): the government
app's goodput against its guaranteed rate, with device rates of 1 Mbit/s against the fair
share (ceil - govapp - default) / devices that lib/gerbang_kota/policy.py compiles.
Goodput is judged against 0.956 x the rate (HTB counts layer-2 bytes).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shaping_measure as measure  # noqa: E402

SND, MID, RCV = "ovs-snd", "ovs-mid", "ovs-rcv"
SND_IP, RCV_IP = "10.99.1.1", "10.99.2.1"
BASE_PORT = 5401


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def teardown():
    for ns in (SND, MID, RCV):
        sh("ip", "netns", "del", ns, check=False)


def setup(line_mbit: float | None):
    teardown()
    for ns in (SND, MID, RCV):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", SND, "link", "add", "s0", "type", "veth", "peer", "name", "m0", "netns", MID)
    sh("ip", "-n", MID, "link", "add", "m1", "type", "veth", "peer", "name", "r0", "netns", RCV)
    sh("ip", "-n", SND, "addr", "add", f"{SND_IP}/24", "dev", "s0")
    sh("ip", "-n", MID, "addr", "add", "10.99.1.254/24", "dev", "m0")
    sh("ip", "-n", MID, "addr", "add", "10.99.2.254/24", "dev", "m1")
    sh("ip", "-n", RCV, "addr", "add", f"{RCV_IP}/24", "dev", "r0")
    for ns, dev in ((SND, "s0"), (MID, "m0"), (MID, "m1"), (RCV, "r0")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", SND, "route", "add", "default", "via", "10.99.1.254")
    sh("ip", "-n", RCV, "route", "add", "default", "via", "10.99.2.254")
    sh("ip", "netns", "exec", MID, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    if line_mbit:
        # The site's real line: a FIFO at the allocation, where no class is known any more.
        sh("ip", "netns", "exec", MID, "tc", "qdisc", "add", "dev", "m1", "root", "tbf",
           "rate", f"{int(line_mbit * 1000)}kbit", "burst", "20kb", "latency", "50ms")


def kbit(mbit: float) -> str:
    return f"{int(mbit * 1000)}kbit"


def apply_tree(ceil: float, device_rate: float, devices: int, govapp_rate: float | None) -> list[str]:
    """The site-shaped tree on ovs-snd's egress; returns the class id of each flow, in order."""
    lines = ["qdisc add dev s0 root handle 1: htb default 3",
             f"class add dev s0 parent 1: classid 1:1 htb rate {kbit(ceil)} ceil {kbit(ceil)} quantum 1514",
             f"class add dev s0 parent 1:1 classid 1:3 htb rate {kbit(1)} ceil {kbit(ceil)} quantum 1514 prio 1"]
    classes = []
    if govapp_rate:
        lines.append(f"class add dev s0 parent 1:1 classid 1:2 htb rate {kbit(govapp_rate)} ceil {kbit(ceil)} "
                     "quantum 1514 prio 0")
        classes.append("1:2")
    classes += [f"1:{0x100 + i:x}" for i in range(1, devices + 1)]
    for classid in classes[1 if govapp_rate else 0:]:
        lines.append(f"class add dev s0 parent 1:1 classid {classid} htb rate {kbit(device_rate)} ceil {kbit(ceil)} "
                     "quantum 1514 prio 1")
    for i, classid in enumerate(classes):
        lines.append(f"qdisc add dev s0 parent {classid} handle {classid.split(':')[1]}: pfifo limit 30")
        lines.append(f"filter add dev s0 parent 1: protocol ip prio 1 u32 match ip dport {BASE_PORT + i} 0xffff "
                     f"flowid {classid}")
    sh("ip", "netns", "exec", SND, "tc", "qdisc", "del", "dev", "s0", "root", check=False)
    subprocess.run(["ip", "netns", "exec", SND, "tc", "-batch", "-"], input="\n".join(lines) + "\n", text=True,
                   check=True)
    return classes


def run(classes: list[str], seconds: float) -> list[float]:
    flows = [measure.Flow(SND, SND_IP, RCV, RCV_IP, download=False) for _ in classes]
    return measure.run_flows(flows, seconds=seconds, omit=2, base_port=BASE_PORT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=14)
    parser.add_argument("--ceil", type=float, default=10, help="site ceiling, Mbit/s (root class rate = ceil)")
    parser.add_argument("--device-rate", type=float, default=1, help="the policy's device_rate_mbit")
    parser.add_argument("--govapp-rate", type=float, default=2, help="government-app class rate, Mbit/s")
    parser.add_argument("--default-rate", type=float, default=1, help="default class 1:3 rate, Mbit/s")
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    n, ceil = args.devices, args.ceil
    # A timeout's SIGTERM still removes the namespaces and the iperf3s (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        setup(None)
        print(f"HTB root {ceil} Mbit/s, {n} device classes with one saturating flow each (expected goodput of "
              f"the root: {measure.expected_goodput(ceil):.2f} Mbit/s)")
        fair = int((ceil - args.default_rate) / n * 1000) / 1000
        for label, rate in (("device rate", args.device_rate), ("fair share", fair)):
            rates = run(apply_tree(ceil, rate, n, None), args.seconds)
            children = args.default_rate + n * rate
            print(f"  {label} {rate:.3f} Mbit/s (children sum {children:.2f}): site total {sum(rates):.2f} Mbit/s "
                  f"({100 * (sum(rates) / measure.expected_goodput(ceil) - 1):+.1f} % of the root's goodput); "
                  f"per device {min(rates):.2f}-{max(rates):.2f}")
        setup(ceil)
        gov = args.govapp_rate
        fair = int((ceil - gov - args.default_rate) / n * 1000) / 1000
        print(f"\nSame site behind a {ceil} Mbit/s line (tbf), government-app class {gov} Mbit/s prio 0 "
              f"(guaranteed goodput {measure.expected_goodput(gov):.2f}) + {n} busy devices")
        for label, rate in (("device rate", args.device_rate), ("fair share", fair)):
            rates = run(apply_tree(ceil, rate, n, gov), args.seconds)
            children = gov + args.default_rate + n * rate
            print(f"  {label} {rate:.3f} Mbit/s (children sum {children:.2f}): government app {rates[0]:.2f} Mbit/s "
                  f"({100 * (rates[0] / measure.expected_goodput(gov) - 1):+.1f} % of its guarantee); site total "
                  f"{sum(rates):.2f}; per device {min(rates[1:]):.2f}-{max(rates[1:]):.2f}")
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
