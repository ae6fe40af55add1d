"""JSON Schemas of the policy data (structure and types; meaning is checked in validation.py).

Item schemas come in two strengths: layers may name an item with only the fields they change
(``PARTIAL``), while the merged result of a site must have every required field (``FULL``).
``x-fix`` tells the person reading a validation error what to write instead.
"""

from __future__ import annotations

import json

import jsonschema

from gerbang_kota.schedule import DAYS

NAME_FIX = "use lowercase letters, digits, '-' or '_' (e.g. media-sosial-jam-kerja)"
DOMAIN_LIST_FIX = "list domain names, e.g. [facebook.com, fbcdn.net]"
DEVICE_TYPES = ["desktop", "laptop", "printer", "access_point", "phone", "tablet", "camera", "server", "other"]

_name = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*$", "maxLength": 63, "x-fix": NAME_FIX}
_state = {"enum": ["present", "absent"], "x-fix": "write `state: absent` to remove the item, or leave `state` out"}
_strings = {"type": "array", "items": {"type": "string"}}
_domains = {"type": "array", "items": {"type": "string"}, "x-fix": DOMAIN_LIST_FIX}
_time = {"type": "string", "x-fix": 'quote times as "HH:MM", e.g. "07:00"'}
_mbit = {"type": "number", "exclusiveMinimum": 0, "x-fix": "write a positive number of Mbit/s"}


def _item(properties: dict, required: list[str], *, full: bool) -> dict:
    return {
        "type": "object",
        "properties": {"name": _name, "state": _state, **properties},
        "required": ["name"] + (required if full else []),
        "additionalProperties": False,
    }


def _items(full: bool) -> dict:
    window = {
        "type": "object",
        "properties": {
            "days": {"type": "array", "minItems": 1, "items": {"enum": list(DAYS)},
                     "x-fix": f"list days from: {', '.join(DAYS)}"},
            "start": _time,
            "end": _time,
        },
        "required": ["days", "start", "end"],
        "additionalProperties": False,
    }
    return {
        "categories": _item({"title": {"type": "string"}, "domains": {**_domains, "minItems": 1}}, ["domains"], full=full),
        "schedules": _item({"title": {"type": "string"}, "windows": {"type": "array", "minItems": 1, "items": window}},
                           ["windows"], full=full),
        "rules": _item(
            {
                "category": {"type": "string"},
                "schedule": {"type": "string"},
                "action": {"enum": ["block", "allow"], "x-fix": "write `action: block` or `action: allow`"},
                "groups": _strings,
                "sites": _strings,
                "except_groups": _strings,
                "except_sites": _strings,
            },
            ["category", "schedule", "action"],
            full=full,
        ),
        "govapps": _item({"title": {"type": "string"}, "domains": {**_domains, "minItems": 1}, "cidrs": _strings},
                         ["domains"], full=full),
        "doh_resolvers": _item({"domains": _domains, "addresses": _strings}, ["domains"], full=full),
        "safesearch_engines": _item(
            {"names": {**_domains, "minItems": 1}, "target": {"type": "string"}, "address": {"type": "string"}},
            ["names", "target", "address"],
            full=full,
        ),
    }


