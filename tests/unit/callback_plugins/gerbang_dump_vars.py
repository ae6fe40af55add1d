"""Test-only callback: when a play starts, write the variables it gives some hosts to a JSON file.

tests/unit/test_variable_layout.py loads it (ANSIBLE_CALLBACK_PLUGINS) into a run of a real
playbook (site.yml at the repository root, playbooks/validate.yml below it), so what is
compared is exactly what that playbook's tasks would see: inventory, group_vars/host_vars
beside the inventory and beside the playbook, Ansible's precedence. Environment:
GERBANG_DUMP_HOSTS (comma-separated), GERBANG_DUMP_VARS (comma-separated), GERBANG_DUMP_FILE.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: gerbang_dump_vars
    type: aggregate
    short_description: write the first play's variables of some hosts to a JSON file (tests only)
    description: [Used by tests/unit/test_variable_layout.py.]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gerbang_dump_vars"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._done = False

    def v2_playbook_on_play_start(self, play) -> None:
        if self._done:
            return
        self._done = True
        manager = play.get_variable_manager()
        inventory = manager._inventory  # pylint: disable=protected-access (no public accessor)
        wanted = os.environ["GERBANG_DUMP_VARS"].split(",")
        dump = {"playbook_dir": manager.get_vars(play=play).get("playbook_dir"), "hosts": {}}
        for name in os.environ["GERBANG_DUMP_HOSTS"].split(","):
            variables = manager.get_vars(play=play, host=inventory.get_host(name), include_hostvars=False)
            dump["hosts"][name] = {key: variables.get(key) for key in wanted}
        with open(os.environ["GERBANG_DUMP_FILE"], "w", encoding="utf-8") as handle:
            json.dump(dump, handle, default=str, indent=1, sort_keys=True)
