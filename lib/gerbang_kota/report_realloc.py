"""Suggested reallocation of the city's bandwidth from measured use, as an inventory patch.

Rules (all inside the contract, so the patched inventory passes playbooks/validate.yml):
  * guaranteed rate = measured working-hours 95th percentile x headroom, rounded up to whole
    Mbit/s, never below `min_rate_mbit` nor below what the site's registered devices are
    guaranteed ("one user, one megabit" x devices), capped at the ceiling;
  * when the rates add up to more than the contract, the part above each site's floor is
    scaled down proportionally (floors first: every device keeps its megabit);
  * the ceiling is raised (x `ceil_step`, capped at the contract) for a site whose peak reached
    `at_ceiling` of it; ceilings are never lowered (a short measurement period must not
    take burst capacity away);
  * a site without measurements in the period (`measured: False`: gateway down, not scraped, or
    not in this Prometheus) keeps its allocation, and its rate still counts against the contract;
    a site without working-hours samples (`work_samples: 0`, e.g. a weekend period) keeps its
    guaranteed rate (only its ceiling may be raised);
  * the suggestion changes only `rate_mbit` / `ceil_mbit` of each host's `gerbang_allocation`
    in the inventory file (flow mapping `{rate_mbit: 5, ceil_mbit: 10}` as in production, or a
    block mapping as in the generated lab inventory), and the patch is a unified diff of that file.
"""

from __future__ import annotations

import difflib
import math
import re


def suggest(sites: dict[str, dict], contract_mbit: float, *, headroom: float = 1.25, min_rate_mbit: int = 2,
            at_ceiling: float = 0.9, ceil_step: float = 1.5) -> dict[str, dict]:
    """sites: name -> {rate_mbit, ceil_mbit, work_p95_mbit, peak_mbit, devices, device_rate_mbit}.

    Returns name -> {rate_mbit, ceil_mbit, reason} for every site (unchanged ones included).
    """
    floors, wants, ceils, reasons = {}, {}, {}, {}
    for name, site in sites.items():
        ceil = site["ceil_mbit"]
        if not site.get("measured", True):
            ceils[name] = ceil
            floors[name] = wants[name] = site["rate_mbit"]
            continue
        if site["peak_mbit"] >= at_ceiling * ceil and ceil < contract_mbit:
            ceil = min(contract_mbit, math.ceil(ceil * ceil_step))
            reasons[name] = f"peak {site['peak_mbit']:.1f} Mbit/s reached {at_ceiling:.0%} of the ceiling"
        ceils[name] = ceil
        if site.get("work_samples", 1) == 0:
            floors[name] = wants[name] = min(site["rate_mbit"], ceil)
            continue
        floor = max(min_rate_mbit, math.ceil(site.get("devices", 0) * site.get("device_rate_mbit", 0)))
        floors[name] = min(floor, ceil)
        wants[name] = min(ceil, max(floors[name], math.ceil(site["work_p95_mbit"] * headroom)))
    total = sum(wants.values())
    if total > contract_mbit:
        spare = contract_mbit - sum(floors.values())
        above = sum(wants[n] - floors[n] for n in wants)
        factor = max(0.0, spare) / above if above else 0.0
        for name in wants:
            wants[name] = floors[name] + math.floor((wants[name] - floors[name]) * factor)
    result = {}
    for name, site in sites.items():
        rate, ceil = int(wants[name]), int(ceils[name])
        reason = reasons.get(name, "")
        if rate != site["rate_mbit"]:
            reason = "; ".join(filter(None, [reason, f"working-hours p95 {site['work_p95_mbit']:.1f} Mbit/s"
                                                      f" -> guaranteed {rate} (was {site['rate_mbit']})"]))
        result[name] = {"rate_mbit": rate, "ceil_mbit": ceil, "reason": reason}
    return result


ALLOCATION = re.compile(r"^(?P<indent>\s+)gerbang_allocation:\s*\{(?P<body>[^}]*)\}\s*$")
HOST = re.compile(r"^(?P<indent>\s+)(?P<name>[A-Za-z0-9_.-]+):\s*$")
BLOCK_ITEM = re.compile(r"^(?P<indent>\s+)(?P<key>[A-Za-z0-9_]+):\s*(?P<value>[^#\s]+)(?P<comment>\s+#.*)?\s*$")


def _missing_block_items(block: dict) -> list[str]:
    """Keys a block-style allocation did not have yet (rate before ceil)."""
    indent = block["child_indent"] or " " * (block["indent"] + 2)
    return [f"{indent}{key}: {block['wanted'][key]}\n" for key in ("rate_mbit", "ceil_mbit") if key in block["missing"]]


def patch_inventory(text: str, allocations: dict[str, dict], path: str = "inventory/production/hosts.yml") -> tuple[str, str]:
    """(new text, unified diff) with each host's `gerbang_allocation` (flow or block mapping) updated.

    Only rate_mbit and ceil_mbit change; other keys of the mapping (upload_*) are kept.
    """
    lines = text.splitlines(keepends=True)
    parents: list[tuple[int, str]] = []  # value-less keys seen so far: the host is the nearest one above
    out = []
    block: dict | None = None  # inside a block-style `gerbang_allocation:` of a host being changed
    for line in lines:
        if block is not None:
            child = BLOCK_ITEM.match(line)
            if child and len(child.group("indent")) > block["indent"]:
                block["child_indent"] = child.group("indent")
                key = child.group("key")
                if key in ("rate_mbit", "ceil_mbit"):
                    block["missing"].discard(key)
                    line = f"{child.group('indent')}{key}: {block['wanted'][key]}{child.group('comment') or ''}\n"
                out.append(line)
                continue
            out.extend(_missing_block_items(block))
            block = None
        match = HOST.match(line)
        if match:
            parents.append((len(match.group("indent")), match.group("name")))
            if match.group("name") == "gerbang_allocation":
                parents.pop()
                host = next((name for indent, name in reversed(parents) if indent < len(match.group("indent"))), None)
                if host in allocations:
                    block = {"indent": len(match.group("indent")), "wanted": allocations[host], "child_indent": None,
                             "missing": {"rate_mbit", "ceil_mbit"}}
                out.append(line)
                continue
        alloc = ALLOCATION.match(line)
        host = next((name for indent, name in reversed(parents) if alloc and indent < len(alloc.group("indent"))), None)
        if alloc and host in allocations:
            wanted = allocations[host]
            items = [item.strip() for item in alloc.group("body").split(",") if item.strip()]
            pairs = [tuple(part.strip() for part in item.split(":", 1)) for item in items]
            values = dict(pairs)
            values["rate_mbit"] = str(wanted["rate_mbit"])
            values["ceil_mbit"] = str(wanted["ceil_mbit"])
            keys = [key for key, _ in pairs] + [k for k in ("rate_mbit", "ceil_mbit") if k not in dict(pairs)]
            body = ", ".join(f"{key}: {values[key]}" for key in keys)
            line = f"{alloc.group('indent')}gerbang_allocation: {{{body}}}\n"
        out.append(line)
    if block is not None:
        out.extend(_missing_block_items(block))
    new_text = "".join(out)
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))
    return new_text, diff
