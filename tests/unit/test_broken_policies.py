"""Every broken-policy fixture is rejected with a message that names file, key and fix; the
production policy compiles clean; and the validation play stops with no host contacted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gerbang_kota.inventory import compile_inventory
from policy_copy import REPO_ROOT, apply_case, copy_policy

CASES = yaml.safe_load((REPO_ROOT / "tests/fixtures/broken_policies.yml").read_text(encoding="utf-8"))
TODAY = __import__("datetime").date(2026, 11, 23)


@pytest.fixture(scope="module")
def production_city():
    return compile_inventory(REPO_ROOT / "inventory/production", today=TODAY)


def test_production_policy_is_valid(production_city):
    assert production_city["errors"] == []
    assert len(production_city["sites"]) == 34


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_broken_policy_is_rejected_with_its_message(case, tmp_path):
    root = copy_policy(tmp_path)
    apply_case(root, case)
    city = compile_inventory(root / "inventory/production", repo_root=root, today=TODAY)
    if "warn" in case:
        assert city["errors"] == [], [e["line"] for e in city["errors"]]
        lines = [w["line"] for w in city["warnings"]]
        assert any(all(part in line for part in case["warn"]) for line in lines), lines
        return
    lines = [e["line"] for e in city["errors"]]
    assert any(all(part in line for part in case["expect"]) for line in lines), lines
    assert all("Fix: " in line for line in lines)
    assert city["sites"] == {}, "a policy with errors must not yield site policies"


def test_more_categories_than_squid_can_tag_are_rejected(tmp_path):
    root = copy_policy(tmp_path)
    path = root / "group_vars/all/categories.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["gerbang_categories"] += [{"name": f"extra_{n}", "title": f"Extra {n}", "domains": [f"extra{n}.example"]}
                                   for n in range(256 - len(data["gerbang_categories"]))]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    city = compile_inventory(root / "inventory/production", repo_root=root, today=TODAY)
    lines = [e["line"] for e in city["errors"]]
    assert any("gerbang_categories = 256" in line and "more than 255" in line and "merge categories" in line
               for line in lines), lines[:3]


NO_SSH = "Unable to execute ssh command line"


def _run_validate(inventory: Path, root: Path = REPO_ROOT):
    # Any connection attempt would fail on an ssh program that does not exist (NO_SSH), before a
    # packet is sent; the management addresses stay as written, since validation checks them.
    command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
               str(REPO_ROOT / "playbooks/validate.yml"), "-e", "ansible_ssh_executable=/nonexistent/gerbang-no-ssh"]
    return subprocess.run(command, capture_output=True, text=True, cwd=root, check=False,
                          env={**__import__("os").environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")})


def test_validation_play_stops_every_host_without_contacting_any(tmp_path):
    root = copy_policy(tmp_path)
    apply_case(root, next(c for c in CASES if c["name"] == "duplicate-mac-across-sites"))
    result = _run_validate(root / "inventory/production", root)
    assert result.returncode != 0
    assert "is already registered in host_vars/setda/devices.yml" in result.stdout
    assert "no gateway was touched" in result.stdout
    assert NO_SSH not in result.stdout + result.stderr
    assert "UNREACHABLE" not in result.stdout
    assert "unreachable=1" not in result.stdout


def test_validation_play_passes_on_production():
    result = _run_validate(REPO_ROOT / "inventory/production")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed=1" not in result.stdout and "unreachable=1" not in result.stdout
    assert NO_SSH not in result.stdout + result.stderr


def test_a_connection_attempt_would_show():
    """The check above can fail: a task that does contact the gateway stops on NO_SSH."""
    command = [str(Path(sys.executable).with_name("ansible")), "-i", str(REPO_ROOT / "inventory/production"), "setda",
               "-m", "ansible.builtin.ping", "-e", "ansible_ssh_executable=/nonexistent/gerbang-no-ssh"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False,
                            env={**__import__("os").environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")})
    assert result.returncode != 0
    assert NO_SSH in result.stdout + result.stderr
