"""`orchestrate drift` with the in-memory engine: waves, the report, exit codes, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.engine.types import PropertyDrift
from orchestrator.preview.comment import parse_kind_marker
from tests.doubles import InMemoryEngine
from tests.orchestrator.conftest import multi_region

RETENTION = PropertyDrift("iot-dev-eu-west-1-telemetry", "aws:kinesis/stream:Stream", "retentionPeriod", "24", "168")


def test_no_drift_is_exit_0_and_nothing_changes(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--all", "--yes").exit_code == 0
    engine.calls.clear()
    result = run("drift", "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "drift dev: no drift"
    assert {op for op, _ in engine.ops()} == {"drift"}  # no up, refresh or destroy


def test_drift_names_resource_property_expected_and_actual_and_exits_1(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--all", "--yes").exit_code == 0
    engine.drifted["dev-region-eu-west-1"] = [RETENTION]
    result = run("drift", "--all")
    assert result.exit_code == 1
    assert ("    iot-dev-eu-west-1-telemetry (aws:kinesis/stream:Stream) retentionPeriod: expected 24, actual 168"
            in result.stdout.splitlines())
    as_json = json.loads(run("drift", "--all", "--json").stdout)
    assert as_json["drifted"] is True
    assert as_json["stacks"]["dev-region-eu-west-1"]["differences"] == [RETENTION.__dict__]
    assert as_json["stacks"]["dev-dns"]["differences"] == []


def test_drift_runs_in_waves_regions_first(run, engine: InMemoryEngine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    assert run("up", "--all", "--yes").exit_code == 0
    engine.calls.clear()
    report = json.loads(run("drift", "--all", "--json").stdout)
    assert [sorted(w) for w in report["waves"]] == [["dev-region-eu-central-1", "dev-region-eu-west-1"], ["dev-dns"],
                                                   ["dev-replication"]]
    order = [stack for _, stack in engine.ops("drift")]
    assert set(order[:2]) == {"dev-region-eu-west-1", "dev-region-eu-central-1"}
    assert order[2:] == ["dev-dns", "dev-replication"]


def test_one_region_and_not_deployed_stacks(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    result = run("drift", "--region", "eu-west-1")
    assert result.exit_code == 0 and "dev-region-eu-west-1" in result.stdout and "not deployed" in result.stdout
    assert run("drift").exit_code == 2  # --region R or --all


def test_a_failed_refresh_preview_is_exit_1_drift_unknown(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--all", "--yes").exit_code == 0
    engine.drift_errors["dev-dns"] = "error: AccessDenied: route53:ListResourceRecordSets"
    result = run("drift", "--all")
    assert result.exit_code == 1
    assert "unknown (a refresh preview failed)" in result.stdout and "AccessDenied" in result.stdout


def test_markdown_is_the_drift_issue_body_with_its_own_marker(run, engine: InMemoryEngine,  # noqa: ANN001
                                                              tmp_path: Path) -> None:
    assert run("up", "--all", "--yes").exit_code == 0
    engine.drifted["dev-region-eu-west-1"] = [
        RETENTION, PropertyDrift("iot-dev-eu-west-1-cert", "aws:acm/certificate:Certificate", "privateKey",
                                 "[secret]", "[secret]")]
    out = tmp_path / "drift.md"
    result = run("drift", "--all", "--format", "markdown", "--output", str(out))
    assert result.exit_code == 1 and result.stdout == ""
    body = out.read_text()
    assert parse_kind_marker(body) == ("drift", "dev", 1)
    assert "| `iot-dev-eu-west-1-telemetry` (aws:kinesis/stream:Stream) | `retentionPeriod` | `24` | `168` |" in body
    assert "`[secret]`" in body
    engine.drifted.clear()
    assert run("drift", "--all", "--format", "markdown", "--output", str(out)).exit_code == 0
    assert "No drift" in out.read_text()


def test_the_drift_collector_masks_secrets_and_redacts_secret_shapes() -> None:
    from types import SimpleNamespace as NS

    from orchestrator.engine.events import DriftCollector

    urn = ("urn:pulumi:dev-region-eu-west-1::iot-platform::iotplatform:region:IotRegion"
           "$aws:iot/certificate:Certificate::cert")
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:abc"}
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    old = NS(outputs={"privateKey": secret, "status": "ACTIVE", "note": "x", "tagsAll": {"a": "1"}})
    new = NS(outputs={"privateKey": {**secret, "ciphertext": "v1:def"}, "status": "INACTIVE", "note": pem,
                      "tagsAll": {"a": "2"}})
    pre = NS(op="refresh", urn=urn, type="aws:iot/certificate:Certificate", old=old, new=old)
    out = NS(op="same", urn=urn, type="aws:iot/certificate:Certificate", old=old, new=new)
    collector = DriftCollector()
    for meta, kind in ((pre, "resource_pre_event"), (out, "res_outputs_event")):
        collector(NS(**{kind: NS(metadata=meta)}, diagnostic_event=None))
    rows, error = collector.result()
    assert error is None
    assert {(r[2], r[3], r[4]) for r in rows} == {("status", "ACTIVE", "INACTIVE"), ("note", "x", "[redacted]")}
    assert "MIIEowIBAAKCAQEA" not in repr(rows) and "v1:def" not in repr(rows)
