"""`orchestrate readiness` against a real moto server: a clean two-region world is READY (no false
NOT READY), and every seeded misconfiguration is found on the row it belongs to, with its fix.

The world (tests/ops/readiness_world.py) is built through the real APIs; what moto lacks (IoT event
configurations, Service Quotas for iotcore) is answered by a model-validated overlay. Where moto
answers nothing the rule could read (a domain configuration's tlsConfig), the rule is UNKNOWN with
the reason, never READY.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.aws import AwsContext
from orchestrator.readiness import Status, evaluate
from orchestrator.readiness.model import RULES, ReadinessReport
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.readiness_world import DOMAIN, ENV, ReadyWorld, build, reconcile, server_cert

# what moto cannot answer: UNKNOWN with the reason, in the clean world too
MOTO_UNKNOWN = {("domain.tls_policy_parity", DST): "no tlsConfig"}


def rows(report: ReadinessReport, status: Status) -> dict[tuple[str, str], str]:
    return {(f.rule, f.region): f.evidence for r in report.regions for f in r.findings if f.status is status}


@pytest.fixture
def world(ctx: AwsContext) -> ReadyWorld:
    return build(ctx)


def _faults(w: ReadyWorld) -> dict[tuple[str, str], str]:
    """Seed every misconfiguration; (rule, region) -> a pattern its evidence must match."""
    from orchestrator.registry import read_snapshot
    from orchestrator.registry.backup import backup
    from orchestrator.registry.events import LAG_METRIC, METRIC_NAMESPACE
    from programs.contract import ReplicationNames
    from programs.replication import rule_name

    iot_src, iot_dst = w.c("iot", SRC), w.c("iot", DST)
    names = ReplicationNames.of(ENV, DST)
    now = datetime.now(timezone.utc)
    expected: dict[tuple[str, str], str] = {}
    # 1. a certificate revoked in the primary is still ACTIVE in the secondary
    revoked = next(c for c in iot_src.list_certificates()["certificates"] if c["status"] == "ACTIVE")
    iot_src.update_certificate(certificateId=revoked["certificateId"], newStatus="REVOKED")
    expected[("registry.parity.certificates", DST)] = f"{revoked['certificateId']}: status REVOKED vs ACTIVE"
    # 2. a policy attachment missing in the secondary
    cert_arn = iot_dst.list_targets_for_policy(policyName="device")["targets"][0]
    iot_dst.detach_policy(policyName="device", target=cert_arn)
    expected[("registry.parity.policy_attachments", DST)] = r"device/certificate:\w+: only in eu-west-1"
    # 3. a thing changed in the primary and not carried
    iot_src.update_thing(thingName=w.things[0], attributePayload={"attributes": {"fw": "2"}, "merge": True})
    expected[("registry.parity.things", DST)] = f"{w.things[0]}: attributes differ"
    # 4. the secondary's certificate is still pending validation
    pending = w.c("acm", DST).request_certificate(DomainName=DOMAIN, ValidationMethod="DNS")["CertificateArn"]
    w.outputs[f"{ENV}-region-{DST}"]["certificateArn"] = pending
    expected[("domain.certificate_issued", DST)] = "is PENDING_VALIDATION"
    # 5. the primary's certificate expires in 10 days
    pem, key = server_cert(DOMAIN, 11)
    w.c("acm", SRC).import_certificate(Certificate=pem, PrivateKey=key,
                                       CertificateArn=w.outputs[f"{ENV}-region-{SRC}"]["certificateArn"])
    expected[("domain.certificate_expiry", SRC)] = r"expires in (9|10) days \(< 30\)"
    # 6. the secondary's domain configuration DISABLED
    iot_dst.update_domain_configuration(domainConfigurationName=f"iot-{ENV}-{DST}-domain",
                                        domainConfigurationStatus="DISABLED")
    expected[("domain.configuration_enabled", DST)] = "is DISABLED"
    # 7. the telemetry topic rule missing in the secondary
    iot_dst.delete_topic_rule(ruleName=f"iot_{ENV}_{DST}_telemetry".replace("-", "_"))
    expected[("data.telemetry_rule", DST)] = "missing: iot_dev_eu_central_1_telemetry"
    # 8. a registry-events rule disabled in the primary
    iot_src.disable_topic_rule(ruleName=rule_name(ENV, "registry-events", SRC))
    expected[("data.replication_rules", SRC)] = "disabled: iot_dev_registry_events_eu_west_1"
    # 9. fewer shards in the secondary than in the primary
    w.c("kinesis", DST).update_shard_count(StreamName=f"iot-{ENV}-{DST}-telemetry", TargetShardCount=1,
                                           ScalingType="UNIFORM_SCALING")
    expected[("data.kinesis_shards", DST)] = "1 open shards here, 2 in eu-west-1"
    # 10. the lake's replication rule disabled
    w.c("s3", SRC).put_bucket_replication(Bucket=f"iot-{ENV}-lake-{SRC}", ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/s3-replication",
        "Rules": [{"ID": DST, "Priority": 1, "Status": "Disabled", "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::iot-{ENV}-lake-{DST}"}}]})
    expected[("data.lake_replication", DST)] = "is disabled"
    # 11. the registry-events table's stream off in the secondary
    w.c("dynamodb", DST).update_table(TableName=f"iot-{ENV}-registry-events",
                                      StreamSpecification={"StreamEnabled": False})
    expected[("replication.table_stream", DST)] = "stream is off"
    # 12. a message in the replication dead-letter queue
    sqs = w.c("sqs", DST)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"], MessageBody="{}")
    expected[("replication.dead_letters", DST)] = "1 dead letters"
    # 13. replication lag of 5 minutes
    w.c("cloudwatch", DST).put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[{
        "MetricName": LAG_METRIC, "Value": 300_000, "Unit": "Milliseconds", "Timestamp": now,
        "Dimensions": [{"Name": "Env", "Value": ENV}, {"Name": "Region", "Value": DST}]}])
    expected[("replication.lag", DST)] = r"lag 300\.0 s \(> 60 s\)"
    # 14. the replication function erring
    w.c("cloudwatch", DST).put_metric_data(Namespace="AWS/Lambda", MetricData=[{
        "MetricName": "Errors", "Value": 4, "Unit": "Count", "Timestamp": now,
        "Dimensions": [{"Name": "FunctionName", "Value": names.function}]}])
    expected[("replication.function_errors", DST)] = "Errors 4 errors"
    # 15. the last reconciliation two days old
    reconcile(w.mk, hours_ago=50)
    expected[("replication.reconciliation_age", DST)] = r"last reconciliation 50\.0 h ago"
    # 16. registry events off in the secondary
    w.overlay.events[DST]["THING"] = False
    expected[("replication.registry_events", DST)] = "registry events off: THING"
    # 17. a connect-rate quota ten times lower than the primary's peak
    w.overlay.quotas[DST]["L-CONNECT"] = 5.0
    expected[("quotas.connect_rate", DST)] = "quota 5 here, the primary's peak use 50"
    # 18. the secondary's health check gone
    w.c("route53", "us-east-1").delete_health_check(HealthCheckId=w.outputs[f"{ENV}-dns"]["healthCheckIds"][DST])
    expected[("routing.health_check", DST)] = "does not exist"
    # 19. + 20. the newest backup unsigned, the newest signed one 30 h old
    s3v = w.c("s3", THIRD)
    bucket = w.backup_dest[len("s3://"):].split("/", 1)[0]
    for obj in s3v.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3v.delete_object(Bucket=bucket, Key=obj["Key"])
    snap = read_snapshot(iot_src)
    backup(snap, {}, w.backup_dest, env=ENV, now=now - timedelta(hours=30), s3_client=s3v, signer=w.signer)
    backup(snap, {}, w.backup_dest, env=ENV, now=now - timedelta(hours=1), s3_client=s3v)
    expected[("backups.age", "env")] = r"newest valid backup 30\.\d h old \(> 26 h\)"
    expected[("backups.signed", "env")] = r"newest backup \(1\.\d h old\) is unsigned"
    return expected


def test_a_clean_world_is_ready_and_every_seeded_fault_is_found_on_its_row(world: ReadyWorld) -> None:
    clean = evaluate(world.probe())
    assert rows(clean, Status.NOT_READY) == {}
    unknown = rows(clean, Status.UNKNOWN)
    assert set(unknown) == set(MOTO_UNKNOWN)
    for key, reason in MOTO_UNKNOWN.items():
        assert reason in unknown[key]
    assert len(rows(clean, Status.READY)) >= 45  # both regions and the environment, every rule read
    assert sorted(world.overlay.answered) == sorted(
        [f"{r} DescribeEventConfigurations" for r in (SRC, DST)] + [f"{r} ListServiceQuotas" for r in (SRC, DST)])

    expected = _faults(world)
    assert len(expected) >= 15
    found = evaluate(world.probe())
    bad = rows(found, Status.NOT_READY)
    for key, pattern in expected.items():
        assert key in bad, f"fault on {key} not found; the row says {_row(found, key)}"
        assert re.search(pattern, bad[key]), (key, bad[key])
    assert set(bad) == set(expected), f"NOT READY beyond the seeded faults: {set(bad) - set(expected)}"
    fixes = {(f.rule, f.region): f.fix for f in found.not_ready()}
    assert fixes[("registry.parity.certificates", DST)] == f"orchestrate registry sync --from {SRC} --to {DST}  " \
                                                         "(tightening reaches it without --prune)"
    assert fixes[("replication.dead_letters", DST)] == f"orchestrate registry replay --from-dlq --region {DST}"
    assert all(fixes[k] for k in expected)
    assert not found.ready and {r.region: r.status for r in found.regions} == {
        SRC: Status.NOT_READY, DST: Status.NOT_READY, "env": Status.NOT_READY}


def _row(report: ReadinessReport, key: tuple[str, str]) -> Any:
    return next(((f.status.value, f.evidence) for r in report.regions for f in r.findings
                 if (f.rule, f.region) == key), "no row")


def test_the_state_backend_in_the_primary_and_a_vault_outside_residency_are_not_ready(world: ReadyWorld) -> None:
    from dataclasses import replace

    probe = world.probe()
    probe.backend_url = f"s3://state?region={SRC}"
    probe.topology = replace(probe.topology, residency=(SRC, DST))
    report = evaluate(probe, (DST,))
    bad = rows(report, Status.NOT_READY)
    assert set(bad) == {("resilience.state_backend", "env"), ("backups.region", "env")}
    assert "is in the primary region eu-west-1" in bad[("resilience.state_backend", "env")]
    assert bad[("backups.region", "env")] == "the vault is in eu-west-2, outside residency eu-west-1, eu-central-1"
    assert [r.region for r in report.regions] == [DST, "env"]


def test_large_fleets_are_sampled_and_the_sample_is_stated(world: ReadyWorld) -> None:
    """Above the threshold the per-thing reads are a sample of the stated size, the same things in
    both regions; a principal detached from a sampled thing is still found."""
    probe = world.probe(sample_above=3, sample_size=4)
    report = evaluate(probe, (DST,))
    assert rows(report, Status.NOT_READY) == {}
    assert report.sample == ("thing principals and shadows sampled: 4 of 7 things (a difference in >= 52.8 % of "
                             "things is found with >= 95 % confidence); listings compared in full")
    assert probe.calls["iot.ListThingPrincipals"] == 8  # 4 things x 2 regions
    full = world.probe(sample_above=3, full=True)
    evaluate(full, (DST,))
    assert full.calls["iot.ListThingPrincipals"] == 14


def test_the_command_exits_1_with_the_envelope_and_the_markdown_names_the_region(
        world: ReadyWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from orchestrator.cli.main import cli

    world.overlay.events[DST]["THING"] = False
    monkeypatch.setattr("orchestrator.readiness.run.probe_for", lambda app, settings=None: world.probe())
    topo = tmp_path / "dev.topology.yaml"
    topo.write_text(json.dumps({"env": ENV, "domain": DOMAIN, "hosted_zone": "example.com", "primary": SRC,
                                "secondaries": [DST], "routing": "failover", "residency": [SRC, DST, THIRD],
                                "backup_region": THIRD}))
    runner = CliRunner()
    base = ["--config", str(topo), "--backend", f"file://{tmp_path}/state"]
    result = runner.invoke(cli, [*base, "readiness", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["kind"] == "readiness" and doc["ok"] is False and doc["error"]["exit_code"] == 1
    assert {"rule": "replication.registry_events", "region": DST, "status": "NOT READY"}.items() <= next(
        r for r in doc["rules"] if r["rule"] == "replication.registry_events" and r["region"] == DST).items()
    summary = tmp_path / "summary.md"
    result = runner.invoke(cli, [*base, "readiness", "--markdown", "--output", str(summary)])
    assert result.exit_code == 1
    assert "This change makes **eu-central-1 NOT READY** because replication.registry_events: registry events " \
           "off: THING" in result.stdout
    assert summary.read_text() == result.stdout
    result = runner.invoke(cli, [*base, "readiness", "--region", "us-west-2"])
    assert result.exit_code == 2 and "not a member of env dev" in result.output


def test_what_readiness_json_writes_is_what_the_comment_section_reads(
        world: ReadyWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The preview workflow's pair: `readiness --json > F` then `comment post --readiness F`."""
    from orchestrator.cli.main import cli
    from orchestrator.preview import readiness as section

    world.overlay.events[DST]["THING"] = False
    monkeypatch.setattr("orchestrator.readiness.run.probe_for", lambda app, settings=None: world.probe())
    topo = tmp_path / "dev.topology.yaml"
    topo.write_text(json.dumps({"env": ENV, "domain": DOMAIN, "hosted_zone": "example.com", "primary": SRC,
                                "secondaries": [DST], "routing": "failover", "residency": [SRC, DST, THIRD],
                                "backup_region": THIRD}))
    base = ["--config", str(topo), "--backend", f"file://{tmp_path}/state"]
    result = CliRunner().invoke(cli, [*base, "readiness", "--json", "--output", str(tmp_path / "r.md")])
    assert result.exit_code == 1, result.output
    md = section.render_section(section.load(result.stdout.encode(), env=ENV))
    assert f"**{DST} is NOT READY** because" in md and "`replication.registry_events`: registry events off" in md
    assert f"| {DST} | `replication.registry_events` | ❌ NOT READY |" in md
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| region |")]
    assert table and all("| ❌ NOT READY |" in line or "| ❔ UNKNOWN |" in line for line in table)
    failed = CliRunner().invoke(cli, [*base, "readiness", "--json", "--region", "us-west-2"])
    assert failed.exit_code == 2
    md = section.render_section(section.load(failed.stdout.encode(), env=ENV))
    assert "**Readiness was not evaluated**: --region us-west-2: not a member of env dev" in md


