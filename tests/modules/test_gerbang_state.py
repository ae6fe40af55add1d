"""The no-change fast path on the gateway: gerbang_deploy's ledger and gerbang_state's verdict,
run for real as Ansible runs modules (args file)."""
import json
import os
import subprocess
import sys
from pathlib import Path

MODULES = Path(__file__).resolve().parents[2] / "plugins" / "modules"


def run(module, tmp_path, check=False, **args):
    args_file = tmp_path / f"{module}-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}))
    proc = subprocess.run([sys.executable, str(MODULES / f"{module}.py"), str(args_file)],
                          capture_output=True, text=True, check=False)
    return json.loads(proc.stdout)


def deploy(tmp_path, content="a=1\n", **extra):
    files = [{"path": str(tmp_path / "etc/app.conf"), "content": content, "mode": "0640"}]
    return run("gerbang_deploy", tmp_path, files=files, ledger="app", ledger_dir=str(tmp_path / "state/deployed"), **extra)


def state(tmp_path, digest="d1", **extra):
    return run("gerbang_state", tmp_path, digest=digest, state_dir=str(tmp_path / "state"), **extra)


def test_deploy_writes_a_ledger_of_what_it_left(tmp_path):
    result = deploy(tmp_path)
    assert result["changed"] is True
    ledger = json.loads((tmp_path / "state/deployed/app.json").read_text())
    assert ledger["files"][0]["path"] == str(tmp_path / "etc/app.conf") and ledger["files"][0]["mode"] == 0o640
    again = deploy(tmp_path)
    assert again["changed"] is False


def test_check_mode_writes_no_ledger(tmp_path):
    files = [{"path": str(tmp_path / "app.conf"), "content": "x\n"}]
    run("gerbang_deploy", tmp_path, check=True, files=files, ledger="app", ledger_dir=str(tmp_path / "deployed"))
    assert not (tmp_path / "deployed").exists()


def test_in_sync_only_after_a_recorded_rollout_with_the_same_digest(tmp_path):
    deploy(tmp_path)
    first = state(tmp_path)
    assert first["in_sync"] is False and "no complete rollout" in first["reasons"][0]
    assert first["changed"] is False
    state(tmp_path, record=True)
    assert state(tmp_path)["in_sync"] is True
    other = state(tmp_path, digest="d2")
    assert other["in_sync"] is False and "changed since the last complete rollout" in other["reasons"][0]
    # The mismatch removed the stamp: going back to d1 does not look complete either.
    assert state(tmp_path)["in_sync"] is False


def test_a_file_changed_on_the_gateway_breaks_sync(tmp_path):
    deploy(tmp_path)
    state(tmp_path, record=True)
    (tmp_path / "etc/app.conf").write_text("a=2\n")
    os.chmod(tmp_path / "etc/app.conf", 0o640)
    result = state(tmp_path)
    assert result["in_sync"] is False and "was changed on the gateway" in result["reasons"][0]


def test_a_mode_change_or_a_missing_file_breaks_sync(tmp_path):
    deploy(tmp_path)
    state(tmp_path, record=True)
    os.chmod(tmp_path / "etc/app.conf", 0o644)
    assert "another mode or owner" in state(tmp_path)["reasons"][0]
    deploy(tmp_path)
    state(tmp_path, record=True)
    os.unlink(tmp_path / "etc/app.conf")
    assert "is missing" in state(tmp_path)["reasons"][0]


def test_a_watched_copy_that_changed_breaks_sync(tmp_path):
    big = tmp_path / "trustpositif.txt"
    big.write_text("a.example\n")
    deploy(tmp_path, watch=[str(big)])
    state(tmp_path, record=True)
    assert state(tmp_path)["in_sync"] is True
    big.write_text("a.example\nb.example\n")
    assert "changed since it was copied" in state(tmp_path)["reasons"][0]


def test_a_new_deployment_after_the_stamp_breaks_sync(tmp_path):
    deploy(tmp_path)
    state(tmp_path, record=True)
    deploy(tmp_path, content="a=3\n")      # e.g. a role run alone, outside site.yml
    assert "deployment record changed" in state(tmp_path)["reasons"][0]


def test_force_and_check_mode(tmp_path):
    deploy(tmp_path)
    state(tmp_path, record=True)
    assert state(tmp_path, check=True, digest="d2")["in_sync"] is False
    assert state(tmp_path)["in_sync"] is True, "check mode must not remove the stamp"
    forced = state(tmp_path, force=True)
    assert forced["in_sync"] is False and "full rollout" in forced["reasons"][0]
    assert not (tmp_path / "state/rollout.json").exists()
