"""Run one of the project's modules for real, as Ansible runs it (an args file), with the
project's module_utils importable as `ansible.module_utils.<name>` (what ansible.cfg's
`module_utils` gives a rollout)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
# Extend the ansible.module_utils package the way AnsiballZ bundles ours, then run the module.
LAUNCHER = ("import runpy, sys, ansible.module_utils as utils; utils.__path__.append(sys.argv[1]); "
            "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def run_module(name: str, args_dir: Path, check: bool = False, diff: bool = False, **args) -> dict:
    args_file = args_dir / f"{name}-args.json"
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(PLUGINS / "module_utils"),
                           str(PLUGINS / "modules" / f"{name}.py"), str(args_file)],
                          capture_output=True, text=True, check=False)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)
