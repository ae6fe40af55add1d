"""Ansible filters of Gerbang Kota: the city compiler (lib/gerbang_kota) exposed to playbooks.

    gerbang_city: "{{ hostvars | gerbang_compile(groups) }}"

The compiler itself is plain Python in lib/gerbang_kota (unit-tested without Ansible); this
file only adapts Ansible's hostvars to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

_LIB = str(Path(__file__).resolve().parents[2] / "lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

from gerbang_kota.layers import BASE_VARIABLES, HOST_LAYER_VARIABLE, group_layer_variable  # noqa: E402
from gerbang_kota.policy import GATEWAYS_GROUP, HOST_FACTS, compile_city  # noqa: E402

_CITY_VARIABLES = ("gerbang_city_name", "gerbang_timezone", "gerbang_devices")


def _wanted(groups_of_host: list[str]) -> list[str]:
    return [*HOST_FACTS, *_CITY_VARIABLES, *BASE_VARIABLES, HOST_LAYER_VARIABLE,
            *(group_layer_variable(g) for g in groups_of_host)]


def gerbang_compile(hostvars, groups) -> dict:
    """Compile the whole city from Ansible's ``hostvars`` and ``groups`` (every gateway, also
    under --limit: validation is about the city, not the hosts of this run)."""
    groups = {name: list(members) for name, members in groups.items()}
    hosts = {}
    for host in groups.get(GATEWAYS_GROUP, []):
        variables = hostvars[host]
        host_groups = [g for g, members in groups.items() if host in members]
        hosts[host] = {key: variables[key] for key in _wanted(host_groups) if key in variables}
    return compile_city(hosts, groups)


class FilterModule:
    def filters(self):
        return {"gerbang_compile": gerbang_compile}
