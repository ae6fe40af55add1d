#!/usr/bin/python3
# -*- coding: utf-8 -*-
# Copyright: Gerbang Kota contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One module run per role per host: packages, files, validation, service, reload.

Why a module of our own: on a 2-core controller a rollout costs one module start-up per task
per host. A role written as package + N templates + service + handlers costs N+3 start-ups
per gateway even when nothing changed; this module does the same work in one, with the same
guarantees (every config validated before it is live, rollback on a bad config, reload not
restart).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gerbang_deploy
short_description: Install packages, write a set of files, validate them, and reload a service in one step
description:
  - Compares each file's content, mode and ownership with the wanted state and writes only what differs,
    atomically (temp file + rename in the same directory).
  - When anything changed and O(validate) is set, runs it after all files are written; if it fails every
    file is restored to its previous content (or removed if it did not exist) and the task fails with the
    validator's output. No service is touched with an invalid configuration.
  - Ensures the service is enabled and running, and reloads (or restarts, or runs a command) only when
    something changed, or when the kernel state the service loads (O(live_state)) is no longer what the last run
    left.
options:
  packages:
    description: Debian packages that must be installed; apt-get runs only for missing ones.
    type: list
    elements: str
    default: []
  files:
    description: Files to manage.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute destination path. Parent directories are created (mode 0755).
        type: path
        required: true
      content:
        description: Full content of the file.
        type: str
        required: true
      mode:
        description: Octal mode as a string.
        type: str
        default: "0644"
      owner:
        description: Owner name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
  absent:
    description: Paths that must not exist.
    type: list
    elements: path
    default: []
  validate:
    description:
      - Command run when anything changed, after the files are in place. C(%s) is replaced by the path of the
        first file in O(files), written to a temporary name next to it; that file is moved into place only when
        validation passes. Without C(%s) the command validates the installed set (for configs that include others).
    type: str
  service:
    description: systemd unit to keep enabled and started.
    type: str
  enabled:
    description: Whether the unit is enabled at boot.
    type: bool
    default: true
  on_change:
    description: What to do with a running O(service) when anything changed (V(reload), V(restart), V(none)) or a shell command.
    type: str
    default: reload
  restart_on:
    description:
      - Paths whose change needs a restart although O(on_change) is V(reload) (e.g. the main config of a daemon
        that re-reads only some files on SIGHUP). Changing any other file still only reloads.
    type: list
    elements: path
    default: []
  force_restart:
    description:
      - Restart the running O(service) even when none of O(files) changed, e.g. because a data file it loads at
        start-up was updated by an earlier task.
    type: bool
    default: false
  commands_on_change:
    description: Shell commands run, in order, after the service step when anything changed.
    type: list
    elements: str
    default: []
  ledger:
    description:
      - Name of the deployment record written after a successful run (O(ledger_dir)/NAME.json), with
        each file's sha256, mode and owner, the absent paths, packages and service. M(gerbang_state) checks it
        for the rollout's no-change fast path. Bookkeeping only; never reported as a change.
    type: str
  watch:
    description: Paths managed by other tasks (large copies) whose size and mtime go into the ledger.
    type: list
    elements: path
    default: []
  live_state:
    description:
      - Shell command printing the kernel state the O(service) loads, without counters or elements others add
        (e.g. C(nft -s -t list table inet NAME)). Its fingerprint after the run goes into the ledger; when a later
        run (or M(gerbang_state)) reads another one, the state was changed behind the service's back (C(nft flush
        ruleset), C(tc qdisc del)) and O(on_change) is done again, as if a file had changed. Needs O(ledger).
    type: str
  ledger_dir:
    description: Folder of the ledgers (M(gerbang_state) O(state_dir)/deployed).
    type: path
    default: /var/lib/gerbang/deployed
author:
  - Gerbang Kota contributors
"""

EXAMPLES = r"""
- name: Install and configure dnsmasq
  gerbang_deploy:
    packages: [dnsmasq]
    files:
      - path: /etc/dnsmasq.d/gerbang.conf
        content: "{{ lookup('gerbang_template', 'gerbang.conf.j2') }}"
    validate: dnsmasq --test --conf-file=/etc/dnsmasq.conf --conf-dir=/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new
    service: dnsmasq
    on_change: restart
"""

RETURN = r"""
changed_files:
  description: Paths written or removed.
  returned: always
  type: list
  elements: str
packages_installed:
  description: Packages that were missing and got installed.
  returned: always
  type: list
  elements: str
service_action:
  description: What was done to the service (none, started, reloaded, restarted, command).
  returned: always
  type: str
