"""Every entry point sees the same variables (group_vars/ and host_vars/ live at the top level;
each inventory symlinks them, ansible.cfg): ansible-inventory, a playbook at the repository root
(site.yml) and one in playbooks/ (validate.yml). A playbook in playbooks/ has no group_vars of
its own beside it, so without the inventory's symlinks it would miss the policy the root
playbook sees. Both playbooks run with tags that select only the validation play, which
contacts no host (an ssh program that does not exist would stop any attempt)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policy_copy import REPO_ROOT, copy_policy

BIN = Path(sys.executable).parent
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")}
INVENTORY = str(REPO_ROOT / "inventory/production")
# rsud: group layers rumah_sakit and public_service; setda: group layer humas.
HOSTS = ("rsud", "setda")
VARIABLES = (
    "gerbang_rules",                   # group_vars/all/rules.yml (the city's base)
    "gerbang_network",                 # group_vars/all/network.yml
    "gerbang_policy__rumah_sakit",     # group_vars/rumah_sakit.yml (a group layer)
    "gerbang_policy__public_service",  # group_vars/public_service.yml
    "gerbang_policy__humas",           # group_vars/humas.yml
    "gerbang_devices",                 # host_vars/<site>/devices.yml
    "gerbang_site_id",                 # inventory/production/hosts.yml
    "ansible_host",
)
NO_SSH = "Unable to execute ssh command line"


def _inventory_host(host: str, cwd: Path) -> dict:
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", INVENTORY, "--host", host], cwd=cwd, env=ENV,
                         capture_output=True, text=True, check=True).stdout
    variables = json.loads(out)
    return {key: variables.get(key) for key in VARIABLES}


def _playbook_view(playbook: Path, tmp_path: Path, inventory: str = INVENTORY, *, succeeds: bool = True) -> dict:
    dump = tmp_path / (playbook.stem + ".json")
    env = {**ENV, "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).with_name("callback_plugins")),
           "ANSIBLE_CALLBACKS_ENABLED": "gerbang_dump_vars", "GERBANG_DUMP_FILE": str(dump),
           "GERBANG_DUMP_HOSTS": ",".join(HOSTS), "GERBANG_DUMP_VARS": ",".join(VARIABLES)}
    # --tags: no task has this tag, so only the validation play (tagged always) runs.
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", inventory, str(playbook),
                             "--limit", ",".join(HOSTS), "--tags", "gerbang-no-such-tag",
                             "-e", "ansible_ssh_executable=/nonexistent/gerbang-no-ssh"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert (result.returncode == 0) == succeeds, result.stdout[-2000:] + result.stderr[-2000:]
    assert NO_SSH not in result.stdout + result.stderr
    return json.loads(dump.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("views")
    return {playbook: _playbook_view(REPO_ROOT / playbook, tmp) for playbook in ("site.yml", "playbooks/validate.yml")}


@pytest.mark.parametrize("host", HOSTS)
def test_inventory_and_both_playbooks_see_the_same_variables(host, views, tmp_path):
    # ansible-inventory from the repository and from elsewhere (it reads only the inventory's folder).
    expected = _inventory_host(host, REPO_ROOT)
    assert _inventory_host(host, tmp_path) == expected
    # Each variable is there (the group layer only for the site in that group).
    absent = {"rsud": {"gerbang_policy__humas"},
              "setda": {"gerbang_policy__rumah_sakit", "gerbang_policy__public_service"}}[host]
    assert all(expected[key] for key in VARIABLES if key not in absent), expected
    assert all(expected[key] is None for key in absent), expected
    # site.yml's plays are imported from playbooks/: Ansible's playbook_dir is playbooks/ in both runs,
    # a folder with no group_vars/ or host_vars/ beside it; only the inventory's symlinks bring them.
    assert {view["playbook_dir"] for view in views.values()} == {str(REPO_ROOT / "playbooks")}
    for playbook, view in views.items():
        assert view["hosts"][host] == expected, playbook


def test_without_the_inventory_symlinks_a_playbook_in_playbooks_misses_the_policy(tmp_path):
    """The comparison above can fail: the same layout with the inventory's group_vars symlink
    removed gives validate.yml no city policy (and the validation stops)."""
    root = copy_policy(tmp_path / "repo")
    (root / "inventory/production/group_vars").unlink()
    (root / "playbooks").mkdir()
    shutil.copy2(REPO_ROOT / "playbooks/validate.yml", root / "playbooks/validate.yml")
    view = _playbook_view(root / "playbooks/validate.yml", tmp_path, str(root / "inventory/production"),
                          succeeds=False)
    assert view["hosts"]["rsud"]["gerbang_rules"] is None
    assert view["hosts"]["rsud"]["gerbang_devices"] == _inventory_host("rsud", REPO_ROOT)["gerbang_devices"]


def test_the_graph_shows_the_city():
    graph = subprocess.run([str(BIN / "ansible-inventory"), "-i", INVENTORY, "--graph"], cwd=REPO_ROOT, env=ENV,
                           capture_output=True, text=True, check=True).stdout
    # "@all:", then "  |--@group:" or "  |  |--host", three characters a level.
    tree: dict[str, set] = {"all": set()}
    path = ["all"]
    assert graph.splitlines()[0] == "@all:"
    for line in graph.splitlines()[1:]:
        match = re.match(r"^([ |]*)\|--(@?)([\w.-]+):?$", line)
        assert match, line
        depth, is_group, name = (len(match.group(1)) + 1) // 3, match.group(2), match.group(3)
        del path[depth:]
        if is_group:
            path.append(name)
            tree.setdefault(name, set())
        else:
            for group in path:
                tree[group].add(name)
    assert len(tree["gateways"]) == 34, sorted(tree["gateways"])
    for group in ("opd", "kecamatan", "rumah_sakit", "command_center", "public_service", "humas"):
        assert tree.get(group), group
    assert tree["kecamatan"] == {"kec-cipocok-jaya", "kec-curug", "kec-kasemen", "kec-serang", "kec-taktakan",
                                 "kec-walantaka"}
    assert tree["command_center"] == {"mcc"}
    assert tree["rumah_sakit"] == {"rsud"}
    assert len(tree["opd"]) == 33
