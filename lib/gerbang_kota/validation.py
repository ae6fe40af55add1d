"""Validation of the city's policy: findings that name the file, the key, the bad value and the
fix, and the semantic checks that a schema cannot express (addresses, MACs, references,
times, bandwidth sums). Used by policy.compile_city; every check is pure Python + netaddr.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

import netaddr

from gerbang_kota.schema import short

_DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class Finding:
    where: str
    key: str
    value: object
    message: str
    fix: str

    def line(self) -> str:
        value = "" if self.value is None else f" = {short(self.value)}"
        return f"{self.where}: {self.key}{value}: {self.message}. Fix: {self.fix}"

    def as_dict(self) -> dict:
        return {"where": self.where, "key": self.key, "value": _plain(self.value), "message": self.message,
                "fix": self.fix, "line": self.line()}


def _plain(value):
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return value


class Report:
    """Errors (the rollout stops) and warnings (printed), each reported once."""

    def __init__(self) -> None:
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        self._seen: set = set()
        # Errors raised so far, repeats included (a site's check can repeat another site's).
        self.error_count = 0

    def _add(self, bucket: list, finding: Finding) -> None:
        marker = (id(bucket), finding.where, finding.key, finding.message)
        if marker not in self._seen:
            self._seen.add(marker)
            bucket.append(finding)

    def error(self, where: str, key: str, value, message: str, fix: str) -> None:
        self.error_count += 1
        self._add(self.errors, Finding(where, key, value, message, fix))

    def warning(self, where: str, key: str, value, message: str, fix: str) -> None:
        self._add(self.warnings, Finding(where, key, value, message, fix))

    def as_dicts(self) -> tuple[list[dict], list[dict]]:
        return [f.as_dict() for f in self.errors], [f.as_dict() for f in self.warnings]


# --- names and addresses ---------------------------------------------------------------------

def domain_problem(name) -> str | None:
    """Why ``name`` is not a usable domain name (None when it is)."""
    if not isinstance(name, str) or not name:
        return "is not a domain name"
    if name != name.lower():
        return "contains uppercase letters"
    if name.startswith("*.") or "://" in name or "/" in name:
        return "is a pattern or URL, not a domain name"
    if len(name) > 253 or name.endswith(".") or "." not in name:
        return "is not a fully qualified domain name"
    labels = name.split(".")
    if not all(_DOMAIN_LABEL.match(label) for label in labels):
        return "contains an empty label or a character other than a-z, 0-9 and '-'"
    if labels[-1].isdigit():
        return "ends in a number (an address is not a domain name)"
    return None


DOMAIN_FIX = "write a plain domain such as facebook.com (it covers its subdomains)"


def check_domains(report: Report, where: str, key: str, names) -> None:
    for index, name in enumerate(names or []):
        problem = domain_problem(name)
        if problem:
            report.error(where, f"{key}[{index}]", name, f"{problem}", DOMAIN_FIX)


def parse_ipv4(value) -> netaddr.IPAddress | None:
    if not isinstance(value, str):
        return None
    try:
        address = netaddr.IPAddress(value, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    return address if address.version == 4 else None


def parse_network(value, *, strict: bool = True) -> netaddr.IPNetwork | None:
    """An IPv4 network written in CIDR form; with ``strict`` the host bits must be zero."""
    if not isinstance(value, str) or "/" not in value:
        return None
    address, _, prefix = value.partition("/")
    if parse_ipv4(address) is None or not prefix.isdigit() or int(prefix) > 32:
        return None
    network = netaddr.IPNetwork(value)
    if strict and network.ip != network.network:
        return None
    return network


def mac_problem(mac) -> tuple[str, str] | None:
    """(severity, message) for a MAC address, or None when it is a usable unicast MAC."""
    if not isinstance(mac, str) or not _MAC.match(mac):
        return ("error", "is not a MAC address (six hex pairs separated by colons)")
    first = int(mac[:2], 16)
    if first & 1:
        return ("error", "is a multicast/broadcast address, not a device's MAC")
    if mac.lower() == "00:00:00:00:00:00":
        return ("error", "is the all-zero MAC")
    if first & 2:
        return ("warning", "is a locally administered (random or virtual) MAC: it may change")
    return None


MAC_FIX = "write the device's MAC as six hex pairs separated by colons, e.g. 00:16:3e:10:20:01"
LOCAL_MAC_FIX = ("turn off 'private/random Wi-Fi address' for this network on the device and register its "
                 "hardware MAC, or accept the warning for a virtual machine")


def parse_date(value) -> _dt.date | None:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


# --- site addressing ---------------------------------------------------------------------------

def check_site_addressing(report: Report, where: str, site: str, facts: dict) -> dict | None:
    """Check WAN/LAN of one site; returns parsed addresses or None when unusable."""
    wan, lan = facts["gerbang_wan"], facts["gerbang_lan"]
    ok = True
    wan_if = parse_network(wan["address"], strict=False)
    if wan_if is None or wan_if.prefixlen >= 31:
        report.error(where, f"{site}.gerbang_wan.address", wan["address"], "is not an IPv4 address with a prefix",
                     "write the WAN address with its prefix length, e.g. 172.16.0.16/24")
        ok = False
    wan_gw = parse_ipv4(wan["gateway"])
    if wan_gw is None:
        report.error(where, f"{site}.gerbang_wan.gateway", wan["gateway"], "is not an IPv4 address",
                     "write the upstream router's address, e.g. 172.16.0.254")
        ok = False
    elif wan_if is not None:
        if wan_gw not in wan_if.cidr:
            report.error(where, f"{site}.gerbang_wan.gateway", wan["gateway"],
                         f"is outside the WAN network {wan_if.cidr}",
                         "use a router address inside the WAN network, or fix the WAN prefix length")
            ok = False
        elif wan_gw == wan_if.ip:
            report.error(where, f"{site}.gerbang_wan.gateway", wan["gateway"], "is the gateway's own WAN address",
                         "write the upstream router's address")
            ok = False
    subnet = parse_network(lan["subnet"])
    if subnet is None or subnet.prefixlen > 29:
        loose = parse_network(lan["subnet"], strict=False)
        hint = f"write the network address, e.g. {loose.cidr}" if loose is not None and loose.prefixlen <= 29 else \
            "write the LAN network in CIDR form with a prefix of /29 or larger, e.g. 10.20.16.0/24"
        report.error(where, f"{site}.gerbang_lan.subnet", lan["subnet"], "is not a LAN network (CIDR, host bits zero)", hint)
        return None
    address_text = lan.get("address")
    address = parse_ipv4(address_text) if address_text is not None else netaddr.IPAddress(subnet.first + 1)
    if address is None:
        report.error(where, f"{site}.gerbang_lan.address", address_text, "is not an IPv4 address",
                     f"write the gateway's LAN address, e.g. {netaddr.IPAddress(subnet.first + 1)}")
        return None
    if address not in subnet or address in (subnet.network, subnet.broadcast):
        report.error(where, f"{site}.gerbang_lan.address", address_text,
                     f"is outside the usable addresses of the LAN {subnet}",
                     f"use an address inside {subnet}, usually {netaddr.IPAddress(subnet.first + 1)}")
        return None
    if not ok:
        return None
    return {"wan": wan_if, "wan_gateway": wan_gw, "subnet": subnet, "lan_address": address}


def check_overlaps(report: Report, where_of: dict, subnets: dict[str, netaddr.IPNetwork], management: list) -> None:
    """LAN subnets must not overlap each other nor the management networks."""
    ordered = sorted(subnets.items(), key=lambda kv: (kv[1].first, kv[1].last))
    for (a, net_a), (b, net_b) in zip(ordered, ordered[1:]):
        if net_b.first <= net_a.last:
            report.error(where_of[b], f"{b}.gerbang_lan.subnet", str(net_b),
                         f"overlaps the LAN of {a} ({net_a})",
                         f"give {b} its own subnet (the city uses 10.20.<site id>.0/24)")
    for site, net in subnets.items():
        for mgmt in management:
            if net.first <= mgmt.last and mgmt.first <= net.last:
                report.error(where_of[site], f"{site}.gerbang_lan.subnet", str(net),
                             f"overlaps the management network {mgmt}", "move the LAN out of the management network")


def _overlap(a: netaddr.IPNetwork, b: netaddr.IPNetwork) -> bool:
    return a.first <= b.last and b.first <= a.last


def check_wan_networks(report: Report, where_of: dict, addressing: dict, management: list) -> None:
    """The WAN (the city backbone) is its own range: not a LAN, not the management network; a
    WAN address is a usable host address and no other site's upstream router."""
    routers = {}
    for site, a in sorted(addressing.items()):
        routers.setdefault(int(a["wan_gateway"]), site)
    for site, a in sorted(addressing.items()):
        wan = a["wan"]
        key, value = f"{site}.gerbang_wan.address", str(wan)
        if wan.prefixlen < 31 and wan.ip in (wan.network, wan.broadcast):
            report.error(where_of[site], key, value, f"is the network or broadcast address of {wan.cidr}",
                         "use a host address inside the WAN network, e.g. 172.16.0.<site id>/24")
        for other, b in sorted(addressing.items()):
            if _overlap(wan.cidr, b["subnet"]):
                report.error(where_of[site], key, value, f"its network {wan.cidr} overlaps the LAN of {other} ({b['subnet']})",
                             "keep the WAN (the city backbone, 172.16.0.0/24) and the LANs (10.20.<site id>.0/24) apart")
        for mgmt in management:
            if _overlap(wan.cidr, mgmt):
                report.error(where_of[site], key, value, f"its network {wan.cidr} overlaps the management network {mgmt}",
                             "move the WAN out of the management network (gerbang_network.management_networks)")
        router_of = routers.get(int(wan.ip))
        if router_of is not None and router_of != site:
            report.error(where_of[site], key, value, f"is the upstream router's address (gerbang_wan.gateway of {router_of})",
                         "give the gateway its own WAN address; the core router's address is the sites' gateway")


