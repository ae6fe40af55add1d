"""scripts/bootstrap.sh on a machine without python3-venv, and after a failed install.

Debian keeps ensurepip out of the standard library (package python3.X-venv), while
`python3 -m venv --help` works without it; bootstrap must see the difference. The machine here
has python3-venv, so a module directory on PYTHONPATH hides ensurepip from the check, and a
recording apt-get on PATH stands in for the package manager (the test must not install
packages on the host)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from policy_copy import REPO_ROOT


def _checkout(tmp_path: Path, requirements: str | None = None) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "scripts/bootstrap.sh", root / "scripts/bootstrap.sh")
    if requirements is None:
        shutil.copy2(REPO_ROOT / "requirements.txt", root / "requirements.txt")
    else:
        (root / "requirements.txt").write_text(requirements, encoding="utf-8")
    return root


def _run(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **env}, check=False, timeout=300)


def test_missing_ensurepip_installs_python3_venv(tmp_path):
    hidden = tmp_path / "hide"
    (hidden / "ensurepip").mkdir(parents=True)
    (hidden / "ensurepip/__init__.py").write_text('raise ImportError("hidden by the test")\n', encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n', encoding="utf-8")
    (bin_dir / "apt-get").chmod(0o755)
    root = _checkout(tmp_path)
    # venv --help succeeds even with ensurepip hidden: the old check would not have installed anything.
    assert subprocess.run(["python3", "-m", "venv", "--help"], env={**os.environ, "PYTHONPATH": str(hidden)},
                          capture_output=True, check=False).returncode == 0
    result = _run(root, {"PYTHONPATH": str(hidden), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert "install -y -qq python3-venv" in calls.read_text(encoding="utf-8")
    # ensurepip is still hidden after the "install": bootstrap says so and creates nothing.
    assert result.returncode != 0
    assert "still has no ensurepip" in result.stderr
    assert not (root / ".venv").exists()


def test_failed_install_removes_the_venv_it_created(tmp_path):
    # No package index: pip keeps its own version and cannot find the requirement.
    root = _checkout(tmp_path, "gerbang-kota-no-such-package==1.0\n")
    result = _run(root, {"PIP_NO_INDEX": "1"})
    assert result.returncode != 0
    assert "removing the unfinished .venv" in result.stderr
    assert not (root / ".venv").exists()
    # A .venv that was there before the run is not removed by a failed run.
    (root / ".venv").mkdir()
    result = _run(root, {"PIP_NO_INDEX": "1"})
    assert result.returncode != 0
    assert (root / ".venv/bin/python").exists()


def test_every_requirement_is_pinned():
    lines = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements
    assert all("==" in line and not any(op in line for op in (">", "<", "~", "!")) for line in requirements), \
        requirements
