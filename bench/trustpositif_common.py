"""What the two TRUST+ benchmarks share: the synthetic list, probing for an outage, memory, podman.

The list is generated (never downloaded): N unique random names under a few real-looking TLDs,
shuffled, one a line, like Kominfo's export. Random order matters: Squid keeps a domain ACL in
a splay tree, and names inserted in sorted order would load unrealistically fast.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
TLDS = ["com", "net", "org", "info", "xyz", "id", "co.id", "top", "site", "online"]


def generate(path: Path, count: int, seed: int = 7) -> list[str]:
    """Write `count` unique synthetic names to `path` (header comment first); return them in file order."""
    rnd = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    names: set[str] = set()
    while len(names) < count:
        label = "".join(rnd.choices(alphabet, k=rnd.randint(6, 16)))
        names.add(f"{label}.{rnd.choice(TLDS)}")
    ordered = sorted(names)
    rnd.shuffle(ordered)
    with path.open("w", encoding="ascii") as handle:
        handle.write("# synthetic TRUST+ list for the benchmark\n")
        handle.writelines(name + "\n" for name in ordered)
    return ordered


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Squid's kids under its master process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def probe_outage(probe: Callable[[], bool], trigger: Callable[[], None], done: Callable[[], bool],
                 limit: float, interval: float = 0.005, settle: float = 1.0) -> dict:
    """Probe continuously, fire `trigger` once, and measure how long answers stopped.

    `probe` sends one request and waits for its answer (with a timeout far above any stall,
    so a request queued during a stall counts as waiting, not as lost) and says whether the
    answer was the expected one. Probing starts 0.3 s before the trigger and ends `settle`
    seconds after `done()` (the daemon's log shows the reload finished) or at `limit`.
    Returns the longest time between two consecutive good answers around the trigger (the
    outage a client sees), the slowest single request, and how many requests took over 1 s
    (what a resolver or browser with a 1 s timeout would have retried or given up on).
    """
    good: list[float] = []
    slowest, over_1s, failed, fired, finished = 0.0, 0, 0, None, None
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if fired is None and now - start >= 0.3:
            fired = time.monotonic()
            trigger()
        sent = time.monotonic()
        ok = probe()
        took = time.monotonic() - sent
        slowest, over_1s = max(slowest, took), over_1s + (took > 1.0)
        if ok:
            good.append(time.monotonic())
        else:
            failed += 1
        if fired is not None:
            if finished is None and done():
                finished = time.monotonic()
            if finished is not None and time.monotonic() - finished >= settle:
                break
            if time.monotonic() - fired > limit:
                break
        time.sleep(interval)
    gaps = [b - a for a, b in zip(good, good[1:]) if b >= fired]
    return {"outage": max(gaps, default=float("nan")), "slowest": slowest, "over_1s": over_1s,
            "failed": failed, "answers": len(good), "completed": finished is not None,
            "reload_logged_after": None if finished is None else finished - fired}


def run_in_podman(image: str, script: str, argv: list[str], name: str) -> int:
    """Re-run `script` (a path in bench/) inside a throw-away container of the gateway image.

    No network at all (--network none: loopback only); the repository is mounted read-only
    so the role's own converter and this module are the ones used.
    """
    cmd = ["podman", "run", "--rm", "--name", name, "--network", "none",
           "-v", f"{REPO}:/repo:ro", "--entrypoint", "python3", image, f"/repo/bench/{script}", *argv]
    print(f"# podman run --rm --name {name} --network none {image} (loadavg before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
    try:
        return subprocess.call(cmd)
    finally:
        subprocess.run(["podman", "rm", "-f", "--ignore", name], capture_output=True, check=False)


def header(tool_version: str) -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {tool_version}; python {sys.version.split()[0]}",
          flush=True)
