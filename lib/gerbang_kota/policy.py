"""The city compiler: inventory facts + layered policy -> one effective policy per site.

``compile_city(hosts, groups)`` is the only place where policy is resolved. Every role reads
``gerbang_city.sites[<host>]`` and nothing else. The function never raises on bad input: it
returns ``errors`` (the rollout stops) and ``warnings``, each naming the file, key, value and
fix (docs/architecture.md describes the output).

CLI::

    PYTHONPATH=lib python3 -m gerbang_kota.policy --inventory inventory/production [--site rsud]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import netaddr
import yaml

from gerbang_kota import layers, schedule, schema
from gerbang_kota.validation import (
    Report,
    check_bandwidth,
    check_devices,
    check_domains,
    check_management_addresses,
    check_overlaps,
    check_site_addressing,
    check_wan_networks,
    parse_ipv4,
    parse_network,
)

INVENTORY_FILE = "inventory/production/hosts.yml"
# How Ansible reaches a gateway: validation checks the management address of SSH-reached ones.
CONNECTION_VARIABLES = ("ansible_host", "ansible_connection")
# City-wide variables without a layer: one value for the whole city.
CITY_VARIABLES = {"gerbang_city_name": "group_vars/all/city.yml", "gerbang_timezone": "group_vars/all/city.yml"}
HOST_FACTS = ("gerbang_site_id", "gerbang_site_title", "gerbang_wan", "gerbang_lan", "gerbang_allocation")
# Groups every inventory has; they never carry a policy layer of their own.
IMPLICIT_GROUPS = ("all", "ungrouped")
GATEWAYS_GROUP = "gateways"
COMMAND_CENTER_GROUP = "command_center"
# Squid tags a connection with its blocked category in 8 bits of the socket mark (roles/squid).
MAX_CATEGORIES = 255
REPO_ROOT = Path(__file__).resolve().parents[2]


def _plain(value):
    """Plain JSON-able data (YAML dates -> ISO strings, Ansible's lazy containers -> dict/list)."""
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict) or (hasattr(value, "items") and hasattr(value, "keys")):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _today(timezone: str) -> _dt.date:
    override = os.environ.get("GERBANG_TODAY")
    if override:
        return _dt.date.fromisoformat(override)
    try:
        return _dt.datetime.now(ZoneInfo(timezone)).date()
    except (ZoneInfoNotFoundError, ValueError):
        return _dt.date.today()


def _rule_applies(rule: dict, site: str, site_groups: list[str]) -> bool:
    targets = rule.get("groups")
    sites = rule.get("sites") or []
    if targets is None and not sites:
        targets = [GATEWAYS_GROUP]
    hit = bool(set(targets or []) & set(site_groups)) or site in sites
    excluded = bool(set(rule.get("except_groups") or []) & set(site_groups)) or site in (rule.get("except_sites") or [])
    return hit and not excluded


def _covered(domain: str, allowed: set[str]) -> bool:
    """True when ``domain`` equals an allowed name (its subdomains stay an exception list)."""
    return domain in allowed


