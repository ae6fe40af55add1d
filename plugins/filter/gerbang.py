"""Ansible filters of Gerbang Kota: the city compiler (lib/gerbang_kota) exposed to playbooks.

    gerbang_city: "{{ hostvars | gerbang_compile(groups) }}"

The compiler itself is plain Python in lib/gerbang_kota (unit-tested without Ansible); this
file only adapts Ansible's hostvars to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

_LIB = str(Path(__file__).resolve().parents[2] / "lib")
_CITY_VARIABLES = ("gerbang_city_name", "gerbang_timezone", "gerbang_working_hours", "gerbang_devices")


def _compiler():
    """The compiler's modules, imported on first use. Ansible loads this file in every worker
    process for every templated task, and the compiler's imports (jsonschema, netaddr) cost
    more than most tasks (py-spy of a no-change site.yml); only the run_once compile needs them."""
    if _LIB not in sys.path:
        sys.path.insert(0, _LIB)
    from gerbang_kota import layers, policy  # pylint: disable=import-outside-toplevel

    return layers, policy


def gerbang_compile(hostvars, groups) -> dict:
    """Compile the whole city from Ansible's ``hostvars`` and ``groups`` (every gateway, also
    under --limit: validation is about the city, not the hosts of this run)."""
    layers, policy = _compiler()
    groups = {name: list(members) for name, members in groups.items()}
    hosts = {}
    for host in groups.get(policy.GATEWAYS_GROUP, []):
        variables = hostvars[host]
        host_groups = [g for g, members in groups.items() if host in members]
        wanted = [*policy.HOST_FACTS, *policy.CONNECTION_VARIABLES, *_CITY_VARIABLES, *layers.BASE_VARIABLES,
                  layers.HOST_LAYER_VARIABLE,
                  *(layers.group_layer_variable(g) for g in host_groups)]
        hosts[host] = {key: variables[key] for key in wanted if key in variables}
    return policy.compile_city(hosts, groups)


class FilterModule:
    def filters(self):
        return {"gerbang_compile": gerbang_compile}
