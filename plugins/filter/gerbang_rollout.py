"""Filter ``gerbang_rollout_digest``: what one gateway's roles render from, as one sha256.

    digest: "{{ gerbang_city.sites[inventory_hostname]
                | gerbang_rollout_digest(hostvars[inventory_hostname], code_digest) }}"

See lib/gerbang_kota/rollout.py; playbooks/gateways.yml compares it with the gateway's stamp.
"""

from __future__ import annotations

import sys
from pathlib import Path

_LIB = str(Path(__file__).resolve().parents[2] / "lib")


def gerbang_rollout_digest(site, host_variables, code_digest) -> str:
    if _LIB not in sys.path:
        sys.path.insert(0, _LIB)
    from gerbang_kota import rollout  # pylint: disable=import-outside-toplevel

    return rollout.site_digest(site, rollout.role_variables(host_variables), code_digest)


class FilterModule:
    def filters(self):
        return {"gerbang_rollout_digest": gerbang_rollout_digest}
