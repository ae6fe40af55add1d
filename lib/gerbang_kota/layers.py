"""Policy layering: base (group_vars/all) -> group layers -> host layer.

Lists of named items (dicts with a ``name``) merge by name: an item of a later layer updates
the item of the same name field by field (a list inside an item is replaced), a new name is
appended, and ``state: absent`` removes the item. Dicts merge recursively; any other value
(scalars, plain lists) is replaced by the later layer.

Every merged named item remembers where each of its fields was last set (``Origin``), so
validation messages can name the file and key a person has to edit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    """Where a value was written: the file and the key path inside it."""

    where: str
    key: str


# Base variables (group_vars/all/<file>) -> key in the merged policy.
BASE_VARIABLES = {
    "gerbang_categories": ("categories", "group_vars/all/categories.yml"),
    "gerbang_schedules": ("schedules", "group_vars/all/schedules.yml"),
    "gerbang_rules": ("rules", "group_vars/all/rules.yml"),
    "gerbang_govapps": ("govapps", "group_vars/all/govapps.yml"),
    "gerbang_safe_mode": ("safe_mode", "group_vars/all/safe_mode.yml"),
    "gerbang_doh_resolvers": ("doh_resolvers", "group_vars/all/doh.yml"),
    "gerbang_bandwidth": ("bandwidth", "group_vars/all/bandwidth.yml"),
    "gerbang_network": ("network", "group_vars/all/network.yml"),
    "gerbang_block_page": ("block_page", "group_vars/all/block_page.yml"),
}
# The keys a group or host layer may set (same meaning as the base variables), plus
# allow_domains (names never blocked at the sites of that layer).
LAYER_KEYS = tuple(key for key, _ in BASE_VARIABLES.values()) + ("allow_domains",)
NAMED_LISTS = ("categories", "schedules", "rules", "govapps", "doh_resolvers")
# Named lists nested in dicts (dict key path -> list key).
NESTED_NAMED_LISTS = {("safe_mode", "safesearch_engines")}
LAB_GROUP = "lab"


def group_layer_variable(group: str) -> str:
    return f"gerbang_policy__{group}"


HOST_LAYER_VARIABLE = "gerbang_policy__host"


def group_layer_file(group: str) -> str:
    return f"group_vars/{group}.yml"


def host_layer_file(host: str) -> str:
    return f"host_vars/{host}/policy.yml"


def layer_order(groups: list[str]) -> list[str]:
    """Groups in the order their layers apply: by name, the lab group last."""
    return sorted(groups, key=lambda g: (g == LAB_GROUP, g))


class MergedPolicy:
    """The merged policy of one site with per-item origins."""

    def __init__(self) -> None:
        self.data: dict = {key: [] for key in NAMED_LISTS}
        self.data["allow_domains"] = []
        # (list key, item name) -> {field: Origin}
        self.item_origins: dict[tuple[str, str], dict[str, Origin]] = {}
        # top-level / dotted key -> Origin of the layer that last set it
        self.origins: dict[str, Origin] = {}

    def apply(self, layer: dict, where: str, variable: str, *, is_base_key: str | None = None) -> None:
        """Merge ``layer`` (a dict of LAYER_KEYS) written in ``where`` as ``variable``."""
        for key, value in layer.items():
            key_path = is_base_key or f"{variable}.{key}"
            if key in NAMED_LISTS and isinstance(value, list):
                self._merge_named(key, key, value, where, key_path)
            elif isinstance(value, dict) and isinstance(self.data.get(key), dict):
                self._merge_dict(self.data[key], value, (key,), where, key_path)
                self.origins[key] = Origin(where, key_path)
            else:
                self.data[key] = copy.deepcopy(value)
                self.origins[key] = Origin(where, key_path)
                if isinstance(value, dict):
                    self._index_nested(value, (key,), where, key_path)

    def _index_nested(self, value: dict, path: tuple, where: str, key_path: str) -> None:
        for sub_key, sub_value in value.items():
            if path + (sub_key,) in NESTED_NAMED_LISTS and isinstance(sub_value, list):
                list_key = ".".join(path + (sub_key,))
                for index, item in enumerate(sub_value):
                    if isinstance(item, dict) and "name" in item:
                        self.item_origins[(list_key, str(item["name"]))] = {
                            field: Origin(where, f"{key_path}.{sub_key}[{index}].{field}") for field in item
                        }

    def _merge_dict(self, target: dict, value: dict, path: tuple, where: str, key_path: str) -> None:
        for sub_key, sub_value in value.items():
            sub_path = path + (sub_key,)
            if sub_path in NESTED_NAMED_LISTS and isinstance(sub_value, list) and isinstance(target.get(sub_key), list):
                list_key = ".".join(sub_path)
                merged = self._merge_named_into(target[sub_key], list_key, sub_value, where, f"{key_path}.{sub_key}")
                target[sub_key] = merged
            elif isinstance(sub_value, dict) and isinstance(target.get(sub_key), dict):
                self._merge_dict(target[sub_key], sub_value, sub_path, where, f"{key_path}.{sub_key}")
            else:
                target[sub_key] = copy.deepcopy(sub_value)
            self.origins[".".join(sub_path)] = Origin(where, f"{key_path}.{sub_key}")

    def _merge_named(self, key: str, list_key: str, items: list, where: str, key_path: str) -> None:
        self.data[key] = self._merge_named_into(self.data.get(key) or [], list_key, items, where, key_path)

    def _merge_named_into(self, current: list, list_key: str, items: list, where: str, key_path: str) -> list:
        merged = [copy.deepcopy(item) for item in current]
        positions = {str(item.get("name")): i for i, item in enumerate(merged) if isinstance(item, dict)}
        for index, item in enumerate(items):
            item_key = f"{key_path}[{index}]"
            if not isinstance(item, dict) or "name" not in item:
                # Kept as is: schema validation reports it with its origin.
                merged.append(copy.deepcopy(item))
                continue
            name = str(item["name"])
            fields = {field: Origin(where, f"{item_key}.{field}") for field in item}
            if item.get("state") == "absent":
                if name in positions:
                    merged[positions[name]] = None
                    del positions[name]
                self.item_origins.pop((list_key, name), None)
                continue
            body = {k: copy.deepcopy(v) for k, v in item.items() if k != "state"}
            if name in positions:
                merged[positions[name]].update(body)
                self.item_origins.setdefault((list_key, name), {}).update(fields)
            else:
                positions[name] = len(merged)
                merged.append(body)
                self.item_origins[(list_key, name)] = fields
        return [item for item in merged if item is not None]

    def origin_of_key(self, dotted: str) -> Origin | None:
        """Origin of a (dotted) key such as ``bandwidth.device_rate_mbit``."""
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            origin = self.origins.get(".".join(parts[:cut]))
            if origin:
                suffix = "".join(f".{p}" for p in parts[cut:])
                return Origin(origin.where, origin.key + suffix)
        return None

    def origin_of(self, list_key: str, name: str, field: str = "name") -> Origin | None:
        fields = self.item_origins.get((list_key, str(name)), {})
        return fields.get(field) or fields.get("name")


def merge_site_policy(host: str, host_vars: dict, groups: list[str]) -> MergedPolicy:
    """Merge base, group and host layers for one site (``host_vars`` = the host's variables)."""
    policy = MergedPolicy()
    for variable, (key, where) in BASE_VARIABLES.items():
        if variable in host_vars and host_vars[variable] is not None:
            policy.apply({key: host_vars[variable]}, where, variable, is_base_key=variable)
    for group in layer_order(groups):
        variable = group_layer_variable(group)
        layer = host_vars.get(variable)
        if isinstance(layer, dict):
            policy.apply(layer, group_layer_file(group), variable)
    layer = host_vars.get(HOST_LAYER_VARIABLE)
    if isinstance(layer, dict):
        policy.apply(layer, host_layer_file(host), HOST_LAYER_VARIABLE)
    return policy