def _policy_properties(full: bool) -> dict:
    items = _items(full)
    return {
        "categories": {"type": "array", "items": items["categories"]},
        "schedules": {"type": "array", "items": items["schedules"]},
        "rules": {"type": "array", "items": items["rules"]},
        "govapps": {"type": "array", "items": items["govapps"]},
        "doh_resolvers": {"type": "array", "items": items["doh_resolvers"]},
        "safe_mode": {
            "type": "object",
            "properties": {
                "safesearch": {"type": "boolean", "x-fix": "write true or false"},
                "safesearch_engines": {"type": "array", "items": items["safesearch_engines"]},
                "trustpositif": {
                    "type": "object",
                    "properties": {
                        "enabled": {"type": "boolean", "x-fix": "write true or false"},
                        "source": {"type": "string"},
                        "dest": {"type": "string", "pattern": "^/", "x-fix": "write an absolute path on the gateway"},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "bandwidth": {
            "type": "object",
            "properties": {
                "contract_mbit": _mbit,
                "device_rate_mbit": _mbit,
                "device_ceil_mbit": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                     "x-fix": "write a positive number of Mbit/s, or null for the site's ceiling"},
                "default_rate_mbit": _mbit,
                "govapp_share_percent": {"type": "number", "minimum": 0, "maximum": 100,
                                         "x-fix": "write a percentage between 0 and 100"},
            },
            "additionalProperties": False,
        },
        "network": {
            "type": "object",
            "properties": {
                "upstream_dns": {**_strings, "minItems": 1, "x-fix": "list the resolvers' IPv4 addresses"},
                "local_domain": {"type": "string"},
                "dhcp_lease_time": {"type": "string", "pattern": r"^([0-9]+[smhdw]?|infinite)$",
                                    "x-fix": "write a dnsmasq lease time such as 12h, 45m or infinite (quoted if numeric)"},
                "management_networks": {**_strings, "minItems": 1, "x-fix": "list networks in CIDR form, e.g. [10.254.0.0/24]"},
                "prometheus_federation_from": {**_strings, "x-fix": "list IPv4 addresses or networks, e.g. [198.51.100.7]"},
            },
            "additionalProperties": False,
        },
        "block_page": {
            "type": "object",
            "properties": {"hostname": {"type": "string"}, "title": {"type": "string"},
                           "message": {"type": "string"}, "contact": {"type": "string", "minLength": 1}},
            "additionalProperties": False,
        },
        "allow_domains": {**_domains, "x-fix": "list domain names, e.g. [youtube.com]"},
    }


def layer_schema() -> dict:
    """A group or host layer (``gerbang_policy__<group>``, ``gerbang_policy__host``)."""
    return {"type": "object", "properties": _policy_properties(full=False), "additionalProperties": False,
            "x-fix": "a layer is a mapping of: " + ", ".join(_policy_properties(False))}


def merged_schema() -> dict:
    """The merged policy of one site: every item complete."""
    required_dicts = ["safe_mode", "bandwidth", "network", "block_page"]
    return {"type": "object", "properties": _policy_properties(full=True), "required": required_dicts}


def base_variable_schema(key: str) -> dict:
    """Schema of one base variable (group_vars/all), items may be partial until merged."""
    return _policy_properties(full=False)[key]


_ipv4_cidr = {"type": "string", "x-fix": "write an address with its prefix, e.g. 172.16.0.16/24"}
_ipv4 = {"type": "string", "x-fix": "write an IPv4 address, e.g. 172.16.0.254"}
_iface = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,15}$", "x-fix": "write a Linux interface name, e.g. eth0"}

SITE_SCHEMA = {
    "type": "object",
    "properties": {
        "gerbang_site_id": {"type": "integer", "minimum": 1, "maximum": 254,
                            "x-fix": "give the site a number between 1 and 254 not used by another site"},
        "gerbang_site_title": {"type": "string", "minLength": 1, "x-fix": "write the office's full name"},
        "gerbang_wan": {
            "type": "object",
            "properties": {"interface": _iface, "address": _ipv4_cidr, "gateway": _ipv4},
            "required": ["interface", "address", "gateway"],
            "additionalProperties": False,
        },
        "gerbang_lan": {
            "type": "object",
            "properties": {"interface": _iface,
                           "subnet": {"type": "string", "x-fix": "write the LAN network, e.g. 10.20.16.0/24"},
                           "address": _ipv4},
            "required": ["interface", "subnet"],
            "additionalProperties": False,
        },
        "gerbang_allocation": {
            "type": "object",
            "properties": {"rate_mbit": _mbit, "ceil_mbit": _mbit, "upload_rate_mbit": _mbit, "upload_ceil_mbit": _mbit},
            "required": ["rate_mbit", "ceil_mbit"],
            "additionalProperties": False,
        },
    },
    "required": ["gerbang_site_id", "gerbang_site_title", "gerbang_wan", "gerbang_lan", "gerbang_allocation"],
}

DEVICES_SCHEMA = {
    "type": "array",
    "x-fix": "write gerbang_devices as a list of devices (docs/policy.md)",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,62}$",
                     "x-fix": "use lowercase letters, digits and '-' (it becomes a DHCP host name), e.g. kominfo-lap-01"},
            "mac": {"type": "string", "x-fix": "write the MAC as six hex pairs separated by colons, e.g. 00:16:3e:10:20:01"},
            "ip": {"type": "string", "x-fix": "write the device's fixed IPv4 address inside the site's LAN"},
            "owner": {"type": "string", "minLength": 1, "x-fix": "name the unit or person responsible"},
            "type": {"enum": DEVICE_TYPES, "x-fix": "use one of: " + ", ".join(DEVICE_TYPES)},
            "expires": {"type": ["string", "null"], "x-fix": "write the last day as YYYY-MM-DD, or leave it out"},
        },
        "required": ["name", "mac", "ip", "owner", "type"],
        "additionalProperties": False,
    },
}

CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "gerbang_city_name": {"type": "string", "minLength": 1},
        "gerbang_timezone": {"type": "string", "minLength": 1, "x-fix": "write an IANA time zone, e.g. Asia/Jakarta"},
        "gerbang_working_hours": {"type": "string", "minLength": 1,
                                  "x-fix": "name the schedule of group_vars/all/schedules.yml that is the city's working hours, e.g. jam_kerja"},
    },
    "required": ["gerbang_city_name", "gerbang_timezone", "gerbang_working_hours"],
}


def _key(variable: str, path) -> str:
    key = variable
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def short(value) -> str:
    """A value as it would be written in YAML, shortened for one-line messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(error: jsonschema.ValidationError) -> tuple[str, str, object]:
    """(message, fix, offending value) of one schema error, in words a data editor understands."""
    fix = error.schema.get("x-fix") if isinstance(error.schema, dict) else None
    validator, value = error.validator, error.instance
    if validator == "required":
        missing = [name for name in error.validator_value if isinstance(value, dict) and name not in value]
        props = error.schema.get("properties", {})
        field_fix = next((props[m].get("x-fix") for m in missing if isinstance(props.get(m), dict) and props[m].get("x-fix")), None)
        return (f"missing {', '.join(missing)}", field_fix or f"add {', '.join(missing)} (see docs/policy.md)", None)
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        return (f"unknown key {', '.join(map(str, extra))}", f"check the spelling; allowed keys: {', '.join(allowed)}",
                extra[0] if len(extra) == 1 else extra)
    if validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
        return (f"must be {'an' if wanted[0] in 'aeiou' else 'a'} {wanted}", fix or f"write a {wanted}", value)
    if validator == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        return (f"is not one of {options}", fix or f"use one of: {options}", value)
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}
        return (f"must be {words[validator]} {error.validator_value}", fix or "change the number", value)
    if validator == "minItems":
        return ("must not be empty", fix or "add at least one entry", value)
    if validator in ("minLength",):
        return ("must not be empty", fix or "write a value", value)
    if validator in ("pattern", "maxLength"):
        return ("is not written in the expected form", fix or "see docs/policy.md", value)
    return (error.message, fix or "see docs/policy.md", value)


def schema_findings(instance, schema: dict, variable: str) -> list[tuple[str, str, object, str]]:
    """Schema violations as (key, message, value, fix), one per problem, deepest first."""
    validator = jsonschema.Draft202012Validator(schema)
    findings = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        # Report the most specific failing branch rather than an outer summary.
        message, fix, value = _describe(error)
        findings.append((_key(variable, error.absolute_path), message, value, fix))
    return findings
