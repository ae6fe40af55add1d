"""Helpers for lab behaviour tests: what a user's device does, from its own network namespace.

The lab is described by /run/gerbang-<lab>/lab.json (scripts/lab/lab.py). Tests call these
helpers; they never touch an address outside the lab's namespaces.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lib"))

from gerbang_kota.inventory import compile_inventory  # noqa: E402

LAB = os.environ.get("GERBANG_LAB", "lab")
RUN = Path(f"/run/gerbang-{LAB}")
DHCP_HOOK = REPO / "scripts/lab/dhclient-hook.sh"


def lab_required() -> bool:
    return os.environ.get("GERBANG_LAB_REQUIRED", "") not in ("", "0")


@functools.lru_cache(maxsize=1)
def state() -> dict:
    path = RUN / "lab.json"
    if not path.exists():
        raise FileNotFoundError(f"lab {LAB} is not up ({path} missing): bash scripts/lab/lab-up.sh")
    return json.loads(path.read_text(encoding="utf-8"))


def lab_sites() -> list[str]:
    return sorted(state()["sites"])


def require_site(site: str) -> dict:
    """The site's lab description; skips (or fails, when the lab is required) if it is not up."""
    sites = state()["sites"]
    if site not in sites:
        message = f"site {site} is not in lab {LAB} (up: {', '.join(sorted(sites))})"
        if lab_required():
            pytest.fail(message)
        pytest.skip(message)
    return sites[site]


@functools.lru_cache(maxsize=1)
def city() -> dict:
    return compile_inventory(REPO / "inventory/lab")


def compiled_site(site: str) -> dict:
    return city()["sites"][site]


def run(argv: list[str], timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def in_ns(ns: str, *argv: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return run(["ip", "netns", "exec", ns, *argv], timeout=timeout, check=check)


def gateway_exec(site: str) -> list[str]:
    """argv prefix running a command on the site's gateway (inside its container)."""
    return ["podman", "exec", require_site(site)["container"]]


def on_gateway(site: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return run([*gateway_exec(site), *argv], timeout=timeout)


def upstream() -> tuple[str, str]:
    """(netns, address) of the lab internet's router, where iperf3 servers listen."""
    inet = state()["internet"]
    return inet["ns"], inet["router"]


def govapp_server(name: str = "simral") -> tuple[str, str]:
    """(netns, address) of a government application's stand-in in the lab internet."""
    domain = next(d for g in compiled_site(lab_sites()[0])["govapps"] if g["name"] == name for d in g["domains"])
    return state()["internet"]["ns"], state()["internet"]["names"][domain]


def client_address(ns: str) -> str | None:
    out = in_ns(ns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    return match.group(1) if match else None


def dhcp(ns: str, timeout: float = 10) -> str | None:
    """Ask for a lease like a PC does (one DHCP attempt); the leased address or None."""
    lease_file, pid_file = RUN / f"{ns}.lease", RUN / f"{ns}.dhclient.pid"
    release(ns)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "dhclient", "-1", "-d", "-sf", str(DHCP_HOOK),
                             "-lf", str(lease_file), "-pf", str(pid_file), "eth0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GERBANG_LAB_PROCESS": LAB})  # lab.py verify-clean finds it
    deadline = time.monotonic() + timeout
    address = None
    while time.monotonic() < deadline:
        address = client_address(ns)
        if address or proc.poll() is not None:
            break
        time.sleep(0.2)
    address = address or client_address(ns)
    proc.kill()
    proc.wait()
    return address


def release(ns: str) -> None:
    in_ns(ns, "ip", "-4", "addr", "flush", "dev", "eth0")
    in_ns(ns, "ip", "route", "flush", "dev", "eth0")


def set_static(ns: str, address: str, prefixlen: int, gateway: str) -> None:
    """A user who types an address by hand."""
    release(ns)
    in_ns(ns, "ip", "addr", "add", f"{address}/{prefixlen}", "dev", "eth0", check=True)
    in_ns(ns, "ip", "route", "replace", "default", "via", gateway, check=True)


def registered_clients(site: str) -> list[dict]:
    return [c for c in require_site(site)["clients"] if c["registered"]]


def unregistered_client(site: str) -> dict:
    return next(c for c in require_site(site)["clients"] if not c["registered"])


def clients(site: str, count: int) -> list[tuple[str, str]]:
    """``count`` registered devices of the site, leased and online: [(netns, address)]."""
    available = registered_clients(site)
    if len(available) < count:
        pytest.fail(f"{site} has {len(available)} registered lab clients, the test needs {count}")
    result = []
    for client in available[:count]:
        address = client_address(client["ns"])
        if address != client["expected_ip"]:
            address = dhcp(client["ns"])
        assert address == client["expected_ip"], f"{client['device']} got {address}, registered {client['expected_ip']}"
        result.append((client["ns"], address))
    return result


def dig(ns: str, server: str, name: str, qtype: str = "A", tcp: bool = False) -> list[str]:
    argv = ["dig", "+short", "+time=2", "+tries=1", f"@{server}", name, qtype] + (["+tcp"] if tcp else [])
    lines = in_ns(ns, *argv, timeout=10).stdout.splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(";")]


def curl(ns: str, url: str, resolve_to: str | None = None, timeout: float = 8, extra: list[str] | None = None):
    """(exit code, http status, body) of one request from the client's namespace."""
    argv = ["curl", "-sS", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", "--cacert", state()["internet"]["ca"]]
    if resolve_to:
        name = re.match(r"https?://([^/:]+)", url).group(1)
        port = 443 if url.startswith("https") else 80
        argv += ["--resolve", f"{name}:{port}:{resolve_to}"]
    proc = in_ns(ns, *argv, *(extra or []), url, timeout=timeout + 5)
    body, _, status = proc.stdout.rpartition("\n")
    return proc.returncode, status.strip(), body
