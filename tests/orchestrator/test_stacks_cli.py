"""up / destroy / status / outputs / graph / recover through the CLI with the in-memory engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.stacks import wiring
from orchestrator.topology import load
from tests.orchestrator.conftest import multi_region

REGIONS5 = ["eu-central-1", "eu-north-1", "eu-west-2", "eu-west-3"]


def test_up_single_region_runs_region_then_dns_with_wired_endpoint(run, engine) -> None:  # noqa: ANN001
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    assert engine.ops("up") == [("up", "dev-region-eu-west-1"), ("up", "dev-dns")]
    dns_call = engine.calls[-1]
    targets = json.loads(dns_call.config["iot-platform:targets"])
    assert targets == [{"region": "eu-west-1",
                        "endpoint": engine.stacks["dev-region-eu-west-1"].outputs["iotEndpoint"].value}]
    assert dns_call.config["aws:region"] == "us-east-1"  # Route 53 is global: pinned, survives failover
    assert "dev-dns" in result.stdout and "succeeded" in result.stdout


def test_global_options_before_and_after_the_command(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "staging", ["eu-central-1"])
    assert run("--env", "staging", "up", "--all", "--yes").exit_code == 0
    first = engine.ops("up")
    engine.calls.clear()
    assert run("up", "--yes", "--all", "--env", "staging").exit_code == 0
    assert engine.ops("up") == first
    assert ("up", "staging-replication") in first


def test_up_all_five_regions_runs_the_first_wave_in_parallel(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", REGIONS5, routing="latency")
    engine.latency = 0.2
    result = run("up", "--yes", "--all", "--parallel", "5")
    assert result.exit_code == 0, result.output
    regions = [c for c in engine.calls if c.stack.startswith("dev-region-")]
    assert len(regions) == 5
    # all five overlapped: each started before any finished
    assert max(c.started for c in regions) < min(c.ended for c in regions)
    downstream = [c for c in engine.calls if c.stack in ("dev-dns", "dev-replication")]
    assert min(c.started for c in downstream) >= max(c.ended for c in regions)


def test_parallel_bound_is_respected(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", REGIONS5, routing="latency")
    engine.latency = 0.1
    assert run("up", "--yes", "--all", "--parallel", "2").exit_code == 0
    regions = sorted((c for c in engine.calls if c.stack.startswith("dev-region-")), key=lambda c: c.started)
    for c in regions:
        running = [o for o in regions if o.started <= c.started < o.ended]
        assert len(running) <= 2
    assert max(len([o for o in regions if o.started <= c.started < o.ended]) for c in regions) == 2


def test_json_output_is_one_document(run, engine) -> None:  # noqa: ANN001
    result = run("up", "--yes", "--all", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["operation"] == "up" and doc["env"] == "dev"
    assert doc["waves"] == [["dev-region-eu-west-1"], ["dev-dns"]]
    assert doc["stacks"]["dev-region-eu-west-1"]["outcome"] == "succeeded"
    assert doc["stacks"]["dev-region-eu-west-1"]["outputs"]["region"] == "eu-west-1"


def test_contract_violation_stops_before_dns(run, engine) -> None:  # noqa: ANN001
    engine.output_overrides["dev-region-eu-west-1"] = {"iotEndpoint": "evil.example.net"}
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 1
    assert "evil.example.net" in result.stdout
    assert ("up", "dev-dns") not in engine.ops()


def test_arn_of_wrong_region_violates_contract(run, engine) -> None:  # noqa: ANN001
    engine.output_overrides["dev-region-eu-west-1"] = {
        "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/iot-dev-telemetry"}
    result = run("up", "--yes", "--all")
    assert result.exit_code == 1 and "streamArn" in result.stdout
    assert engine.ops("up") == [("up", "dev-region-eu-west-1")]


def test_failure_in_wave_two_then_resume(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    engine.fail_on["dev-replication"] = "AccessDenied: s3:PutReplicationConfiguration"
    first = run("up", "--yes", "--all")
    assert first.exit_code == 1 and "AccessDenied" in first.stdout
    assert set(engine.ops("up")) == {("up", "dev-region-eu-west-1"), ("up", "dev-region-eu-central-1"),
                                     ("up", "dev-dns"), ("up", "dev-replication")}
    del engine.fail_on["dev-replication"]
    engine.calls.clear()
    second = run("up", "--yes", "--all", "--resume")
    assert second.exit_code == 0, second.output
    assert engine.ops("up") == [("up", "dev-replication")]
    assert "resuming run" in second.stderr


def test_failure_in_wave_one_stops_later_waves(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    engine.fail_on["dev-region-eu-central-1"] = "LimitExceeded"
    result = run("up", "--yes", "--all", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["stacks"]["dev-dns"]["outcome"] == "skipped"
    assert doc["stacks"]["dev-region-eu-west-1"]["outcome"] == "succeeded"  # done stays done
    assert ("up", "dev-dns") not in engine.ops()


def test_resume_replans_when_upstream_outputs_changed(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    engine.fail_on["dev-dns"] = "boom"
    assert run("up", "--yes", "--all").exit_code == 1
    del engine.fail_on["dev-dns"]
    engine.stacks["dev-region-eu-west-1"].outputs["iotEndpoint"] = \
        wiring.OutputValue("bbbbbbbbbbbbbb-ats.iot.eu-west-1.amazonaws.com")
    engine.calls.clear()
    result = run("up", "--yes", "--all", "--resume")
    assert result.exit_code == 0
    assert "changed since run" in result.stderr and "re-planning" in result.stderr
    assert ("up", "dev-region-eu-west-1") in engine.ops()


def test_locked_stack_exits_3(run, engine) -> None:  # noqa: ANN001
    engine.locked["dev-region-eu-west-1"] = "alice@ci (pid 4242)"
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 3
    assert "alice@ci" in result.stdout
    assert ("up", "dev-dns") not in engine.ops()


def test_up_region_refuses_dns_when_a_routed_region_is_not_deployed(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    result = run("up", "--yes", "--region", "eu-central-1")
    assert result.exit_code == 1
    assert "dev-region-eu-west-1 is not deployed" in result.stdout
    assert ("up", "dev-dns") not in engine.ops()


# -- destroy and its guards ---------------------------------------------------------------------
def test_destroy_all_runs_in_reverse_order(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    assert run("up", "--yes", "--all").exit_code == 0
    engine.calls.clear()
    result = run("destroy", "--all", "--yes")
    assert result.exit_code == 0, result.output
    order = [s for _, s in engine.ops("destroy")]
    assert set(order[:2]) == {"dev-dns", "dev-replication"}
    assert set(order[2:]) == {"dev-region-eu-west-1", "dev-region-eu-central-1"}
    # protected resources stay without --include-protected
    assert engine.stacks["dev-region-eu-west-1"].resources == 2


def test_destroy_all_needs_confirmation(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--all").exit_code == 0
    engine.calls.clear()
    result = run("destroy", "--all")
    assert result.exit_code == 4 and "--yes" in result.stderr
    assert engine.calls == []


def test_destroy_include_protected_removes_everything(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--all").exit_code == 0
    assert run("destroy", "--all", "--include-protected", "--yes").exit_code == 0
    assert engine.stacks["dev-region-eu-west-1"].resources == 0


@pytest.mark.parametrize("args, expected", [
    (["destroy", "--region", "eu-west-1"], "only region of env dev"),
])
def test_destroy_guard_single_region(run, engine, args, expected) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--all").exit_code == 0
    engine.calls.clear()
    result = run(*args)
    assert result.exit_code == 4 and expected in result.stderr and "destroy --all --yes" in result.stderr
    assert engine.calls == []


def test_destroy_guard_primary_with_secondaries(run, engine, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    result = run("destroy", "--region", "eu-west-1", "--yes")
    assert result.exit_code == 4
    assert "failover --to eu-central-1" in result.stderr
    assert engine.calls == []


def test_destroy_guard_validation_owner(run, engine, project: Path) -> None:  # noqa: ANN001
    path = multi_region(project, "dev", ["eu-central-1"])
    path.write_text(path.read_text() + "home_region: eu-central-1\n")
    result = run("destroy", "--region", "eu-central-1", "--yes")
    assert result.exit_code == 4 and "ACM validation record" in result.stderr
    assert engine.calls == []


def test_destroy_orphan_region_stack(run, engine) -> None:  # noqa: ANN001
    topology = load(Path("stacks/dev.topology.yaml"))
    engine.deploy(wiring.region_spec(topology.with_secondary("eu-central-1"), "eu-central-1"))
    result = run("destroy", "--region", "eu-central-1", "--yes")
    assert result.exit_code == 0, result.output
    assert engine.ops("destroy") == [("destroy", "dev-region-eu-central-1")]


# -- status, outputs, graph, recover ------------------------------------------------------------
def test_status_json(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--all").exit_code == 0
    doc = json.loads(run("status", "--json").stdout)
    rows = {s["name"]: s for s in doc["stacks"]}
    assert rows["dev-region-eu-west-1"]["deployed"] is True
    assert rows["dev-region-eu-west-1"]["role"] == "primary" and rows["dev-region-eu-west-1"]["routed"] is True
    assert rows["dev-dns"]["kind"] == "dns"
    assert doc["routing"] == "single"


def test_status_text_points_at_recover(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--all").exit_code == 0
    engine.stacks["dev-dns"].pending = ("creating urn:pulumi:dev-dns::iot-platform::aws:route53/record:Record::x",)
    out = run("status").stdout
    assert "orchestrate recover dev-dns" in out


def test_outputs_masks_secrets(run, engine) -> None:  # noqa: ANN001
    engine.secret_outputs["dev-region-eu-west-1"] = {"apiToken": "s3cr3t-value"}
    assert run("up", "--yes", "--all").exit_code == 0
    masked = run("outputs", "dev-region-eu-west-1", "--json")
    assert "s3cr3t-value" not in masked.stdout
    assert json.loads(masked.stdout)["outputs"]["apiToken"] == "[secret]"
    shown = run("outputs", "dev-region-eu-west-1", "--show-secrets")
    assert "apiToken: s3cr3t-value" in shown.stdout
    up_json = run("up", "--yes", "--all", "--json")
    assert "s3cr3t-value" not in up_json.stdout


def test_outputs_unknown_stack_exit_2(run) -> None:  # noqa: ANN001
    result = run("outputs", "prod-dns")
    assert result.exit_code == 2 and "not a stack of env dev" in result.stderr


def test_graph_formats(run, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    assert run("graph").stdout.startswith("flowchart LR")
    assert run("graph", "--format", "dot").stdout.startswith("digraph")


def test_recover_cancels_and_refreshes_with_pending_creates_cleared(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--all").exit_code == 0
    engine.stacks["dev-dns"].pending = ("creating urn:x",)
    engine.locked["dev-dns"] = "crashed run"
    engine.calls.clear()
    refused = run("recover", "dev-dns")
    assert refused.exit_code == 4 and engine.calls == []
    result = run("recover", "dev-dns", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert engine.ops() == [("cancel", "dev-dns"), ("refresh", "dev-dns")]
    assert json.loads(result.stdout)["pending_left"] == 0


def test_region_and_all_are_exclusive_and_required(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes").exit_code == 2
    assert run("up", "--yes", "--all", "--region", "eu-west-1").exit_code == 2
    assert run("up", "--yes", "--region", "eu-moon-1").exit_code == 2
    assert engine.calls == []


def test_orchestrate_config_env_names_the_topology(run, project: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """How the engine hands --config to the registry sync the replication stack runs."""
    other = tmp_path / "elsewhere" / "dev.topology.yaml"
    other.parent.mkdir()
    other.write_text((project / "stacks" / "dev.topology.yaml").read_text().replace("secondaries: []",
                                                                                     "secondaries: [eu-central-1]")
                     .replace("routing: single", "routing: failover"))
    monkeypatch.setenv("ORCHESTRATE_CONFIG", str(other))
    assert "dev_region_eu_central_1" in run("graph").stdout


def test_up_summary_appends_the_result_as_markdown_also_when_it_fails(run, engine, project: Path,
                                                                       tmp_path: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")  # $GITHUB_STEP_SUMMARY is shared by the job's steps: appended to
    engine.fail_on["dev-replication"] = "AccessDenied: s3:PutReplicationConfiguration AKIAIOSFODNN7EXAMPLE"
    failed = run("up", "--yes", "--all", "--summary", str(summary))
    assert failed.exit_code == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n### orchestrate up dev: FAILED\n")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {"`dev-region-eu-west-1`", "`dev-region-eu-central-1`", "`dev-dns`", "`dev-replication`"}
    assert "| failed |" in rows["`dev-replication`"] and "AccessDenied" in rows["`dev-replication`"]
    assert "| succeeded |" in rows["`dev-dns`"]
    assert "AKIAIOSFODNN7EXAMPLE" not in text  # scrubbed like every other output
    del engine.fail_on["dev-replication"]
    assert run("up", "--yes", "--all", "--resume", "--summary", str(summary)).exit_code == 0
    assert summary.read_text().count("### orchestrate up dev: ") == 2
    assert summary.read_text().rstrip().split("\n### ")[-1].startswith("orchestrate up dev: ok")


def test_up_summary_in_a_missing_directory_is_exit_2_before_any_stack(run, engine, tmp_path: Path) -> None:  # noqa: ANN001
    result = run("up", "--yes", "--all", "--summary", str(tmp_path / "nowhere" / "summary.md"))
    assert result.exit_code == 2
    assert "--summary" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert engine.ops("up") == []
