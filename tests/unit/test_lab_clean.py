"""lab.py verify-clean (run by scripts/test.sh and bench/lab_bringup.sh after the tear-down)
names each thing of a lab still there, and lab.py down removes what the lab leaves. A
throw-away lab name: its namespace, state folder and processes are this test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policy_copy import REPO_ROOT

LAB = f"vc{os.getpid()}"
RUN = Path(f"/run/gerbang-{LAB}")
NS = f"{LAB}-inet"
MARK = {**os.environ, "GERBANG_LAB_PROCESS": LAB}

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("podman"),
                                reason="needs root, ip and podman")


def lab(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts/lab/lab.py"), command], capture_output=True,
                          text=True, env={**os.environ, "GERBANG_LAB": LAB}, timeout=120, check=False)


def test_verify_clean_names_what_is_left():
    assert lab("verify-clean").returncode == 0
    subprocess.run(["ip", "netns", "add", NS], check=True)
    RUN.mkdir()
    # A daemon in the lab's namespace (down kills it) and one outside any (down cannot see it).
    in_ns = subprocess.Popen(["ip", "netns", "exec", NS, "sleep", "300"], env=MARK, start_new_session=True)
    stray = subprocess.Popen(["sleep", "301"], env=MARK, start_new_session=True)
    # Another lab's namespace of a similar name is not this lab's.
    other = f"{LAB}x-inet"
    subprocess.run(["ip", "netns", "add", other], check=True)
    try:
        result = lab("verify-clean")
        assert result.returncode == 1
        for entry in (f"network namespace {NS}", f"state folder {RUN}", f"process {in_ns.pid} sleep 300",
                      f"process {stray.pid} sleep 301"):
            assert f"lab {LAB}: left behind: {entry}" in result.stderr, result.stderr
        assert other not in result.stderr
        assert lab("down").returncode == 0
        in_ns.wait(timeout=10)
        result = lab("verify-clean")
        assert result.returncode == 1
        assert result.stderr.strip() == f"lab {LAB}: left behind: process {stray.pid} sleep 301"
        stray.kill()
        stray.wait(timeout=10)
        result = lab("verify-clean")
        assert result.returncode == 0, result.stderr
        assert "nothing left" in result.stdout
    finally:
        for proc in (in_ns, stray):
            proc.kill()
            proc.wait(timeout=10)
        for ns in (NS, other):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(RUN, ignore_errors=True)
