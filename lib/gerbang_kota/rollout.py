"""Fingerprints of a gateway's rollout inputs, for the no-change fast path (playbooks/gateways.yml).

A gateway is in sync when everything its roles render from is what it was at the last complete
rollout (the stamp on the gateway) and what was deployed then is still in place (the ledgers
gerbang_deploy writes). The inputs are: the site's compiled policy, the role variables of the
host (``nftables_*``, ``dnsmasq_*`` …: defaults overridden in group_vars, host_vars or -e; and
``gerbang_*``: the site facts and policy layers), the
TRUST+ source files the policy names, and the code that renders them (roles, plugins,
playbooks, lib; Ansible's and Jinja's versions). tests/unit/test_rollout.py checks that the
roles' templates read nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Prefixes of the variables the gateway roles read: their own (defaults, overridable per layer)
# and the city's (gerbang_ports, the site facts; the policy layers the compiler merges).
ROLE_PREFIXES = ("nftables_", "dnsmasq_", "squid_", "shaping_", "monitoring_agent_", "gerbang_")
# The whole compiled city (the site's part goes in on its own) and the run option.
NOT_INPUTS = ("gerbang_city", "gerbang_full_run")
# What the roles render from, relative to the repository root (tests are left out).
CODE_PATHS = ("roles", "plugins", "playbooks", "lib/gerbang_kota", "site.yml", "ansible.cfg")
_SKIPPED_DIRS = {"molecule", "tests", "__pycache__"}


def code_digest(root: Path, versions: dict[str, str]) -> str:
    """sha256 over every file under CODE_PATHS (path and content, sorted) and the versions."""
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode())
    for entry in CODE_PATHS:
        base = root / entry
        paths = [base] if base.is_file() else sorted(
            p for p in base.rglob("*") if p.is_file() and not _SKIPPED_DIRS & set(p.relative_to(base).parts)
            and p.suffix != ".pyc")
        for path in paths:
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def role_variables(host_variables) -> dict:
    """The host's variables that the gateway roles read (by prefix)."""
    return {key: host_variables[key] for key in sorted(host_variables)
            if key.startswith(ROLE_PREFIXES) and key not in NOT_INPUTS}


def _source_stat(site: dict) -> list | None:
    trustpositif = (site.get("safe_mode") or {}).get("trustpositif") or {}
    if not trustpositif.get("enabled"):
        return None
    try:
        stat = os.stat(trustpositif["source"])
    except OSError:
        return [trustpositif["source"], "missing"]
    return [trustpositif["source"], stat.st_size, stat.st_mtime_ns]


def site_digest(site: dict, variables: dict, code: str) -> str:
    """sha256 of everything one gateway's roles render from."""
    payload = {"site": site, "variables": variables, "trustpositif": _source_stat(site), "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
