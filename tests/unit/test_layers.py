"""Layering: base -> groups (by name, lab last) -> host, lists merged by name."""

from gerbang_kota import layers

BASE = {
    "gerbang_rules": [
        {"name": "sosmed", "category": "social_media", "schedule": "jam_kerja", "action": "block"},
        {"name": "streaming", "category": "streaming", "schedule": "jam_kerja", "action": "block"},
    ],
    "gerbang_bandwidth": {"contract_mbit": 350, "device_rate_mbit": 1},
}


def test_group_layer_changes_one_field_of_a_named_item():
    hv = {**BASE, "gerbang_policy__public_service": {"rules": [{"name": "streaming", "schedule": "jam_layanan"}]}}
    merged = layers.merge_site_policy("dinkes", hv, ["opd", "public_service"])
    rule = next(r for r in merged.data["rules"] if r["name"] == "streaming")
    assert rule == {"name": "streaming", "category": "streaming", "schedule": "jam_layanan", "action": "block"}
    origin = merged.origin_of("rules", "streaming", "schedule")
    assert origin.where == "group_vars/public_service.yml"
    assert origin.key == "gerbang_policy__public_service.rules[0].schedule"


def test_state_absent_removes_an_item_and_host_layer_wins_last():
    hv = {**BASE,
          "gerbang_policy__humas": {"rules": [{"name": "sosmed", "state": "absent"}]},
          "gerbang_policy__host": {"bandwidth": {"device_rate_mbit": 2}, "allow_domains": ["youtube.com"]}}
    merged = layers.merge_site_policy("diskominfo", hv, ["humas", "opd"])
    assert [r["name"] for r in merged.data["rules"]] == ["streaming"]
    assert merged.data["bandwidth"] == {"contract_mbit": 350, "device_rate_mbit": 2}
    assert merged.data["allow_domains"] == ["youtube.com"]
    assert merged.origin_of_key("bandwidth.device_rate_mbit").where == "host_vars/diskominfo/policy.yml"


def test_lab_layer_applies_after_every_other_group():
    hv = {**BASE,
          "gerbang_policy__lab": {"bandwidth": {"device_rate_mbit": 3}},
          "gerbang_policy__zz": {"bandwidth": {"device_rate_mbit": 5}}}
    merged = layers.merge_site_policy("setda", hv, ["zz", "lab"])
    assert merged.data["bandwidth"]["device_rate_mbit"] == 3
