#!/usr/bin/env python3
"""The whole-city lab on one machine: real Debian gateways, real clients, a stand-in internet.

    lab.py up [--sites a,b,c]     bring up gateways (default: all 34) with their clients
    lab.py down                   remove everything the lab created
    lab.py verify-clean           exit 1, naming each, when anything of the lab is left
    lab.py status                 print the lab description (JSON)

Topology (every name carries the lab's name, env GERBANG_LAB, default "lab"):

  <lab>-inet  netns: bridge br0 100.64.0.1/16 = the gateways' upstream router, plus the
              stand-in internet: DNS for every name the policy mentions, web servers on
              80/443 (TLS with SNI, lab CA) and 853, a UDP/443 echo, iperf3 servers.
  <lab>-g<id> netns of gateway <id>: eth0 WAN 100.64.1.<id>/16, eth1 LAN (production subnet);
              the gateway container (systemd PID 1, image localhost/gerbang-gw) joins it.
  <lab>-s<id> netns holding the site's LAN switch (bridge) between eth1 and the clients.
  <lab>-c<id>-<n> one netns per client device: registered devices take MACs from
              host_vars/<site>/devices.yml, the last client is an unregistered device.

State (PIDs, logs, lab.json describing all of it) lives in /run/gerbang-<lab>/. Every process
the lab starts outside a container carries GERBANG_LAB_PROCESS=<lab> in its environment, so one
left running is found after its PID file and namespace are gone.
Only addresses inside these namespaces are ever used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))

from gerbang_kota.inventory import compile_inventory  # noqa: E402

LAB = os.environ.get("GERBANG_LAB", "lab")
RUN = Path(f"/run/gerbang-{LAB}")
IMAGE = os.environ.get("GERBANG_LAB_IMAGE", "localhost/gerbang-gw:latest")
INVENTORY = ROOT / "inventory/lab"
INET = f"{LAB}-inet"
INET_ROUTER = "100.64.0.1"
PUBLIC_WEB = "100.64.0.10"
IPERF_PORTS = range(5201, 5211)
# Sites whose fairness/iperf tests need several busy devices.
MANY_CLIENTS = {"diskominfo": 5, "rsud": 5}
DEFAULT_CLIENTS = 2
# Allowed public sites (in no category): what "the internet still works" means in checks.
ALLOWED_STANDINS = ["kompas.com", "detik.com", "wikipedia.org", "serangkota.go.id"]
UNREGISTERED_MAC = "02:00:5e:00:{id:02x}:99"
# Names of the lab's network namespaces (module docstring); other labs' names never match.
NETNS_NAME = re.compile(rf"^{re.escape(LAB)}-(inet|g\d+|s\d+|c\d+-\d+)$")
PROCESS_MARK = "GERBANG_LAB_PROCESS"


def sh(*args: str, check: bool = True, quiet: bool = False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        raise SystemExit(f"lab: {' '.join(args)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    if not quiet and result.stdout.strip() and os.environ.get("GERBANG_LAB_DEBUG"):
        print(result.stdout.strip())
    return result


def ns_exec(ns: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, **kwargs)


def netns_add(name: str) -> None:
    if not Path(f"/run/netns/{name}").exists():
        sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")


def link_exists(ns: str, dev: str) -> bool:
    return sh("ip", "-n", ns, "link", "show", dev, check=False, quiet=True).returncode == 0


# --- the stand-in internet ----------------------------------------------------------------------

def standin_names(city: dict) -> dict[str, str]:
    """Every name the policy mentions -> the lab address that serves it."""
    names: dict[str, str] = {}
    for site in city["sites"].values():
        for category in site["categories"].values():
            for domain in category["domains"]:
                names.setdefault(domain, PUBLIC_WEB)
        for domain in site["allow_domains"]:
            names.setdefault(domain, PUBLIC_WEB)
    for domain in ALLOWED_STANDINS:
        names.setdefault(domain, PUBLIC_WEB)
    any_site = next(iter(city["sites"].values()))
    spare = 100
    for app in sorted((g for s in city["sites"].values() for g in s["govapps"]), key=lambda g: g["name"]):
        for domain in app["domains"]:
            if domain in names and names[domain] != PUBLIC_WEB:
                continue
            if app["cidrs"]:
                base = app["cidrs"][0].split("/")[0].rsplit(".", 1)
                names[domain] = f"{base[0]}.{int(base[1]) + 1}"
            else:
                names[domain] = f"100.64.2.{spare}"
                spare += 1
    for target in any_site["safe_mode"]["safesearch_targets"]:
        names[target["target"]] = target["address"]
    doh = any_site["doh_addresses"]
    for index, domain in enumerate(any_site["doh_domains"]):
        names[domain] = doh[index % len(doh)] if doh else PUBLIC_WEB
    return names


def lab_certificates(names: list[str]) -> tuple[Path, Path, Path]:
    """A lab CA and one server certificate for every stand-in name (and its subdomains)."""
    ca_key, ca_crt = RUN / "ca.key", RUN / "ca.crt"
    key, crt = RUN / "standin.key", RUN / "standin.crt"
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=Gerbang Kota lab CA",
       "-keyout", str(ca_key), "-out", str(ca_crt))
    san = ",".join(f"DNS:{n},DNS:*.{n}" for n in sorted(set(names)))
    (RUN / "san.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n", encoding="utf-8")
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=gerbang-lab-standin", "-keyout", str(key),
       "-out", str(RUN / "standin.csr"))
    sh("openssl", "x509", "-req", "-in", str(RUN / "standin.csr"), "-CA", str(ca_crt), "-CAkey", str(ca_key),
       "-CAcreateserial", "-days", "30", "-extfile", str(RUN / "san.ext"), "-out", str(crt))
    return ca_crt, key, crt


def start_daemon(name: str, ns: str, *command: str) -> None:
    log = open(RUN / f"{name}.log", "ab")  # noqa: SIM115 (the daemon keeps it)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *command], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, PROCESS_MARK: LAB})
    (RUN / f"{name}.daemon.pid").write_text(str(proc.pid), encoding="utf-8")


def internet_up(city: dict) -> dict:
    netns_add(INET)
    if not link_exists(INET, "br0"):
        sh("ip", "-n", INET, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", INET, "addr", "add", f"{INET_ROUTER}/16", "dev", "br0")
        sh("ip", "-n", INET, "link", "set", "br0", "up")
    names = standin_names(city)
    addresses = sorted(set(names.values()) | {PUBLIC_WEB}, key=lambda a: tuple(int(x) for x in a.split(".")))
    for address in addresses:
        sh("ip", "-n", INET, "addr", "add", f"{address}/32", "dev", "br0", check=False, quiet=True)
    # Replies to LAN clients go back through their gateway (routes added per site).
    dns_conf = RUN / "inet-dnsmasq.conf"
    lines = ["no-resolv", "no-hosts", f"listen-address={INET_ROUTER}", "bind-interfaces", "log-queries",
             f"log-facility={RUN / 'inet-dns-queries.log'}", "local-ttl=30"]
    lines += [f"address=/{name}/{address}" for name, address in sorted(names.items())]
    dns_conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not (RUN / "inet-dns.daemon.pid").exists():
        start_daemon("inet-dns", INET, "dnsmasq", "--keep-in-foreground", f"--conf-file={dns_conf}",
                     f"--pid-file={RUN / 'inet-dnsmasq.pid'}", "--user=root")
    if not (RUN / "inet-web.daemon.pid").exists():
        ca, key, crt = lab_certificates(list(names))
        start_daemon("inet-web", INET, sys.executable, str(ROOT / "scripts/lab/standin_web.py"),
                     "--cert", str(crt), "--key", str(key), "--log", str(RUN / "inet-web-requests.log"))
    for port in IPERF_PORTS:
        if not (RUN / f"iperf3-{port}.daemon.pid").exists():
            start_daemon(f"iperf3-{port}", INET, "iperf3", "--server", "--port", str(port), "--bind", INET_ROUTER)
    return {"ns": INET, "router": INET_ROUTER, "dns": INET_ROUTER, "public_web": PUBLIC_WEB,
            "iperf3": {"address": INET_ROUTER, "ports": list(IPERF_PORTS)}, "names": names,
            "ca": str(RUN / "ca.crt")}


# --- gateways and clients -------------------------------------------------------------------------

def site_up(site: dict) -> dict:
    sid, name = site["id"], site["name"]
    gw_ns, sw_ns, container = f"{LAB}-g{sid}", f"{LAB}-s{sid}", f"{LAB}-{name}"
    netns_add(gw_ns)
    netns_add(sw_ns)
    wan, lan = site["wan"], site["lan"]
    if not link_exists(gw_ns, "eth0"):
        sh("ip", "link", "add", f"{LAB[:4]}w{sid}", "netns", gw_ns, "type", "veth", "peer", "name", f"w{sid}", "netns", INET)
        sh("ip", "-n", gw_ns, "link", "set", f"{LAB[:4]}w{sid}", "name", "eth0")
        sh("ip", "-n", gw_ns, "addr", "add", wan["address"], "dev", "eth0")
        sh("ip", "-n", gw_ns, "link", "set", "eth0", "up")
        sh("ip", "-n", gw_ns, "route", "add", "default", "via", wan["gateway"])
        sh("ip", "-n", INET, "link", "set", f"w{sid}", "master", "br0", "up")
        # The upstream router knows the office LAN behind this gateway (no NAT needed to answer;
        # the gateway NATs anyway, as in production).
        sh("ip", "-n", INET, "route", "replace", lan["subnet"], "via", wan["ip"])
    if not link_exists(sw_ns, "br0"):
        sh("ip", "-n", sw_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw_ns, "link", "set", "br0", "up")
    if not link_exists(gw_ns, "eth1"):
        sh("ip", "link", "add", f"{LAB[:4]}l{sid}", "netns", gw_ns, "type", "veth", "peer", "name", "gw", "netns", sw_ns)
        sh("ip", "-n", gw_ns, "link", "set", f"{LAB[:4]}l{sid}", "name", "eth1")
        sh("ip", "-n", gw_ns, "addr", "add", f"{lan['address']}/{lan['prefixlen']}", "dev", "eth1")
        sh("ip", "-n", gw_ns, "link", "set", "eth1", "up")
        sh("ip", "-n", sw_ns, "link", "set", "gw", "master", "br0", "up")
    clients = []
    registered = site["devices"][: MANY_CLIENTS.get(name, DEFAULT_CLIENTS)]
    entries = [(d["mac"], True, d) for d in registered] + [(UNREGISTERED_MAC.format(id=sid), False, None)]
    for index, (mac, is_registered, device) in enumerate(entries, start=1):
        ns = f"{LAB}-c{sid}-{index}"
        netns_add(ns)
        if not link_exists(ns, "eth0"):
            port = f"p{index}"
            sh("ip", "link", "add", f"{LAB[:4]}c{sid}x{index}", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw_ns)
            sh("ip", "-n", ns, "link", "set", f"{LAB[:4]}c{sid}x{index}", "name", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", sw_ns, "link", "set", port, "master", "br0", "up")
        clients.append({"ns": ns, "mac": mac, "registered": is_registered,
                        "device": device["name"] if device else None,
                        "expected_ip": device["ip"] if device else None})
    if sh("podman", "container", "exists", container, check=False).returncode != 0:
        sh("podman", "run", "-d", "--name", container, "--hostname", name, "--label", f"gerbang-lab={LAB}",
           "--systemd=always", "--network", f"ns:/run/netns/{gw_ns}", "--add-host", f"{name}:127.0.1.1",
           "--dns", "127.0.0.1",  # the gateway resolves through its own dnsmasq, as in production
           "--cap-add", "NET_ADMIN,NET_RAW", "--security-opt", "unmask=/proc/sys",
           "--sysctl", "net.ipv4.ip_forward=1", IMAGE, "/sbin/init")
    elif sh("podman", "inspect", "-f", "{{.State.Running}}", container).stdout.strip() != "true":
        sh("podman", "start", container)
    pid = sh("podman", "inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
    (RUN / f"{name}.pid").write_text(pid, encoding="utf-8")
    return {"id": sid, "container": container, "gateway_ns": gw_ns, "switch_ns": sw_ns, "pid": int(pid),
            "lan_address": lan["address"], "lan_subnet": lan["subnet"], "wan_ip": wan["ip"],
            "groups": site["groups"], "clients": clients}


def wait_running(sites: dict, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(sites)
    while pending and time.monotonic() < deadline:
        for name, site in list(pending.items()):
            state = sh("podman", "exec", site["container"], "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    failed = sh("podman", "exec", site["container"], "systemctl", "--failed", "--no-legend", check=False)
                    print(f"lab: {name} is degraded: {failed.stdout.strip()}", file=sys.stderr)
                del pending[name]
        if pending:
            time.sleep(0.5)
    if pending:
        raise SystemExit(f"lab: gateways not up after {timeout:.0f} s: {', '.join(sorted(pending))}")


def up(selected: list[str] | None) -> None:
    start = time.monotonic()
    if sh("podman", "image", "exists", IMAGE, check=False).returncode != 0:
        raise SystemExit(f"lab: image {IMAGE} is missing: run scripts/lab/build-image.sh")
    RUN.mkdir(parents=True, exist_ok=True)
    city = compile_inventory(INVENTORY)
    if city["errors"]:
        raise SystemExit("lab: the lab policy does not validate:\n" + "\n".join(e["line"] for e in city["errors"]))
    names = selected or sorted(city["sites"], key=lambda s: city["sites"][s]["id"])
    unknown = [n for n in names if n not in city["sites"]]
    if unknown:
        raise SystemExit(f"lab: unknown site(s) {', '.join(unknown)}; sites: {', '.join(sorted(city['sites']))}")
    state_file = RUN / "lab.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {"sites": {}}
    state.update(lab=LAB, run_dir=str(RUN), image=IMAGE, inventory=str(INVENTORY.relative_to(ROOT)))
    state["internet"] = internet_up(city)
    # Sites are independent: wire and start them a few at a time (podman start-up dominates).
    with ThreadPoolExecutor(max_workers=int(os.environ.get("GERBANG_LAB_PARALLEL", "4"))) as pool:
        for name, site in zip(names, pool.map(lambda n: site_up(city["sites"][n]), names)):
            state["sites"][name] = site
    state_file.write_text(json.dumps(state, indent=2), encoding="utf-8")
    wait_running({n: state["sites"][n] for n in names})
    print(f"lab {LAB}: {len(names)} gateway(s) up in {time.monotonic() - start:.1f} s "
          f"({', '.join(names) if len(names) <= 6 else str(len(names)) + ' sites'}); state in {state_file}")


def down() -> None:
    containers = sh("podman", "ps", "-aq", "--filter", f"label=gerbang-lab={LAB}", check=False).stdout.split()
    if containers:
        sh("podman", "rm", "-f", "-t", "0", *containers, check=False)
    if RUN.exists():
        for pid_file in RUN.glob("*.daemon.pid"):
            try:
                os.killpg(int(pid_file.read_text(encoding="utf-8")), 15)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
        for lease_pid in RUN.glob("*.dhclient.pid"):
            try:
                os.kill(int(lease_pid.read_text(encoding="utf-8").strip() or 0), 15)
            except (ProcessLookupError, ValueError):
                pass
    for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
        name = ns.split(" ")[0]
        if name.startswith(f"{LAB}-"):
            # Kill anything still running inside (clients' dhclient, test helpers).
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", name, check=False)
    if RUN.exists():
        shutil.rmtree(RUN, ignore_errors=True)
    print(f"lab {LAB}: down")


def marked_processes(lab: str = LAB) -> list[str]:
    """Live processes started by the lab (PROCESS_MARK in their environment), as "pid command"."""
    mark = f"{PROCESS_MARK}={lab}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if mark not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = next((line.split()[1] for line in (proc / "status").read_text().splitlines()
                          if line.startswith("State:")), "?")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if state != "Z":
            found.append(f"{proc.name} {command}")
    return found


def leftovers() -> list[str]:
    """What of this lab still exists: containers, namespaces, the state folder, processes."""
    left = []
    containers = sh("podman", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=gerbang-lab={LAB}",
                    check=False).stdout.split()
    left += [f"container {name}" for name in containers]
    namespaces = [line.split(" ")[0] for line in sh("ip", "netns", "list", check=False).stdout.splitlines()]
    left += [f"network namespace {name}" for name in namespaces if NETNS_NAME.match(name)]
    if RUN.exists():
        left.append(f"state folder {RUN}")
    left += [f"process {entry}" for entry in marked_processes()]
    return left


def verify_clean() -> int:
    left = leftovers()
    for entry in left:
        print(f"lab {LAB}: left behind: {entry}", file=sys.stderr)
    if not left:
        print(f"lab {LAB}: nothing left (no container, network namespace, state folder or process)")
    return 1 if left else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="The Gerbang Kota lab (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up")
    up_parser.add_argument("--sites", help="comma-separated site names (default: every gateway)")
    sub.add_parser("down")
    sub.add_parser("verify-clean")
    sub.add_parser("status")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("lab: run as root (network namespaces and podman)")
    if args.command == "up":
        up([s for s in args.sites.split(",") if s] if args.sites else None)
    elif args.command == "down":
        down()
    elif args.command == "verify-clean":
        return verify_clean()
    else:
        state = RUN / "lab.json"
        print(state.read_text(encoding="utf-8") if state.exists() else f"lab {LAB} is not up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
