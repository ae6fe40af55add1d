"""The gerbang_template lookup renders exactly what ansible.builtin.template renders, without
the recursive copy of the task's variables that made the builtin slow with the compiled city."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = Path(sys.executable).with_name("ansible-playbook")

TEMPLATE = """\
{{ ansible_managed | comment }}
# {{ template_path | basename }} for {{ site.name }}
{% for device in site.devices | sort(attribute='ip') %}
host {{ device.name }} {{ device.ip }}{{ ' (' ~ extra ~ ')' if extra is defined else '' }}
{% endfor %}
{{ site.nested | to_nice_json }}
"""

PLAYBOOK = """\
- name: Render one template with both lookups
  hosts: localhost
  gather_facts: false
  vars:
    site:
      name: setda
      devices: [{name: b, ip: 10.20.1.12}, {name: a, ip: 10.20.1.11}]
      nested: {deep: {deeper: [1, 2, {deepest: true}]}}
  tasks:
    - name: Print both renderings
      ansible.builtin.debug:
        msg:
          builtin: "{{ lookup('ansible.builtin.template', 'site.j2') }}"
          ours: "{{ lookup('gerbang_template', 'site.j2') }}"
          builtin_vars: "{{ lookup('ansible.builtin.template', 'site.j2', template_vars={'extra': 'x'}) }}"
          ours_vars: "{{ lookup('gerbang_template', 'site.j2', template_vars={'extra': 'x'}) }}"
          site_after: "{{ site }}"
"""


def test_renders_exactly_like_the_builtin_and_leaves_variables_alone(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/site.j2").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "play.yml").write_text(PLAYBOOK, encoding="utf-8")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_LOCALHOST_WARNING": "false"}
    run = subprocess.run([str(ANSIBLE), "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    [task] = json.loads(run.stdout)["plays"][0]["tasks"]
    msg = task["hosts"]["localhost"]["msg"]
    assert msg["ours"] == msg["builtin"]
    assert msg["ours_vars"] == msg["builtin_vars"]
    assert "host a 10.20.1.11\nhost b 10.20.1.12\n" in msg["ours"]
    assert "host a 10.20.1.11 (x)" in msg["ours_vars"]
    assert "# site.j2 for setda" in msg["ours"]
    assert msg["site_after"]["nested"] == {"deep": {"deeper": [1, 2, {"deepest": True}]}}
    assert "extra" not in msg["site_after"], "template_vars must not leak into the task's variables"