# Connections that reach a gateway at ansible_host through the management network (the lab
# enters containers by name or PID instead: no management address there).
SSH_CONNECTIONS = (None, "ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh",
                   "ansible.builtin.paramiko_ssh")


def check_management_addresses(report: Report, where: str, hosts: dict, site_ids: dict, management: list) -> None:
    """Every gateway reached over SSH has a management address: an IPv4 address inside the
    management networks (the only networks its SSH port answers), used by no other gateway."""
    networks = ", ".join(str(n) for n in management) or "(none configured)"
    seen: dict[int, str] = {}
    for site in sorted(hosts):
        hv = hosts[site]
        if hv.get("ansible_connection") not in SSH_CONNECTIONS:
            continue
        key, value = f"{site}.ansible_host", hv.get("ansible_host")
        site_id = site_ids.get(site, "<site id>")
        suggestion = (str(netaddr.IPAddress(management[0].first + site_id))
                      if management and isinstance(site_id, int) and site_id < management[0].size - 1
                      else "an address in the management network")
        if value is None or value == "":
            report.error(where, key, None, "is not defined: Ansible would reach the gateway by its name",
                         f"write the gateway's management address, ansible_host: {suggestion}")
            continue
        address = parse_ipv4(value)
        if address is None:
            report.error(where, key, value, "is not an IPv4 address",
                         f"write the gateway's management address, e.g. {suggestion}")
            continue
        if not any(address in n for n in management):
            report.error(where, key, value, f"is outside the management networks {networks}",
                         f"use the gateway's address in the management network ({suggestion}), or add its network "
                         "to gerbang_network.management_networks in group_vars/all/network.yml")
        if int(address) in seen:
            report.error(where, key, value, f"is already the management address of {seen[int(address)]}",
                         f"give every gateway its own management address ({suggestion})")
        seen.setdefault(int(address), site)


