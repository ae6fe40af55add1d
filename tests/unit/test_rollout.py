"""The no-change fast path's digest (lib/gerbang_kota/rollout.py): what changes it, what does
not, and that the gateway roles read no variable it leaves out."""

import re
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
import yaml

from gerbang_kota import rollout

REPO = Path(__file__).resolve().parents[2]
GATEWAY_ROLES = ("nftables", "dnsmasq", "squid", "shaping", "monitoring_agent")
SITE = {"name": "setda", "safe_mode": {"trustpositif": {"enabled": False}}}


def test_code_digest_follows_role_files_but_not_their_tests(tmp_path):
    for rel in ("roles/r/templates/a.j2", "roles/r/molecule/default/x.yml", "plugins/f.py", "site.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("1")
    versions = {"ansible-core": "2.19", "jinja2": "3.1"}
    first = rollout.code_digest(tmp_path, versions)
    (tmp_path / "roles/r/molecule/default/x.yml").write_text("2")
    assert rollout.code_digest(tmp_path, versions) == first
    (tmp_path / "roles/r/templates/a.j2").write_text("2")
    second = rollout.code_digest(tmp_path, versions)
    assert second != first
    assert rollout.code_digest(tmp_path, {**versions, "jinja2": "3.2"}) != second


def test_role_variables_are_picked_by_prefix():
    picked = rollout.role_variables({"squid_http_port": 3128, "gerbang_ports": {"dns": 53}, "gerbang_city": {},
                                     "gerbang_full_run": True, "ansible_host": "x", "__squid_site": {}})
    assert picked == {"gerbang_ports": {"dns": 53}, "squid_http_port": 3128}


def test_site_digest_changes_with_each_input():
    base = rollout.site_digest(SITE, {"squid_http_port": 3128}, "code")
    assert base == rollout.site_digest(dict(SITE), {"squid_http_port": 3128}, "code")
    assert rollout.site_digest({**SITE, "name": "x"}, {"squid_http_port": 3128}, "code") != base
    assert rollout.site_digest(SITE, {"squid_http_port": 3129}, "code") != base
    assert rollout.site_digest(SITE, {"squid_http_port": 3128}, "code2") != base


def test_site_digest_follows_the_trustpositif_source(tmp_path):
    source = tmp_path / "domains.txt"
    source.write_text("a.example\n")
    site = {"safe_mode": {"trustpositif": {"enabled": True, "source": str(source)}}}
    first = rollout.site_digest(site, {}, "code")
    source.write_text("a.example\nb.example\n")
    assert rollout.site_digest(site, {}, "code") != first
    second = rollout.site_digest(site, {}, "code")
    source.unlink()
    assert rollout.site_digest(site, {}, "code") not in (first, second)


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _sources(role):
    base = REPO / "roles" / role
    for path in sorted((base / "templates").rglob("*")):
        if path.is_file():
            yield path, path.read_text()
    for rel in ("vars/main.yml", "tasks/main.yml"):
        for text in _strings(yaml.safe_load((base / rel).read_text())):
            if "{{" in text or "{%" in text:
                yield base / rel, text


# Names a gateway role may read besides its own and the city's (gerbang_*): the host's name
# (which selects its compiled site), Ansible's constants and loop/lookup machinery.
ALLOWED = {"inventory_hostname", "ansible_managed", "role_path", "ansible_playbook_python", "ansible_play_hosts",
           "item", "lookup", "query", "q", "omit"}


@pytest.mark.parametrize("role", GATEWAY_ROLES)
def test_gateway_roles_read_only_variables_the_digest_covers(role):
    """A role reading a variable outside the digest would not trigger a rollout when it changes."""
    uncovered = {}
    for path, source in _sources(role):
        env = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])
        for name in re.findall(r"\|\s*(\w+)", source):
            env.filters.setdefault(name, lambda *a, **k: None)
        for name in re.findall(r"\bis\s+(?:not\s+)?(\w+)", source):
            env.tests.setdefault(name, lambda *a, **k: None)
        names = jinja2.meta.find_undeclared_variables(env.parse(source))
        local = set(re.findall(r"{%-?\s*set\s+(\w+)", source))
        bad = {n for n in names - ALLOWED - local
               if not n.startswith(("__", role + "_")) and not (n.startswith("gerbang_") and n not in rollout.NOT_INPUTS)}
        if path.name == "main.yml" and path.parent.name == "vars":
            bad.discard("gerbang_city")  # the compiled city, read as gerbang_city.sites[...] (checked below)
        if bad:
            uncovered[str(path.relative_to(REPO))] = sorted(bad)
    assert not uncovered, uncovered


@pytest.mark.parametrize("role", GATEWAY_ROLES)
def test_roles_read_the_compiled_city_only_through_their_site(role):
    text = (REPO / "roles" / role / "vars/main.yml").read_text()
    uses = set(re.findall(r"gerbang_city[^\s|)}]*", text))
    assert uses <= {"gerbang_city.sites[inventory_hostname]", "gerbang_city.sites"}, uses
