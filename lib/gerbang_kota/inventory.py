"""Compile a city straight from an inventory directory, outside a playbook (CLI, tests, tools).

Uses ``ansible-inventory --list`` so the variables are exactly the ones a playbook sees
(same group_vars/host_vars layering and precedence).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gerbang_kota.policy import REPO_ROOT, compile_city


def _ansible_inventory() -> str:
    beside_python = Path(sys.executable).with_name("ansible-inventory")
    return str(beside_python) if beside_python.exists() else (shutil.which("ansible-inventory") or "ansible-inventory")


def load_inventory(inventory: str | Path, root: str | Path = REPO_ROOT) -> tuple[dict, dict]:
    """(hostvars by host, members by group) of an inventory, variables resolved by Ansible.

    ``root`` is the repository the inventory belongs to: Ansible also reads group_vars/ and
    host_vars/ beside the working directory, so the command runs there."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")}
    out = subprocess.run([_ansible_inventory(), "-i", str(Path(inventory).resolve()), "--list"], check=True,
                         capture_output=True, text=True, cwd=root, env=env).stdout
    data = json.loads(out)
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def members(group: str, seen: set) -> set:
        if group in seen:
            return set()
        seen.add(group)
        node = data.get(group, {})
        found = set(node.get("hosts", []))
        for child in node.get("children", []):
            found |= members(child, seen)
        return found

    groups = {g: sorted(members(g, set())) for g in data if g != "_meta"}
    return hostvars, groups


def compile_inventory(inventory: str | Path, repo_root: str | Path | None = None, **kwargs) -> dict:
    root = Path(repo_root) if repo_root else REPO_ROOT
    hostvars, groups = load_inventory(inventory, root)
    return compile_city(hostvars, groups, repo_root=root, **kwargs)