class _CityCompiler:
    def __init__(self, hosts: dict, groups: dict, *, repo_root: Path, today: _dt.date | None):
        self.hosts = {name: _plain(v or {}) for name, v in hosts.items()}
        self.groups = {g: list(members or []) for g, members in groups.items()}
        self.repo_root = repo_root
        self.report = Report()
        self.today_override = today

    # -- helpers -------------------------------------------------------------------------------
    def host_groups(self, host: str) -> list[str]:
        return sorted(g for g, members in self.groups.items() if host in members and g not in IMPLICIT_GROUPS)

    def err(self, where, key, value, message, fix):
        self.report.error(where, key, value, message, fix)

    def schema_check(self, instance, schema_doc, where, variable) -> bool:
        findings = schema.schema_findings(instance, schema_doc, variable)
        for key, message, value, fix in findings:
            self.err(where, key, value, message, fix)
        return not findings

    # -- whole city ----------------------------------------------------------------------------
    def compile(self) -> dict:
        gateways = sorted(self.groups.get(GATEWAYS_GROUP, []))
        if not gateways:
            self.err(INVENTORY_FILE, "gateways", None, "the inventory has no group `gateways` or it is empty",
                     "list every office gateway under all.children.gateways")
            return self.result({}, {})
        first = self.hosts.get(gateways[0], {})
        city_ok = self.schema_check({k: first.get(k) for k in ("gerbang_city_name", "gerbang_timezone", "gerbang_working_hours") if k in first},
                                    schema.CITY_SCHEMA, "group_vars/all/city.yml", "")
        timezone = first.get("gerbang_timezone") if city_ok else "UTC"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.err("group_vars/all/city.yml", "gerbang_timezone", timezone, "is not a known time zone",
                     "write an IANA time zone, e.g. Asia/Jakarta (WIB)")
            timezone = "UTC"
        self.today = self.today_override or _today(timezone)
        self.check_group_files()
        self.check_base_overrides()

        # 1. per-site facts
        facts, addressing, where_of = {}, {}, {}
        for host in gateways:
            hv = self.hosts.get(host, {})
            where_of[host] = INVENTORY_FILE
            host_facts = {k: hv[k] for k in HOST_FACTS if k in hv}
            if not self.schema_check(host_facts, schema.SITE_SCHEMA, INVENTORY_FILE, host):
                continue
            facts[host] = host_facts
            parsed = check_site_addressing(self.report, INVENTORY_FILE, host, host_facts)
            if parsed:
                addressing[host] = parsed
        self.check_unique_ids(facts)
        management = [n for n in (parse_network(x, strict=False) for x in
                                  (first.get("gerbang_network") or {}).get("management_networks") or []) if n]
        check_overlaps(self.report, where_of, {h: a["subnet"] for h, a in addressing.items()}, management)
        self.check_unique_wan(addressing)
        check_wan_networks(self.report, where_of, addressing, management)
        check_management_addresses(self.report, INVENTORY_FILE, {h: self.hosts.get(h, {}) for h in gateways},
                                   {h: f["gerbang_site_id"] for h, f in facts.items()}, management)

        # 2. bandwidth contract (base layer: the contract is the city's, not a site's)
        contract = (first.get("gerbang_bandwidth") or {}).get("contract_mbit")
        if isinstance(contract, (int, float)) and contract > 0:
            total = 0.0
            for host, f in facts.items():
                check_bandwidth(self.report, INVENTORY_FILE, host, f["gerbang_allocation"], contract)
                total += f["gerbang_allocation"]["rate_mbit"]
            if total > contract:
                self.err(INVENTORY_FILE, "gerbang_allocation.rate_mbit (sum of all sites)", round(total, 3),
                         f"the guaranteed rates add up to more than the city's contract of {contract} Mbit/s",
                         f"lower some sites' rate_mbit by {round(total - contract, 3)} Mbit/s in total, or raise "
                         "contract_mbit in group_vars/all/bandwidth.yml after the contract changes")

        # 3. policy per site
        macs_seen: dict = {}
        sites = {}
        command_center = self.command_center(addressing)
        for host in gateways:
            if host not in facts or host not in addressing:
                continue
            site = self.compile_site(host, facts[host], addressing[host], macs_seen, timezone, command_center)
            if site is not None:
                sites[host] = site
        city = {
            "name": first.get("gerbang_city_name"),
            "timezone": timezone,
            "working_hours": self.working_hours(first, timezone) if city_ok else {},
            "contract_mbit": contract,
            "today": self.today.isoformat(),
            "command_center": command_center,
        }
        return self.result(city, sites)

    def working_hours(self, first: dict, timezone: str) -> dict:
        """The city's working hours for monitoring (alert rules, the report): the base layer's
        schedule named by gerbang_working_hours, with the zone's UTC offset for PromQL (which only
        knows UTC)."""
        name = first["gerbang_working_hours"]
        base = {s.get("name"): s for s in first.get("gerbang_schedules") or [] if isinstance(s, dict)}
        if name not in base:
            self.err("group_vars/all/city.yml", "gerbang_working_hours", name,
                     "is not a schedule of group_vars/all/schedules.yml",
                     f"name one of {', '.join(sorted(map(str, base))) or 'the schedules'} (working hours, e.g. jam_kerja)")
            return {}
        try:
            compiled = schedule.compile_schedule(base[name])
        except schedule.ScheduleError:
            return {}  # the schedule's own error is reported with the site policies
        zone = ZoneInfo(timezone)
        year = self.today.year
        offsets = {zone.utcoffset(_dt.datetime(year, month, 1)) for month in (1, 7)}
        if len(offsets) > 1:
            self.err("group_vars/all/city.yml", "gerbang_timezone", timezone,
                     "changes its UTC offset during the year; the alert rules' working hours use one fixed offset",
                     "use a zone without daylight saving time (Indonesia's WIB/WITA/WIT have none)")
        offset = zone.utcoffset(_dt.datetime(year, 1, 1))
        return {"schedule": name, "title": compiled["title"], "windows": compiled["windows"],
                "segments": compiled["segments"], "utc_offset_minutes": int(offset.total_seconds() // 60)}

    def result(self, city: dict, sites: dict) -> dict:
        errors, warnings = self.report.as_dicts()
        return {**city, "errors": errors, "warnings": warnings, "sites": sites if not errors else {}}

    def check_group_files(self) -> None:
        """A group layer file for a group the inventory does not have is silently ignored by
        Ansible: say so instead."""
        group_dir = self.repo_root / "group_vars"
        if not group_dir.is_dir():
            return
        known = set(self.groups) | {"all", layers.LAB_GROUP}  # lab.yml: only the lab inventory has group lab
        for path in sorted(group_dir.iterdir()):
            name = path.stem if path.is_file() else path.name
            if path.suffix in (".yml", ".yaml", "") and name not in known:
                self.err(f"group_vars/{path.name}", "(file name)", name,
                         f"there is no inventory group `{name}`, so this file applies to no site",
                         f"rename it after an existing group ({', '.join(sorted(known - {'all', 'ungrouped'}))})")

    def _variable_sources(self):
        """(file, key prefix, layer variable, layer file, variables) of every place besides
        group_vars/all where Ansible takes a group's or host's variables from."""
        def load(path: Path) -> dict:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                return {}  # Ansible itself reports a file it cannot read
            return data if isinstance(data, dict) else {}

        def files(base: Path, name: str):
            for path in [base / f"{name}{ext}" for ext in ("", ".yml", ".yaml")] + sorted((base / name).glob("*")):
                if path.is_file() and path.suffix in (".yml", ".yaml", ""):
                    yield path

        for kind, layer_variable, layer_file in (("group_vars", layers.group_layer_variable, layers.group_layer_file),
                                                 ("host_vars", lambda _: layers.HOST_LAYER_VARIABLE,
                                                  layers.host_layer_file)):
            base = self.repo_root / kind
            names = sorted({p.name if p.is_dir() else p.stem for p in base.iterdir()} - {"all"}) \
                if base.is_dir() else []
            for name in names:
                for path in files(base, name):
                    yield (str(path.relative_to(self.repo_root)), "", layer_variable(name), layer_file(name),
                           load(path))
        inventory = self.repo_root / INVENTORY_FILE

        def walk(group: str, node):
            if not isinstance(node, dict):
                return
            # Group all of the inventory file has no layer, and group_vars/all outranks it.
            yield (INVENTORY_FILE, f"{group}.vars.", None if group == "all" else layers.group_layer_variable(group),
                   layers.group_layer_file(group), node.get("vars") or {})
            for host, host_vars in (node.get("hosts") or {}).items():
                yield (INVENTORY_FILE, f"{host}.", layers.HOST_LAYER_VARIABLE, layers.host_layer_file(host),
                       host_vars or {})
            for child, child_node in (node.get("children") or {}).items():
                yield from walk(child, child_node)

        if inventory.is_file():
            for group, node in load(inventory).items():
                yield from walk(group, node)

    def check_base_overrides(self) -> None:
        """A base variable of group_vars/all set again for a group or a host: Ansible does not
        merge variables, so those sites would get the new value in place of the city's whole list
        or mapping, and the compiler would take it for the base. The layers merge; this does not."""
        for where, prefix, layer_variable, layer_file, variables in self._variable_sources():
            if not isinstance(variables, dict):
                continue
            for variable, value in variables.items():
                if variable in layers.BASE_VARIABLES and layer_variable is None:
                    base_file = layers.BASE_VARIABLES[variable][1]
                    self.err(where, f"{prefix}{variable}", value,
                             f"is never used: {base_file} takes precedence over the inventory file",
                             f"remove it here and edit {base_file}")
                elif variable in layers.BASE_VARIABLES:
                    key, base_file = layers.BASE_VARIABLES[variable]
                    self.err(where, f"{prefix}{variable}", value,
                             f"is the city's base variable of {base_file}: set here it replaces the city's whole "
                             f"{key} at these sites instead of merging with them (Ansible does not merge variables)",
                             f"remove it here and write only the change as {layer_variable}.{key} in {layer_file} "
                             f"(merged by name with the city's, docs/policy.md#layers), or edit {base_file} for every site")
                elif variable in CITY_VARIABLES:
                    self.err(where, f"{prefix}{variable}", value,
                             "is a city-wide setting: set here it would differ between the city's sites",
                             f"remove it here: the city has one {variable}, in {CITY_VARIABLES[variable]}")

    def check_unique_ids(self, facts: dict) -> None:
        seen: dict[int, str] = {}
        for host, f in sorted(facts.items()):
            site_id = f["gerbang_site_id"]
            if site_id in seen:
                self.err(INVENTORY_FILE, f"{host}.gerbang_site_id", site_id, f"is already the id of {seen[site_id]}",
                         "give every site its own id (the highest id + 1; ids are never reused)")
            seen.setdefault(site_id, host)

    def check_unique_wan(self, addressing: dict) -> None:
        seen: dict[int, str] = {}
        for host, a in sorted(addressing.items()):
            ip = int(a["wan"].ip)
            if ip in seen:
                self.err(INVENTORY_FILE, f"{host}.gerbang_wan.address", str(a["wan"]),
                         f"is already the WAN address of {seen[ip]}", "give every gateway its own WAN address")
            seen.setdefault(ip, host)

    def command_center(self, addressing: dict) -> dict:
        members = sorted(h for h in self.groups.get(COMMAND_CENTER_GROUP, []) if h in addressing)
        if not members:
            self.err(INVENTORY_FILE, "command_center", None, "the inventory has no gateway in group `command_center`",
                     "put the Madani Command Center's gateway (mcc) in group command_center")
            return {}
        host = members[0]
        return {"name": host, "wan_ip": str(addressing[host]["wan"].ip),
                "lan_address": str(addressing[host]["lan_address"])}

    # -- one site ------------------------------------------------------------------------------
    def compile_site(self, host, facts, addr, macs_seen, timezone, command_center) -> dict | None:
        hv = self.hosts[host]
        site_groups = self.host_groups(host)
        errors_before = self.report.error_count
        # Schema of every layer as written (base variables, group layers, host layer).
        for variable, (key, where) in layers.BASE_VARIABLES.items():
            if variable in hv:
                self.schema_check(hv[variable], schema.base_variable_schema(key), where, variable)
            else:
                self.err(where, variable, None, "is not defined", f"define {variable} in {where}")
        for group in site_groups:
            variable = layers.group_layer_variable(group)
            if hv.get(variable) is not None:
                self.schema_check(hv[variable], schema.layer_schema(), layers.group_layer_file(group), variable)
        if hv.get(layers.HOST_LAYER_VARIABLE) is not None:
            self.schema_check(hv[layers.HOST_LAYER_VARIABLE], schema.layer_schema(), layers.host_layer_file(host),
                              layers.HOST_LAYER_VARIABLE)
        devices_where = f"host_vars/{host}/devices.yml"
        devices_raw = hv.get("gerbang_devices", [])
        devices_ok = self.schema_check(devices_raw, schema.DEVICES_SCHEMA, devices_where, "gerbang_devices")
        if self.report.error_count > errors_before:
            return None

        merged = layers.merge_site_policy(host, hv, site_groups)
        policy = merged.data
        if not self.schema_check(policy, schema.merged_schema(), layers.host_layer_file(host), f"{host} (merged policy)"):
            return None
        self.check_policy_meaning(host, merged, site_groups)

        subnet, lan_address = addr["subnet"], addr["lan_address"]
        devices = check_devices(self.report, host, devices_raw if devices_ok else [], subnet, lan_address,
                                macs_seen, self.today)
        bandwidth = self.site_bandwidth(host, facts["gerbang_allocation"], policy["bandwidth"], len(devices))
        schedules, blocks = self.site_blocks(host, merged, site_groups)
        federation = self.federation_sources(host, merged, command_center.get("name") == host)
        if self.report.error_count > errors_before:
            return None

        allow = sorted(set(policy.get("allow_domains") or []))
        govapps = [{"name": g["name"], "title": g.get("title", g["name"]), "domains": sorted(set(g["domains"])),
                    "cidrs": sorted(set(g.get("cidrs") or []))} for g in policy["govapps"]]
        govapp_domains = sorted({d for g in govapps for d in g["domains"]})
        never_blocked = set(allow) | set(govapp_domains)
        categories = {}
        for block in blocks:
            cat = next(c for c in policy["categories"] if c["name"] == block["category"])
            categories[cat["name"]] = {"title": cat.get("title", cat["name"]),
                                       "domains": sorted({d for d in cat["domains"] if not _covered(d, never_blocked)})}
        network, safe = policy["network"], policy["safe_mode"]
        local_domain = f"{host}.{network.get('local_domain', 'gerbang.lan')}"
        block_page = policy["block_page"]
        trust = dict(safe.get("trustpositif") or {"enabled": False})
        if trust.get("enabled"):
            source = Path(trust.get("source", ""))
            source = source if source.is_absolute() else self.repo_root / source
            if not source.is_file():
                self.err("group_vars/all/safe_mode.yml", "gerbang_safe_mode.trustpositif.source", trust.get("source"),
                         "the file does not exist on the controller",
                         "commit the TRUST+ Positif list at that path (one domain a line) or set enabled: false")
                return None
            trust["source"] = str(source)
        trust.setdefault("dest", "/var/lib/gerbang/trustpositif.conf")
        doh = policy["doh_resolvers"]
        return {
            "name": host,
            "id": facts["gerbang_site_id"],
            "title": facts["gerbang_site_title"],
            "groups": site_groups,
            "timezone": timezone,
            "wan": {"interface": facts["gerbang_wan"]["interface"], "address": str(addr["wan"]),
                    "ip": str(addr["wan"].ip), "prefixlen": addr["wan"].prefixlen,
                    "gateway": str(addr["wan_gateway"])},
            "lan": {"interface": facts["gerbang_lan"]["interface"], "subnet": str(subnet),
                    "network": str(subnet.network), "prefixlen": subnet.prefixlen, "netmask": str(subnet.netmask),
                    "address": str(lan_address), "broadcast": str(subnet.broadcast)},
            "management": {"networks": [str(n) for n in (parse_network(x, strict=False) for x in
                                                         network.get("management_networks") or []) if n]},
            "command_center_ip": command_center.get("wan_ip"),
            "is_command_center": command_center.get("name") == host,
            "prometheus_federation_from": federation,
            "dns": {
                "upstream": list(network["upstream_dns"]),
                "local_domain": local_domain,
                "records": [{"name": f"gateway.{local_domain}", "ip": str(lan_address)},
                            {"name": block_page.get("hostname", "blokir.gerbang.lan"), "ip": str(lan_address)}],
            },
            "dhcp": {"lease_time": str(network.get("dhcp_lease_time", "12h"))},
            "bandwidth": bandwidth,
            "devices": [self.device(d, subnet) for d in sorted(devices, key=lambda d: int(d["_ip"]))],
            "govapps": govapps,
            "govapp_domains": govapp_domains,
            "govapp_cidrs": sorted({c for g in govapps for c in g["cidrs"]}),
            "categories": categories,
            "blocks": blocks,
            "allow_domains": allow,
            "schedules": schedules,
            "safe_mode": {
                "safesearch": bool(safe.get("safesearch")),
                "safesearch_targets": [
                    {"engine": e["name"], "names": list(e["names"]), "target": e["target"], "address": e["address"]}
                    for e in (safe.get("safesearch_engines") or [])] if safe.get("safesearch") else [],
                "trustpositif": trust,
            },
            "doh_domains": sorted({d for r in doh for d in r.get("domains") or []}),
            "doh_addresses": sorted({a for r in doh for a in r.get("addresses") or []},
                                    key=lambda a: int(netaddr.IPAddress(a))),
            "block_page": {"hostname": block_page.get("hostname", "blokir.gerbang.lan"),
                           "title": block_page.get("title", ""), "message": block_page.get("message", ""),
                           "contact": block_page.get("contact", ""), "ip": str(lan_address)},
        }

    @staticmethod
    def device(d: dict, subnet) -> dict:
        host_index = int(d["_ip"]) - subnet.first
        minor = 256 + host_index
        return {"name": d["name"], "mac": d["mac"], "ip": str(d["_ip"]), "owner": d["owner"], "type": d["type"],
                "expires": d["_expires"].isoformat() if d["_expires"] else None,
                "host_index": host_index, "class_minor": minor, "classid": f"1:{minor:x}"}

    def site_bandwidth(self, host: str, allocation: dict, policy_bw: dict, devices: int) -> dict:
        rate, ceil = allocation["rate_mbit"], allocation["ceil_mbit"]
        upload_rate = allocation.get("upload_rate_mbit", rate)
        upload_ceil = allocation.get("upload_ceil_mbit", ceil)
        device_rate = policy_bw.get("device_rate_mbit", 1)
        device_ceil = policy_bw.get("device_ceil_mbit") or ceil
        default_rate = policy_bw.get("default_rate_mbit", 1)
        if device_rate > ceil:
            self.err("group_vars/all/bandwidth.yml", "gerbang_bandwidth.device_rate_mbit", device_rate,
                     f"is above the ceiling of {host} ({ceil} Mbit/s)",
                     f"lower device_rate_mbit, or raise {host}'s gerbang_allocation.ceil_mbit")
        if device_ceil > ceil:
            self.err("group_vars/all/bandwidth.yml", "gerbang_bandwidth.device_ceil_mbit", device_ceil,
                     f"is above the ceiling of {host} ({ceil} Mbit/s)", "write a lower value or null (= site ceiling)")
        share = policy_bw.get("govapp_share_percent", 20)
        govapp_rate = max(round(rate * share / 100, 3), 0)
        upload_govapp_rate = min(govapp_rate, upload_rate)
        download = self.device_guarantee(host, "ceil_mbit", ceil, govapp_rate, default_rate, device_rate, devices)
        upload = self.device_guarantee(host, "upload_ceil_mbit", upload_ceil, upload_govapp_rate, default_rate,
                                       device_rate, devices)
        self.warn_device_guarantee(host, device_rate, devices, download, upload)
        return {
            "contract_mbit": policy_bw.get("contract_mbit"),
            "rate_mbit": rate, "ceil_mbit": ceil,
            "upload_rate_mbit": upload_rate, "upload_ceil_mbit": upload_ceil,
            # The policy's figure ("one user, one megabit"); the report's reallocation floor.
            "device_rate_mbit": device_rate,
            # What each device class is given (the HTB rate the shaping role renders): the policy's
            # figure, or less where the site's ceiling cannot hold every device's (validation warns).
            "device_guaranteed_mbit": download["share"], "upload_device_guaranteed_mbit": upload["share"],
            "device_ceil_mbit": min(device_ceil, ceil), "upload_device_ceil_mbit": min(device_ceil, upload_ceil),
            "default_rate_mbit": default_rate,
            "govapp_rate_mbit": govapp_rate, "govapp_ceil_mbit": ceil,
            "upload_govapp_rate_mbit": upload_govapp_rate, "upload_govapp_ceil_mbit": upload_ceil,
            "govapp_share_percent": share,
        }

    def device_guarantee(self, host: str, ceil_key: str, ceil: float, govapp_rate: float, default_rate: float,
                         device_rate: float, devices: int) -> dict:
        """One direction's guaranteed rate per device class. HTB lets a class below its own rate
        send without asking its parent, so the rates of the site root's children (government
        apps, default class, every device) must add up to at most the root's rate (= the site
        ceiling), or the ceiling is not enforced and no guarantee holds. The fair share is
        rounded down to the kbit/s the tc script is written in."""
        left = ceil - govapp_rate - default_rate
        share = device_rate
        if devices and left < devices * device_rate:
            share = math.floor(round(max(left, 0) / devices * 1000, 6)) / 1000
        if left < 0 or (devices and share <= 0):
            self.err(INVENTORY_FILE, f"{host}.gerbang_allocation.{ceil_key}", ceil,
                     f"leaves nothing for the {devices} registered devices once the government apps "
                     f"({govapp_rate} Mbit/s) and the default class ({default_rate} Mbit/s) are guaranteed",
                     "raise the ceiling, or lower govapp_share_percent or default_rate_mbit "
                     "(group_vars/all/bandwidth.yml)")
        needed = round(devices * device_rate + govapp_rate + default_rate, 3)
        return {"key": ceil_key, "ceil": ceil, "govapp": govapp_rate, "default": default_rate, "share": share,
                "needed": needed}

    def warn_device_guarantee(self, host: str, device_rate: float, devices: int, download: dict, upload: dict) -> None:
        reduced = [d for d in (download, upload) if 0 < d["share"] < device_rate]
        same = len(reduced) == 2 and all(download[k] == upload[k] for k in ("ceil", "govapp", "share"))
        for found in reduced[:1] if same else reduced:
            direction = "download and upload" if same else ("download" if found is download else "upload")
            keys = "ceil_mbit and upload_ceil_mbit" if same else found["key"]
            self.report.warning(
                INVENTORY_FILE, f"{host}.gerbang_allocation.{found['key']}", found["ceil"],
                f"{devices} registered devices × {device_rate:g} Mbit/s (gerbang_bandwidth.device_rate_mbit) + "
                f"government apps {found['govapp']:g} + default class {found['default']:g} Mbit/s = "
                f"{found['needed']:g} Mbit/s, more than the site's {direction} ceiling: each device is guaranteed "
                f"its fair share of {found['share']:g} Mbit/s instead of {device_rate:g}",
                f"raise {host}'s gerbang_allocation ({keys}) to at least {found['needed']:g} Mbit/s, or accept "
                f"{found['share']:g} Mbit/s per device (a device still borrows up to the ceiling when others are idle)")

    def check_policy_meaning(self, host: str, merged: layers.MergedPolicy, site_groups: list[str]) -> None:
        policy = merged.data
        sites = set(self.groups.get(GATEWAYS_GROUP, []))
        all_groups = set(self.groups) - set(IMPLICIT_GROUPS)
        categories = {c["name"] for c in policy["categories"]}
        schedules = {s["name"] for s in policy["schedules"]} | {schedule.ALWAYS}

        def where(list_key, name, field):
            origin = merged.origin_of(list_key, name, field)
            return (origin.where, origin.key) if origin else (layers.host_layer_file(host), f"{list_key}.{name}.{field}")

        for rule in policy["rules"]:
            name = rule["name"]
            if rule["category"] not in categories:
                f, k = where("rules", name, "category")
                self.err(f, k, rule["category"], "is not a category",
                         f"use one of: {', '.join(sorted(categories))} (group_vars/all/categories.yml)")
            if rule["schedule"] not in schedules:
                f, k = where("rules", name, "schedule")
                self.err(f, k, rule["schedule"], "is not a schedule",
                         f"use one of: {', '.join(sorted(schedules))} (group_vars/all/schedules.yml)")
            for field, known, kind in (("groups", all_groups, "group"), ("except_groups", all_groups, "group"),
                                       ("sites", sites, "site"), ("except_sites", sites, "site")):
                for value in rule.get(field) or []:
                    if value not in known:
                        f, k = where("rules", name, field)
                        self.err(f, k, value, f"is not an inventory {kind}",
                                 f"use an existing {kind} name (ansible-inventory -i inventory/production --graph)")
        for sched in policy["schedules"]:
            for index, window in enumerate(sched["windows"]):
                try:
                    schedule.window_segments(window)
                except schedule.ScheduleError as exc:
                    f, k = where("schedules", sched["name"], "windows")
                    self.err(f, f"{k}[{index}]", window, str(exc),
                             'write "HH:MM" times from 00:00 to 24:00 with start different from end '
                             '(an end before the start runs past midnight)')
            if sched["name"] == schedule.ALWAYS:
                f, k = where("schedules", sched["name"], "name")
                self.err(f, k, sched["name"], "is built in and cannot be redefined", "choose another name")
        for cat in policy["categories"]:
            f, k = where("categories", cat["name"], "domains")
            check_domains(self.report, f, k, cat["domains"])
        if len(categories) > MAX_CATEGORIES:
            self.err(layers.host_layer_file(host), "gerbang_categories", len(categories),
                     f"categories apply to {host}: more than {MAX_CATEGORIES}",
                     "merge categories: Squid tags each blocked category's connections with one of "
                     f"{MAX_CATEGORIES} values to close them when a window opens (roles/squid)")
        # Named services reached by domain and by address: each list's address field and its check.
        for list_key, field, parse, problem, fix in (
                ("govapps", "cidrs", parse_network, "is not a network in CIDR form (host bits zero)",
                 "write the application's address range, e.g. 203.0.113.16/29"),
                ("doh_resolvers", "addresses", parse_ipv4, "is not an IPv4 address",
                 "write the resolver's IPv4 address")):
            for entry in policy[list_key]:
                f, k = where(list_key, entry["name"], "domains")
                check_domains(self.report, f, k, entry["domains"])
                for index, value in enumerate(entry.get(field) or []):
                    if parse(value) is None:
                        f, k = where(list_key, entry["name"], field)
                        self.err(f, f"{k}[{index}]", value, problem, fix)
        for engine in policy["safe_mode"].get("safesearch_engines") or []:
            origin = merged.origin_of("safe_mode.safesearch_engines", engine["name"], "address")
            f, k = (origin.where, origin.key) if origin else ("group_vars/all/safe_mode.yml", "gerbang_safe_mode")
            if parse_ipv4(engine["address"]) is None:
                self.err(f, k, engine["address"], "is not an IPv4 address", "write the SafeSearch endpoint's address")
            check_domains(self.report, f, k.rsplit(".", 1)[0] + ".names", engine["names"])
        origin = merged.origin_of_key("allow_domains")
        check_domains(self.report, origin.where if origin else layers.host_layer_file(host),
                      origin.key if origin else "allow_domains", policy.get("allow_domains"))
        for index, address in enumerate(policy["network"].get("upstream_dns") or []):
            if parse_ipv4(address) is None:
                self.err("group_vars/all/network.yml", f"gerbang_network.upstream_dns[{index}]", address,
                         "is not an IPv4 address", "write the resolver's IPv4 address")
        for index, net in enumerate(policy["network"].get("management_networks") or []):
            if parse_network(net) is None:
                self.err("group_vars/all/network.yml", f"gerbang_network.management_networks[{index}]", net,
                         "is not a network in CIDR form (host bits zero)", "write e.g. 10.254.0.0/24")

    def federation_sources(self, host: str, merged: layers.MergedPolicy, is_command_center: bool) -> list[str]:
        """Who besides the command center's LAN may read its Prometheus (a province's Prometheus
        federating it): IPv4 addresses or networks, admitted on the WAN to the Prometheus port."""
        sources = merged.data["network"].get("prometheus_federation_from") or []
        origin = merged.origin_of_key("network.prometheus_federation_from")
        where, key = (origin.where, origin.key) if origin else (layers.host_layer_file(host), "network.prometheus_federation_from")
        if sources and not is_command_center:
            self.err(where, key, sources, f"{host} is not the command center: only the command center runs Prometheus",
                     "set it in the command center's layer (host_vars/<command center>/policy.yml) only")
            return []
        parsed = []
        for index, value in enumerate(sources):
            network = parse_network(value) if "/" in str(value) else (netaddr.IPNetwork(f"{value}/32") if parse_ipv4(value) else None)
            if network is None:
                self.err(where, f"{key}[{index}]", value, "is not an IPv4 address or network (CIDR, host bits zero)",
                         "write e.g. 198.51.100.7 or 198.51.100.0/28")
                continue
            parsed.append(network)
        return [str(n.ip) if n.prefixlen == 32 else str(n) for n in sorted(set(parsed))]

    def site_blocks(self, host: str, merged: layers.MergedPolicy, site_groups: list[str]) -> tuple[dict, list]:
        """Effective blocks of a site: each block rule's schedule minus the allows of its category."""
        policy = merged.data
        by_name = {s["name"]: s for s in policy["schedules"]}

        def compiled(name):
            if name == schedule.ALWAYS:
                return schedule.always_schedule()
            try:
                return schedule.compile_schedule(by_name[name])
            except (schedule.ScheduleError, KeyError):
                return None  # reported by check_policy_meaning

        applying = [r for r in policy["rules"] if _rule_applies(r, host, site_groups)]
        schedules, blocks = {}, []
        for rule in applying:
            if rule["action"] != "block":
                continue
            base = compiled(rule["schedule"])
            if base is None:
                continue
            allows = [compiled(a["schedule"]) for a in applying if a["action"] == "allow" and a["category"] == rule["category"]]
            allowed_segments = [seg for a in allows if a for seg in a["segments"]]
            if not allowed_segments:
                name, effective = rule["schedule"], base
            else:
                remaining = schedule.subtract_segments(base["segments"], allowed_segments)
                if not remaining:
                    continue  # fully lifted by an allow
                name = f"{rule['name']}--effective"
                effective = schedule.derived_schedule(f"{base['title']} (dengan pengecualian)", remaining)
            schedules[name] = effective
            blocks.append({"rule": rule["name"], "category": rule["category"], "schedule": name})
        return schedules, sorted(blocks, key=lambda b: (b["category"], b["rule"]))


def compile_city(hosts: dict, groups: dict, *, repo_root: str | Path | None = None,
                 today: _dt.date | None = None) -> dict:
    """Compile the whole city. ``hosts`` = {host: its variables}, ``groups`` = {group: [hosts]}."""
    root = Path(repo_root) if repo_root else REPO_ROOT
    return _CityCompiler(hosts, groups, repo_root=root, today=today).compile()


def main(argv: list[str] | None = None) -> int:
    from gerbang_kota.inventory import compile_inventory  # noqa: PLC0415 (CLI only)

    parser = argparse.ArgumentParser(prog="python3 -m gerbang_kota.policy",
                                     description="Compile and validate the city's policy from an inventory.")
    parser.add_argument("--inventory", default="inventory/production")
    parser.add_argument("--site", help="print only this site's compiled policy")
    args = parser.parse_args(argv)
    city = compile_inventory(args.inventory)
    for finding in city["warnings"]:
        print("WARNING " + finding["line"], file=sys.stderr)
    for finding in city["errors"]:
        print("ERROR " + finding["line"], file=sys.stderr)
    if city["errors"]:
        return 1
    print(json.dumps(city["sites"][args.site] if args.site else city, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
