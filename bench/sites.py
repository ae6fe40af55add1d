"""Print the first N sites of the lab inventory (by site id), comma-separated: the benches'
--sites list.   python3 bench/sites.py N"""

import sys
from pathlib import Path

import yaml

INVENTORY = Path(__file__).resolve().parents[1] / "inventory/lab/hosts.yml"


def walk(group):
    for host, facts in ((group or {}).get("hosts") or {}).items():
        if facts and "gerbang_site_id" in facts:
            yield facts["gerbang_site_id"], host
    for child in ((group or {}).get("children") or {}).values():
        yield from walk(child)


if __name__ == "__main__":
    inventory = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    print(",".join(host for _, host in sorted(set(walk(inventory["all"])))[: int(sys.argv[1])]))
