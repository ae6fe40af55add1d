#!/usr/bin/python3
# -*- coding: utf-8 -*-
# Copyright: Gerbang Kota contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The no-change fast path of a rollout: is this gateway still what its last complete rollout left?

One module run per gateway instead of one per role: when the inputs' digest equals the stamp of
the last complete rollout and every file, package and service recorded then (gerbang_deploy's
ledgers) is still in place, the roles have nothing to do and playbooks/gateways.yml skips them.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gerbang_state
short_description: Compare a gateway with the stamp of its last complete rollout, or record one
description:
  - Without O(record), reports RV(in_sync) true only when the stamp's digest equals O(digest) and every ledger the
    stamp names is unchanged and still true on the host (file contents, modes and owners; absent paths; watched
    files' size and mtime; packages installed; services enabled and active; the fingerprint of the live kernel
    state, for ledgers that record one). When not in sync the stamp is removed
    (not in check mode), so a rollout that stops half-way never looks complete.
  - With O(record), writes the stamp (O(digest) and the sha256 of every ledger present).
  - Never reports a change: the stamp is bookkeeping, not configuration.
options:
  digest:
    description: sha256 of the inputs the roles render from (filter gerbang_rollout_digest).
    type: str
    required: true
  record:
    description: Write the stamp instead of comparing.
    type: bool
    default: false
  force:
    description: Report not in sync (and remove the stamp) whatever the host holds, for a full rollout.
    type: bool
    default: false
  state_dir:
    description: Where the stamp (rollout.json) and the ledgers (deployed/NAME.json) are.
    type: path
    default: /var/lib/gerbang
author:
  - Gerbang Kota contributors
"""

RETURN = r"""
in_sync:
  description: Whether the roles have nothing to do on this gateway.
  returned: always
  type: bool
reasons:
  description: Why not (empty when in sync).
  returned: always
  type: list
  elements: str
digest:
  description: O(digest), for the task that records the stamp.
  returned: always
  type: str
"""

import hashlib
import json
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gerbang_host import ENABLED_STATES, installed_packages, live_state_sha256, write_atomic


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _ledgers(ledger_dir):
    """{name: (sha256 of the ledger file, parsed ledger)} for every ledger present."""
    found = {}
    if os.path.isdir(ledger_dir):
        for entry in sorted(os.listdir(ledger_dir)):
            if entry.endswith(".json"):
                path = os.path.join(ledger_dir, entry)
                with open(path, "rb") as handle:
                    raw = handle.read()
                found[entry[:-5]] = (hashlib.sha256(raw).hexdigest(), json.loads(raw))
    return found


def _file_reasons(name, ledger):
    reasons = []
    for item in ledger.get("files", []):
        path = item["path"]
        try:
            st = os.stat(path)
        except FileNotFoundError:
            reasons.append("%s: %s is missing" % (name, path))
            continue
        if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) != (item["mode"], item["uid"], item["gid"]):
            reasons.append("%s: %s has another mode or owner" % (name, path))
        elif _sha256(path) != item["sha256"]:
            reasons.append("%s: %s was changed on the gateway" % (name, path))
    for path in ledger.get("absent", []):
        if os.path.lexists(path):
            reasons.append("%s: %s should not exist" % (name, path))
    for item in ledger.get("watch", []):
        try:
            st = os.stat(item["path"])
            current = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            current = None
        if current != [item["size"], item["mtime_ns"]]:
            reasons.append("%s: %s changed since it was copied" % (name, item["path"]))
    return reasons


def _system_reasons(module, ledgers):
    reasons = []
    packages = sorted({p for ledger in ledgers.values() for p in ledger.get("packages", [])})
    installed = installed_packages(module, packages)
    reasons += ["package %s is not installed" % p for p in packages if p not in installed]
    services = [ledger["service"] for ledger in ledgers.values() if ledger.get("service")]
    enabled = [ledger["service"] for ledger in ledgers.values() if ledger.get("service") and ledger.get("enabled")]
    if services:
        _rc, out, _err = module.run_command(["systemctl", "is-active"] + services)
        states = out.split()
        reasons += ["service %s is %s" % (s, states[i] if i < len(states) else "unknown")
                    for i, s in enumerate(services) if i >= len(states) or states[i] != "active"]
    if enabled:
        _rc, out, _err = module.run_command(["systemctl", "is-enabled"] + enabled)
        states = out.split()
        reasons += ["service %s is not enabled" % s for i, s in enumerate(enabled)
                    if i >= len(states) or states[i] not in ENABLED_STATES]
    for name, ledger in sorted(ledgers.items()):
        live = ledger.get("live_state")
        if live and live_state_sha256(module, live["command"]) != live["sha256"]:
            reasons.append("%s: the live kernel state is not what was applied (changed by hand?)" % name)
    return reasons


def main():
    module = AnsibleModule(
        argument_spec=dict(
            digest=dict(type="str", required=True),
            record=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            state_dir=dict(type="path", default="/var/lib/gerbang"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    stamp_path = os.path.join(params["state_dir"], "rollout.json")
    ledgers = _ledgers(os.path.join(params["state_dir"], "deployed"))

    if params["record"]:
        if not module.check_mode:
            stamp = {"digest": params["digest"], "ledgers": {name: sha for name, (sha, _ledger) in ledgers.items()}}
            write_atomic(stamp_path, json.dumps(stamp, sort_keys=True).encode("utf-8"), 0o644, 0, 0)
        module.exit_json(changed=False, in_sync=True, reasons=[], digest=params["digest"])

    reasons = []
    stamp = None
    if params["force"]:
        reasons.append("a full rollout was asked for (gerbang_full_run)")
    elif not os.path.exists(stamp_path):
        reasons.append("no complete rollout is recorded on this gateway")
    else:
        with open(stamp_path, encoding="utf-8") as handle:
            stamp = json.load(handle)
        if stamp.get("digest") != params["digest"]:
            reasons.append("the policy, a role variable or the code changed since the last complete rollout")
    if not reasons:
        recorded = stamp.get("ledgers", {})
        if not recorded:
            reasons.append("the last rollout recorded no deployment")
        for name, sha in sorted(recorded.items()):
            if name not in ledgers or ledgers[name][0] != sha:
                reasons.append("%s: its deployment record changed or is missing" % name)
        if not reasons:
            wanted = {name: ledgers[name][1] for name in recorded}
            for name, ledger in wanted.items():
                reasons += _file_reasons(name, ledger)
            reasons += _system_reasons(module, wanted)
    if reasons and not module.check_mode and os.path.exists(stamp_path):
        os.unlink(stamp_path)
    module.exit_json(changed=False, in_sync=not reasons, reasons=reasons, digest=params["digest"])


if __name__ == "__main__":
    main()
