"""A role's template rendered from compiled sites with Ansible's templar, as the role's
`gerbang_template` lookup does (trim_blocks), from group_vars/all/services.yml and the role's
defaults and vars — for tests that check what a role would install, without a gateway."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]


def _vars_file(path: Path) -> dict:
    """A vars file as Ansible reads it: strings are templates, other values stay as they are."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {k: trust_as_template(v) if isinstance(v, str) else v for k, v in data.items()}


def _templar(role: str, city: dict, host: str, extra: dict) -> Templar:
    """`extra` overrides the role's defaults (as group_vars would), not its vars."""
    variables = {"gerbang_city": city, "inventory_hostname": host, "ansible_managed": "Ansible managed"}
    variables.update(_vars_file(REPO / "group_vars/all/services.yml"))
    variables.update(_vars_file(REPO / f"roles/{role}/defaults/main.yml"))
    variables.update(extra)
    variables.update(_vars_file(REPO / f"roles/{role}/vars/main.yml"))
    return Templar(loader=DataLoader(), variables=variables)


def render(role: str, template: str, city: dict, host: str, **extra) -> str:
    text = (REPO / f"roles/{role}/templates/{template}").read_text(encoding="utf-8")
    return _templar(role, city, host, extra).template(trust_as_template(text))


def role_var(role: str, name: str, city: dict, host: str, **extra):
    """The value of one of the role's variables for `host`, templated."""
    return _templar(role, city, host, extra).template(trust_as_template("{{ %s }}" % name))
