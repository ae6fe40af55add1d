"""The no-change fast path on the gateway: gerbang_deploy's ledger and gerbang_state's verdict,
run for real as Ansible runs modules (args file)."""
import json
import os

from modulerun import run_module


def run(module, tmp_path, check=False, **args):
    return run_module(module, tmp_path, check=check, **args)


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


def test_live_state_changed_behind_the_service_breaks_sync_and_is_reapplied(tmp_path):
    # Stand-ins: `live` is the kernel state (a ruleset), `wanted` what the service loads into it.
    live, wanted = tmp_path / "live", tmp_path / "wanted"
    wanted.write_text("table inet gerbang { ... }\n")
    extra = dict(live_state=f"cat {live}", commands_on_change=[f"cp {wanted} {live}"])
    assert deploy(tmp_path, **extra)["changed"] is True and live.read_text() == wanted.read_text()
    again = deploy(tmp_path, **extra)
    assert again["changed"] is False and again["live_state_drifted"] is False
    state(tmp_path, record=True)
    assert state(tmp_path)["in_sync"] is True

    live.write_text("")                                   # `nft flush ruleset` by hand
    result = state(tmp_path)
    assert result["in_sync"] is False and result["reasons"] == [
        "app: the live kernel state is not what was applied (changed by hand?)"]
    checked = deploy(tmp_path, check=True, **extra)
    assert checked["changed"] is True and checked["live_state_drifted"] is True and live.read_text() == ""
    repaired = deploy(tmp_path, **extra)
    assert repaired["changed"] is True and repaired["live_state_drifted"] is True and repaired["changed_files"] == []
    assert live.read_text() == wanted.read_text()
    assert deploy(tmp_path, **extra)["changed"] is False
    state(tmp_path, record=True)
    assert state(tmp_path)["in_sync"] is True


def test_live_state_gone_reads_differently_from_empty(tmp_path):
    live = tmp_path / "live"
    live.write_text("")
    extra = dict(live_state=f"cat {live}")
    deploy(tmp_path, **extra)
    state(tmp_path, record=True)
    live.unlink()                                         # the command now fails: the table is gone
    assert state(tmp_path)["in_sync"] is False
    assert deploy(tmp_path, **extra)["live_state_drifted"] is True


def test_a_new_live_state_command_is_recorded_not_taken_for_drift(tmp_path):
    live = tmp_path / "live"
    live.write_text("v1\n")
    deploy(tmp_path, live_state=f"cat {live}")
    assert deploy(tmp_path, live_state=f"cat {live} {live}")["live_state_drifted"] is False
    assert deploy(tmp_path, live_state=f"cat {live} {live}")["changed"] is False


def test_live_state_needs_a_ledger(tmp_path):
    result = run("gerbang_deploy", tmp_path, files=[], live_state="true")
    assert result.get("failed") is True and "ledger" in result["msg"]