def test_at_least_thirty_rules_are_registered_each_with_a_group_and_title() -> None:
    import orchestrator.readiness.rules  # noqa: F401

    assert len(RULES) >= 30
    assert {r.group for r in RULES.values()} >= {"registry", "domain", "data", "replication", "quotas", "routing",
                                                   "backups", "resilience"}


def test_the_scheduled_check_publishes_a_metric_per_rule_and_the_overall_one(world: ReadyWorld) -> None:
    from orchestrator.readiness.scheduled import NAMESPACE, run

    cloudwatch = world.c("cloudwatch", DST)

    def latest(name: str, **dims: str) -> float | None:
        now = datetime.now(timezone.utc)
        got = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE, MetricName=name, StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=1), Period=60, Statistics=["Minimum"],
            Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()])["Datapoints"]
        return min(p["Minimum"] for p in got) if got else None

    world.outputs[f"{ENV}-region-{DST}"]["domainConfigurationName"] = "no-such-domain"
    result = run(world.probe(), cloudwatch)
    assert result["ready"] is False and f"{DST} domain.configuration_enabled: NOT READY" in result["not_ready"]
    assert latest("Ready", Env=ENV) == 0.0
    assert latest("RegionReady", Env=ENV, Region=DST) == 0.0
    assert latest("RegionReady", Env=ENV, Region=SRC) == 1.0
    assert latest("RuleReady", Env=ENV, Region=DST, Rule="domain.configuration_enabled") == 0.0
    assert latest("RuleReady", Env=ENV, Region=SRC, Rule="domain.configuration_enabled") == 1.0
    assert latest("RuleReady", Env=ENV, Region=SRC, Rule="replication.lag") is None  # N/A is not published
