# -*- coding: utf-8 -*-
# Copyright: Gerbang Kota contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What gerbang_deploy (which puts a role's state on the gateway) and gerbang_state (which checks
it is still there) must see the same way: installed packages, enabled units, the fingerprint of a
live kernel state, and an atomic write."""

from __future__ import annotations

import hashlib
import os
import tempfile

# `systemctl is-enabled` answers meaning the unit is started at boot (or by something that is).
ENABLED_STATES = ("enabled", "static", "alias", "indirect", "generated")


def installed_packages(module, packages):
    """The subset of `packages` that dpkg reports installed ("ii")."""
    if not packages:
        return set()
    _rc, out, _err = module.run_command(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\\n"] + list(packages))
    installed = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("ii"):
            installed.add(parts[0].split(":")[0])
    return installed


def live_state_sha256(module, command):
    """sha256 of what `command` (a shell command printing kernel state without counters) shows,
    its exit status included: a table that is gone reads differently from an empty one."""
    rc, out, _err = module.run_command(command, use_unsafe_shell=True)
    return hashlib.sha256(("rc=%d\n%s" % (rc, out)).encode("utf-8")).hexdigest()


def write_atomic(path, content, mode, uid, gid, final_path=None):
    """Write bytes to path through a temp file in the same directory and rename it into place;
    with `final_path`, leave the temp file (for validation first) and return its name."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gerbang-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        if final_path is None:
            os.replace(tmp, path)
            return path
        return tmp
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