live_state_drifted:
  description: Whether O(live_state) read differently from what the last run recorded (and was re-applied).
  returned: always
  type: bool
"""

import grp
import hashlib
import json
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gerbang_host import ENABLED_STATES, installed_packages, live_state_sha256, write_atomic


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _ids(owner, group):
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def _file_state_differs(path, content, mode, uid, gid):
    """Return (content_differs, meta_differs) for one wanted file."""
    current = _read(path)
    if current is None:
        return True, True
    st = os.stat(path)
    meta = stat.S_IMODE(st.st_mode) != mode or st.st_uid != uid or st.st_gid != gid
    return current != content, meta


def _missing_packages(module, packages):
    installed = installed_packages(module, packages)
    return [p for p in packages if p not in installed]


def _install(module, packages):
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + packages
    rc, out, err = module.run_command(cmd, environ_update=env)
    if rc != 0:
        # A fresh gateway may have no package lists yet.
        module.run_command(["apt-get", "update", "-q"], environ_update=env, check_rc=True)
        rc, out, err = module.run_command(cmd, environ_update=env)
    if rc != 0:
        module.fail_json(msg="apt-get install %s failed" % " ".join(packages), stdout=out, stderr=err)


def _systemctl(module, *args):
    return module.run_command(["systemctl"] + list(args))


def _ledger_path(params):
    return os.path.join(params["ledger_dir"], params["ledger"] + ".json")


def _recorded_live_state(params):
    """The fingerprint the last run recorded for this same O(live_state) command, if any."""
    raw = _read(_ledger_path(params)) if params["ledger"] else None
    live = json.loads(raw).get("live_state") if raw else None
    if live and live.get("command") == params["live_state"]:
        return live.get("sha256")
    return None


def _write_ledger(module, params, live_sha256=None):
    """Record what this run left in place (only rewritten when it differs); `live_sha256` is the
    live state's fingerprint when this run already read it and applied nothing since."""
    files = []
    for item in params["files"]:
        st = os.stat(item["path"])
        files.append(dict(path=item["path"], sha256=hashlib.sha256(item["content"].encode("utf-8")).hexdigest(),
                          mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid))
    watch = []
    for path in params["watch"]:
        if os.path.exists(path):
            st = os.stat(path)
            watch.append(dict(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns))
    record = dict(files=files, absent=params["absent"], watch=watch, packages=params["packages"],
                  service=params["service"], enabled=params["enabled"])
    if params["live_state"]:
        record["live_state"] = dict(command=params["live_state"],
                                    sha256=live_sha256 or live_state_sha256(module, params["live_state"]))
    content = (json.dumps(record, sort_keys=True, indent=1) + "\n").encode("utf-8")
    path = _ledger_path(params)
    if _read(path) != content:
        write_atomic(path, content, 0o644, 0, 0)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type="list", elements="str", default=[]),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="str", default="0644"),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
            )),
            absent=dict(type="list", elements="path", default=[]),
            validate=dict(type="str"),
            service=dict(type="str"),
            enabled=dict(type="bool", default=True),
            on_change=dict(type="str", default="reload"),
            restart_on=dict(type="list", elements="path", default=[]),
            force_restart=dict(type="bool", default=False),
            commands_on_change=dict(type="list", elements="str", default=[]),
            ledger=dict(type="str"),
            watch=dict(type="list", elements="path", default=[]),
            ledger_dir=dict(type="path", default="/var/lib/gerbang/deployed"),
            live_state=dict(type="str"),
        ),
        required_by=dict(live_state="ledger"),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, changed_files=[], packages_installed=[], service_action="none",
                  live_state_drifted=False)
    diffs = []

    missing = _missing_packages(module, params["packages"])
    if missing:
        result["changed"] = True
        result["packages_installed"] = missing
        if not module.check_mode:
            _install(module, missing)

    wanted = []
    for item in params["files"]:
        path = item["path"]
        content = item["content"].encode("utf-8")
        mode = int(item["mode"], 8)
        try:
            uid, gid = _ids(item["owner"], item["group"])
        except KeyError as exc:
            if module.check_mode and missing:
                # The owner may be created by a package that check mode did not install.
                uid, gid = 0, 0
            else:
                module.fail_json(msg="%s: unknown owner or group (%s)" % (path, exc))
        content_differs, meta_differs = _file_state_differs(path, content, mode, uid, gid)
        if content_differs or meta_differs:
            wanted.append((path, content, mode, uid, gid, content_differs))
            if module._diff and content_differs:
                before = _read(path)
                diffs.append(dict(
                    before_header=path, after_header=path,
                    before=(before or b"").decode("utf-8", "replace"),
                    after=content.decode("utf-8", "replace")))
    to_remove = [p for p in params["absent"] if os.path.lexists(p)]
    for path in to_remove:
        if module._diff:
            diffs.append(dict(before_header=path, after_header="(absent)",
                              before=(_read(path) or b"").decode("utf-8", "replace"), after=""))

    files_changed = bool(wanted or to_remove)
    result["changed_files"] = [w[0] for w in wanted] + to_remove
    if files_changed:
        result["changed"] = True
    # Nothing to write, yet the kernel may no longer hold what the service loaded: re-apply then.
    live_now = None
    if params["live_state"] and not files_changed and not missing:
        recorded = _recorded_live_state(params)
        live_now = live_state_sha256(module, params["live_state"]) if recorded else None
        if live_now and live_now != recorded:
            result["changed"] = result["live_state_drifted"] = True
    reapply = files_changed or bool(missing) or result["live_state_drifted"]

    if module.check_mode:
        if diffs:
            result["diff"] = diffs
        module.exit_json(**result)

    if files_changed:
        validate = params["validate"]
        staged_first = bool(validate and "%s" in validate and params["files"])
        first_path = params["files"][0]["path"] if staged_first else None
        backups = {}
        staged_tmp = None
        try:
            for path, content, mode, uid, gid, _content_differs in wanted:
                backups[path] = (_read(path), os.stat(path) if os.path.exists(path) else None)
                if path == first_path:
                    staged_tmp = write_atomic(path, content, mode, uid, gid, final_path=path)
                else:
                    write_atomic(path, content, mode, uid, gid)
            for path in to_remove:
                backups[path] = (_read(path), os.stat(path))
                os.unlink(path)
            if validate:
                target = staged_tmp or first_path
                if staged_first and staged_tmp is None:
                    target = first_path  # first file unchanged: validate it in place
                command = validate.replace("%s", target) if staged_first else validate
                rc, out, err = module.run_command(command, use_unsafe_shell=True)
                if rc != 0:
                    raise ValueError("validation failed (%s), rc=%d\n%s%s" % (command, rc, out, err))
            if staged_tmp:
                os.replace(staged_tmp, first_path)
                staged_tmp = None
        except Exception as exc:  # roll every file back, then report
            if staged_tmp and os.path.exists(staged_tmp):
                os.unlink(staged_tmp)
            for path, (old, old_stat) in backups.items():
                if old is None:
                    if os.path.exists(path):
                        os.unlink(path)
                else:
                    write_atomic(path, old, stat.S_IMODE(old_stat.st_mode), old_stat.st_uid, old_stat.st_gid)
            module.fail_json(msg="%s; all files were rolled back, nothing was reloaded" % exc,
                             changed_files=result["changed_files"])

        if any(p.startswith(("/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/")) for p in result["changed_files"]):
            _systemctl(module, "daemon-reload")

    service = params["service"]
    if service:
        if params["enabled"]:
            rc, out, _ = _systemctl(module, "is-enabled", service)
            if out.strip() not in ENABLED_STATES:
                _systemctl(module, "enable", service)
                result["changed"] = True
        rc, _, _ = _systemctl(module, "is-active", "--quiet", service)
        if rc != 0:
            rc, out, err = _systemctl(module, "start", service)
            if rc != 0:
                _, journal, _ = module.run_command(["journalctl", "-u", service, "-n", "30", "--no-pager"])
                module.fail_json(msg="could not start %s" % service, stderr=err, journal=journal)
            result["service_action"] = "started"
            result["changed"] = True
        elif reapply or params["force_restart"]:
            action = "restart" if params["force_restart"] else params["on_change"]
            if action == "reload" and set(params["restart_on"]) & set(result["changed_files"]):
                action = "restart"
            if action in ("reload", "restart"):
                rc, out, err = _systemctl(module, action, service)
                if rc != 0:
                    module.fail_json(msg="systemctl %s %s failed" % (action, service), stderr=err)
                result["changed"] = True
                result["service_action"] = action + "ed" if action == "restart" else "reloaded"
            elif action != "none":
                module.run_command(action, use_unsafe_shell=True, check_rc=True)
                result["service_action"] = "command"

    if reapply:
        for command in params["commands_on_change"]:
            module.run_command(command, use_unsafe_shell=True, check_rc=True)

    if params["ledger"]:
        # Read again after anything was (re)started: only an untouched unit's reading still holds.
        untouched = not result["changed"] and not params["force_restart"]
        _write_ledger(module, params, live_now if untouched else None)

    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
