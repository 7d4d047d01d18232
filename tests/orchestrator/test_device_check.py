"""`orchestrate device-check`: a device's reconnect profile scored, what to change, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.console import Console
from orchestrator.drill.profile import DeviceProfile, score
from orchestrator.errors import InputRejected

CONFORMING = {"endpoint": "iot.example.com", "sni": True, "resolve_on_reconnect": True,
              "retry_jitter_mode": "FULL", "min_reconnect_delay_ms": 1000, "max_reconnect_delay_ms": 10000,
              "resubscribe_on_session_lost": True}


def run(args: list[str]) -> tuple[int, str, str]:
    out: list[str] = []
    err: list[str] = []
    result = CliRunner().invoke(cli, args, obj=Deps(console=Console(out=out.append, err=err.append)))
    return result.exit_code, "".join(out), "".join(err)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_conforming_profile_passes_every_check_and_projects_its_rto(tmp_path: Path) -> None:
    code, out, err = run(["device-check", write(tmp_path, "d.json", json.dumps(CONFORMING)), "--devices", "2000"])
    assert code == 0, err
    assert "conforms: 7/7" in out and "FIX" not in out
    assert "projected RTO at 2,000 devices, 500 CONNECT/s" in out


@pytest.mark.slow
def test_the_sdk_defaults_fail_on_the_cap_and_the_resubscribe_and_say_what_to_change(tmp_path: Path) -> None:
    code, out, _ = run(["device-check", write(tmp_path, "d.yaml", "endpoint: iot.example.com\n")])
    assert code == 1
    assert "does NOT conform: 5/7" in out
    assert "lower max_reconnect_delay_ms from 120000 to 10000" in out
    assert "resubscribe every topic when CONNACK says sessionPresent=0" in out


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("endpoint", "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com", "connect to the custom domain instead of"),
    ("sni", False, "send the custom domain as SNI"),
    ("resolve_on_reconnect", False, "resolve the name on every connection attempt"),
    ("retry_jitter_mode", "NONE", "set retry_jitter_mode FULL"),
    ("min_reconnect_delay_ms", 200, "raise min_reconnect_delay_ms to 1000"),
    ("max_reconnect_delay_ms", 60000, "lower max_reconnect_delay_ms from 60000"),
    ("resubscribe_on_session_lost", False, "resubscribe every topic"),
])
def test_each_nonconforming_setting_is_named_with_its_fix(setting: str, value: object, says: str) -> None:
    result = score(DeviceProfile.parse({**CONFORMING, setting: value}, "t"), devices=1000)
    bad = [f for f in result.findings if not f.ok]
    assert len(bad) == 1 and says in bad[0].change
    assert not result.ok and result.score == 6
    assert (result.projection is None) == (setting == "retry_jitter_mode")


def test_jitter_mode_default_is_the_sdks_full_and_case_is_ignored() -> None:
    assert DeviceProfile.parse({"retry_jitter_mode": "default"}, "t").retry_jitter_mode == "FULL"
    assert DeviceProfile.parse({"retry_jitter_mode": "Decorrelated"}, "t").retry_jitter_mode == "DECORRELATED"


@pytest.mark.slow
def test_a_shorter_cap_projects_a_shorter_tail() -> None:
    capped = score(DeviceProfile.parse(CONFORMING, "t"), devices=5000)
    sdk = score(DeviceProfile.parse({**CONFORMING, "max_reconnect_delay_ms": 120000}, "t"), devices=5000)
    assert capped.projection is not None and sdk.projection is not None
    assert capped.projection.backoff.p95 is not None and sdk.projection.backoff.p95 is not None
    assert capped.projection.backoff.p95 < sdk.projection.backoff.p95


def test_json_output_carries_findings_and_the_decomposed_projection(tmp_path: Path) -> None:
    code, out, _ = run(["--json", "device-check", write(tmp_path, "d.json", json.dumps(CONFORMING)),
                        "--devices", "1000", "--connect-quota", "3000"])
    assert code == 0
    doc = json.loads(out)
    body = doc.get("result", doc)
    assert body["ok"] is True and body["score"] == 7 and body["of"] == 7
    assert body["projection"]["connect_quota"] == 3000
    assert set(body["projection"]) >= {"rto", "detection", "dns", "admission", "backoff"}


@pytest.mark.parametrize(("text", "says"), [
    ('{"sni": "yes"}', "`sni` must be a bool"),
    ('{"max_reconnect_delay_ms": true}', "`max_reconnect_delay_ms` must be a int"),
    ('{"keepalive": 30}', "unknown setting(s) keepalive"),
    ('{"retry_jitter_mode": "SOMETIMES"}', "`retry_jitter_mode` must be one of"),
    ('{"min_reconnect_delay_ms": 5000, "max_reconnect_delay_ms": 1000}', "0 < min_reconnect_delay_ms <="),
    ("[1, 2]", "a device profile is a mapping"),
    ("{sni: [", "malformed YAML"),
])
def test_bad_profiles_are_one_line_exit_2(tmp_path: Path, text: str, says: str) -> None:
    code, out, err = run(["device-check", write(tmp_path, "d.yaml", text)])
    assert code == 2 and out == ""
    assert says in err and len(err.strip().splitlines()) <= 2


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run(["device-check", str(tmp_path / "none.yaml")])
    assert code == 2 and "cannot read the device profile" in err
    with pytest.raises(InputRejected):
        DeviceProfile.load(tmp_path / "none.yaml")
