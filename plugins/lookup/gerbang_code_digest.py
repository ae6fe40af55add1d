"""Lookup ``gerbang_code_digest``: sha256 of the code that renders the gateways' configuration.

Roles, plugins, playbooks and the compiler (tests left out), with ansible-core's and Jinja's
versions: a new role version or Ansible upgrade makes every gateway take the full rollout.
Computed once per run (playbooks/gateways.yml, run_once).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2
from ansible.plugins.lookup import LookupBase
from ansible.release import __version__ as ansible_version

DOCUMENTATION = r"""
name: gerbang_code_digest
author: Gerbang Kota
short_description: sha256 of the repository's rollout code and Ansible/Jinja versions
description:
  - Hashes every file under roles/, plugins/, playbooks/, lib/gerbang_kota, site.yml and
    ansible.cfg of this repository (molecule/ and tests/ folders excluded).
options: {}
"""

RETURN = r"""
_raw:
  description: one hex sha256
  type: list
  elements: str
"""

_ROOT = Path(__file__).resolve().parents[2]


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if str(_ROOT / "lib") not in sys.path:
            sys.path.insert(0, str(_ROOT / "lib"))
        from gerbang_kota import rollout  # pylint: disable=import-outside-toplevel

        return [rollout.code_digest(_ROOT, {"ansible-core": ansible_version, "jinja2": jinja2.__version__})]
