"""gerbang-squid-cut (roles/squid/files): which categories are blocked at a local time, and that
it closes exactly the sockets carrying a blocked category's tag — real TCP sockets with real
marks in a throw-away network namespace (`unshare -n`), closed by the kernel through `ss -K`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CUT = REPO / "roles/squid/files/gerbang-squid-cut"
BASE = 0x47000000
MONDAY = "2026-11-23"
WORKING_HOURS = [{"day": d, "start_minute": 7 * 60, "end_minute": 16 * 60} for d in range(5)]
CONFIG = {
    "site": "setda", "timezone": "Asia/Jakarta", "mark_mask": 0xFFFF0000,
    "categories": [
        {"name": "games", "mark": BASE + 0x10000, "segments": [{"day": d, "start_minute": 0, "end_minute": 1440} for d in range(7)]},
        {"name": "streaming", "mark": BASE + 0x20000, "segments": WORKING_HOURS},
    ],
}

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ss"),
    reason="needs root, unshare and ss (throw-away netns)")


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(CONFIG), encoding="utf-8")
    return path


def decision(config, at):
    out = subprocess.run([sys.executable, str(CUT), "--config", str(config), "--print", "--at", at],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("at,blocked", [
    (f"{MONDAY} 06:59", ["games"]),
    (f"{MONDAY} 07:00", ["games", "streaming"]),
    (f"{MONDAY} 15:59", ["games", "streaming"]),
    (f"{MONDAY} 16:00", ["games"]),
    ("2026-11-28 10:00", ["games"]),   # Saturday
])
def test_blocked_categories_follow_the_segments(config, at, blocked):
    assert decision(config, at)["blocked"] == blocked


def test_a_bad_time_is_refused_with_the_format(config):
    result = subprocess.run([sys.executable, str(CUT), "--config", str(config), "--at", "07:00"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "YYYY-MM-DD HH:MM" in result.stderr


# Inside the namespace: one listener, one client socket per mark (as Squid's server-side sockets
# carry them), the cutter run at a time, then which sockets still work.
SOCKETS = textwrap.dedent("""
    import json, socket, subprocess, sys
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    marks = {"streaming": 0x4702000b, "games": 0x4701000c, "plain": 0x4700000b, "other": 0x0002000b}
    sockets = {}
    for name, mark in marks.items():
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        client.connect(listener.getsockname())
        sockets[name] = (client, listener.accept()[0])
    run = subprocess.run([sys.executable] + sys.argv[1:], capture_output=True, text=True)
    alive = {}
    for name, (client, _peer) in sockets.items():
        try:
            client.send(b"x")
            alive[name] = True
        except OSError:
            alive[name] = False
    print(json.dumps({"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr, "alive": alive}))
""")


def cut_in_netns(config, at):
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", SOCKETS, str(CUT), "--config", str(config), "--at", at],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@needs_netns
def test_at_the_window_edge_only_the_blocked_categorys_connections_are_closed(config):
    result = cut_in_netns(config, f"{MONDAY} 07:00")
    assert result["rc"] == 0, result["stderr"]
    assert result["alive"] == {"streaming": False, "games": False, "plain": True, "other": True}
    assert "closed 1 connection(s) of streaming" in result["stdout"]


@needs_netns
def test_before_the_window_streaming_connections_stay_open(config):
    result = cut_in_netns(config, f"{MONDAY} 06:59")
    assert result["rc"] == 0, result["stderr"]
    assert result["alive"] == {"streaming": True, "games": False, "plain": True, "other": True}
    assert "streaming" not in result["stdout"]


def test_connections_the_kernel_will_not_close_are_an_error(config, tmp_path):
    """`ss -K` skips sockets the kernel cannot destroy without an error; the cutter looks again
    and fails, naming what stayed open. An `ss` that lists one tagged socket and closes nothing
    stands in for such a kernel."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ss").write_text("#!/bin/sh\ncase \"$*\" in *-K*) exit 0;; esac\n"
                             "echo 'ESTAB 0 0 192.0.2.1:40000 203.0.113.9:443'\n", encoding="utf-8")
    (fake / "ss").chmod(0o755)
    result = subprocess.run([sys.executable, str(CUT), "--config", str(config), "--at", f"{MONDAY} 07:00"],
                            capture_output=True, text=True, env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert result.returncode == 1
    assert "1 connection(s) of streaming still open after ss -K" in result.stderr
    assert "CONFIG_INET_DIAG_DESTROY" in result.stderr and "203.0.113.9:443" in result.stderr
