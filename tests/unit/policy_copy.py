"""A throw-away copy of the repository's policy files, for tests that break them on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY_PATHS = ("inventory/production", "group_vars", "host_vars", "files/trustpositif")


def copy_policy(dest: Path) -> Path:
    for rel in POLICY_PATHS:
        shutil.copytree(REPO_ROOT / rel, dest / rel, symlinks=True)
    return dest


def set_path(document, dotted: str, value):
    """Set ``value`` at a dotted key path (list items by index), creating dicts as needed."""
    parts = dotted.split(".")
    node = document
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {}) if node.get(part) is not None else node.setdefault(part, {})
            if node is None:
                raise KeyError(dotted)
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def apply_case(root: Path, case: dict) -> None:
    path = root / case["file"]
    document = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    for dotted, value in case["set"].items():
        set_path(document, dotted, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