# --- devices ----------------------------------------------------------------------------------

def check_devices(report: Report, site: str, devices: list, subnet: netaddr.IPNetwork, lan_address,
                  macs_seen: dict, today: _dt.date) -> list[dict]:
    """Check one site's registry; returns the active, usable devices (parsed)."""
    where = f"host_vars/{site}/devices.yml"
    names: dict[str, int] = {}
    ips: dict[int, int] = {}
    usable = []
    for index, device in enumerate(devices):
        key = f"gerbang_devices[{index}]"
        good = True
        if device["name"] in names:
            report.error(where, f"{key}.name", device["name"], f"is already used by gerbang_devices[{names[device['name']]}]",
                         "give every device of a site its own name")
            good = False
        names.setdefault(device["name"], index)
        problem = mac_problem(device["mac"])
        mac = device["mac"].lower() if isinstance(device["mac"], str) else device["mac"]
        if problem and problem[0] == "error":
            report.error(where, f"{key}.mac", device["mac"], problem[1], MAC_FIX)
            good = False
        else:
            if problem:
                report.warning(where, f"{key}.mac", device["mac"], problem[1], LOCAL_MAC_FIX)
            if mac in macs_seen:
                other_where, other_key = macs_seen[mac]
                report.error(where, f"{key}.mac", device["mac"], f"is already registered in {other_where} ({other_key})",
                             "a device is registered once, at the site where it is used: remove one of the entries")
                good = False
            else:
                macs_seen[mac] = (where, f"{key}.mac")
        ip = parse_ipv4(device["ip"])
        if ip is None:
            report.error(where, f"{key}.ip", device["ip"], "is not an IPv4 address",
                         f"write a free address inside {subnet}")
            good = False
        elif ip not in subnet or ip in (subnet.network, subnet.broadcast):
            report.error(where, f"{key}.ip", device["ip"], f"is outside the site's LAN {subnet}",
                         f"use a free address inside {subnet} (not the network or broadcast address)")
            good = False
        elif ip == lan_address:
            report.error(where, f"{key}.ip", device["ip"], "is the gateway's own LAN address",
                         f"use a free address inside {subnet} other than {lan_address}")
            good = False
        elif int(ip) in ips:
            report.error(where, f"{key}.ip", device["ip"], f"is already given to gerbang_devices[{ips[int(ip)]}]",
                         "give every device its own address")
            good = False
        else:
            ips[int(ip)] = index
        expires = device.get("expires")
        expiry = None
        if expires is not None:
            expiry = parse_date(expires)
            if expiry is None:
                report.error(where, f"{key}.expires", expires, "is not a date", "write the last day as YYYY-MM-DD")
                good = False
            elif expiry < today:
                report.error(where, f"{key}.expires", expires,
                             f"the registration of {device['name']} expired (today is {today.isoformat()})",
                             "extend `expires` if the device is still in use, otherwise delete the entry")
                good = False
        if good:
            usable.append({**device, "mac": mac, "_ip": ip, "_expires": expiry})
    return usable


# --- schedules, rules, bandwidth --------------------------------------------------------------

def check_bandwidth(report: Report, where: str, site: str, allocation: dict, contract: float) -> bool:
    ok = True
    for direction in ("", "upload_"):
        rate = allocation.get(f"{direction}rate_mbit", allocation["rate_mbit"])
        ceil = allocation.get(f"{direction}ceil_mbit", allocation["ceil_mbit"])
        if ceil > contract:
            report.error(where, f"{site}.gerbang_allocation.{direction}ceil_mbit", ceil,
                         f"is above the city's contract of {contract} Mbit/s",
                         f"lower it to at most {contract} (group_vars/all/bandwidth.yml holds the contract)")
            ok = False
        if rate > ceil:
            report.error(where, f"{site}.gerbang_allocation.{direction}rate_mbit", rate,
                         f"is above the site's ceiling of {ceil} Mbit/s", "make the guaranteed rate at most the ceiling")
            ok = False
    return ok
