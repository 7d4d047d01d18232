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
    assert run("up", "--all").exit_code == 0
    engine.calls.clear()
    result = run("drift", "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "drift dev: no drift"
    assert {op for op, _ in engine.ops()} == {"drift"}  # no up, refresh or destroy


def test_drift_names_resource_property_expected_and_actual_and_exits_1(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--all").exit_code == 0
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
    assert run("up", "--all").exit_code == 0
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
    assert run("up", "--all").exit_code == 0
    engine.drift_errors["dev-dns"] = "error: AccessDenied: route53:ListResourceRecordSets"
    result = run("drift", "--all")
    assert result.exit_code == 1
    assert "unknown (a refresh preview failed)" in result.stdout and "AccessDenied" in result.stdout


def test_markdown_is_the_drift_issue_body_with_its_own_marker(run, engine: InMemoryEngine,  # noqa: ANN001
                                                              tmp_path: Path) -> None:
    assert run("up", "--all").exit_code == 0
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
