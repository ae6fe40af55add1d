"""The compiled city from the production inventory: what every role consumes."""

import datetime as dt

import pytest

from gerbang_kota import schedule
from gerbang_kota.inventory import compile_inventory
from policy_copy import REPO_ROOT


@pytest.fixture(scope="module")
def city():
    return compile_inventory(REPO_ROOT / "inventory/production", today=dt.date(2026, 11, 23))


def test_every_gateway_compiles_with_its_groups(city):
    assert city["errors"] == []
    assert set(city["sites"]["kec-kasemen"]["groups"]) >= {"gateways", "opd", "kecamatan"}
    assert city["sites"]["mcc"]["groups"] == ["command_center", "gateways"]
    assert city["command_center"]["name"] == "mcc"
    assert city["sites"]["setda"]["command_center_ip"] == city["sites"]["mcc"]["wan"]["ip"]


def test_humas_opens_social_media_but_not_streaming(city):
    at = dt.datetime(2026, 11, 23, 10, 0)
    assert schedule.active_blocks(city["sites"]["diskominfo"], at) == ["games", "streaming"]
    assert schedule.active_blocks(city["sites"]["bappeda"], at) == ["games", "social_media", "streaming"]
    assert schedule.active_blocks(city["sites"]["bappeda"], dt.datetime(2026, 11, 23, 16, 0)) == ["games"]


def test_public_service_blocks_on_saturday_morning_and_rsud_streams_never(city):
    saturday = dt.datetime(2026, 11, 28, 9, 0)
    assert "social_media" in schedule.active_blocks(city["sites"]["dinkes"], saturday)
    assert "social_media" not in schedule.active_blocks(city["sites"]["bappeda"], saturday)
    assert "streaming" in schedule.active_blocks(city["sites"]["rsud"], dt.datetime(2026, 11, 29, 22, 0))
    assert any(g["name"] == "bpjs-kesehatan" for g in city["sites"]["rsud"]["govapps"])
    assert not any(g["name"] == "bpjs-kesehatan" for g in city["sites"]["setda"]["govapps"])


def test_site_exception_removes_the_domain_from_the_blocked_category(city):
    streaming = city["sites"]["dindikbud"]["categories"]["streaming"]["domains"]
    assert "youtube.com" not in streaming and "vidio.com" in streaming
    assert "youtube.com" in city["sites"]["dindikbud"]["allow_domains"]
    assert "youtube.com" in city["sites"]["bappeda"]["categories"]["streaming"]["domains"]


def test_devices_get_stable_class_ids_and_bandwidth_is_resolved(city):
    site = city["sites"]["diskominfo"]
    first = site["devices"][0]
    assert first["host_index"] == int(first["ip"].rsplit(".", 1)[1])
    assert first["classid"] == f"1:{256 + first['host_index']:x}"
    ips = [d["ip"] for d in site["devices"]]
    assert len(ips) == len(set(ips))
    bw = city["sites"]["rsud"]["bandwidth"]
    assert (bw["rate_mbit"], bw["ceil_mbit"], bw["device_rate_mbit"]) == (60, 100, 1)
    assert bw["govapp_rate_mbit"] == pytest.approx(60 * bw["govapp_share_percent"] / 100)
    assert sum(s["bandwidth"]["rate_mbit"] for s in city["sites"].values()) <= city["contract_mbit"]
