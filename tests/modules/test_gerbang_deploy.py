"""Behaviour of the gerbang_deploy module, run for real as Ansible runs it (args file)."""
import os

import pytest
from modulerun import run_module


def run(tmp_path, check=False, diff=False, **args):
    return run_module("gerbang_deploy", tmp_path, check=check, diff=diff, **args)


def test_first_run_writes_then_second_run_changes_nothing(tmp_path):
    conf = tmp_path / "etc" / "app.conf"
    files = [{"path": str(conf), "content": "a=1\n", "mode": "0640"}]
    first = run(tmp_path, files=files)
    assert first["changed"] is True and first["changed_files"] == [str(conf)]
    assert conf.read_text() == "a=1\n" and oct(conf.stat().st_mode & 0o777) == "0o640"
    second = run(tmp_path, files=files)
    assert second["changed"] is False and second["changed_files"] == []


def test_mode_drift_is_corrected(tmp_path):
    conf = tmp_path / "app.conf"
    files = [{"path": str(conf), "content": "x\n", "mode": "0644"}]
    run(tmp_path, files=files)
    os.chmod(conf, 0o600)
    result = run(tmp_path, files=files)
    assert result["changed"] is True and oct(conf.stat().st_mode & 0o777) == "0o644"


def test_failed_validation_rolls_every_file_back(tmp_path):
    main, acl = tmp_path / "main.conf", tmp_path / "acl.txt"
    run(tmp_path, files=[{"path": str(main), "content": "good\n"}, {"path": str(acl), "content": "old\n"}])
    result = run(tmp_path,
                 files=[{"path": str(main), "content": "bad\n"}, {"path": str(acl), "content": "new\n"},
                        {"path": str(tmp_path / "created.txt"), "content": "n\n"}],
                 validate="! grep -q bad %s")
    assert result.get("failed") is True and "rolled back" in result["msg"]
    assert main.read_text() == "good\n" and acl.read_text() == "old\n"
    assert not (tmp_path / "created.txt").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".gerbang-")] == []


def test_validation_sees_the_staged_first_file_and_the_installed_others(tmp_path):
    main, inc = tmp_path / "main.conf", tmp_path / "inc.conf"
    result = run(tmp_path,
                 files=[{"path": str(main), "content": "include %s\n" % inc}, {"path": str(inc), "content": "ok\n"}],
                 validate="grep -q include %s && grep -q ok " + str(inc))
    assert result["changed"] is True and main.read_text().startswith("include")


def test_check_mode_reports_without_writing_and_diff_shows_content(tmp_path):
    conf = tmp_path / "app.conf"
    result = run(tmp_path, check=True, diff=True, files=[{"path": str(conf), "content": "new\n"}])
    assert result["changed"] is True and not conf.exists()
    assert result["diff"][0]["after"] == "new\n"


def test_absent_paths_are_removed_and_commands_run_only_on_change(tmp_path):
    stale, marker = tmp_path / "stale.conf", tmp_path / "ran"
    stale.write_text("old")
    cmd = ["touch %s" % marker]
    result = run(tmp_path, absent=[str(stale)], commands_on_change=cmd)
    assert result["changed"] is True and not stale.exists() and marker.exists()
    marker.unlink()
    again = run(tmp_path, absent=[str(stale)], commands_on_change=cmd)
    assert again["changed"] is False and not marker.exists()


@pytest.mark.parametrize("owner", ["no-such-user-gerbang"])
def test_unknown_owner_is_a_clear_error(tmp_path, owner):
    result = run(tmp_path, files=[{"path": str(tmp_path / "f"), "content": "x", "owner": owner}])
    assert result.get("failed") is True and "unknown owner" in result["msg"]
