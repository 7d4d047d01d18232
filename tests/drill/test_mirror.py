"""The one resource -> AWS-call mirror (orchestrator/drill/world/mirror.py), against a moto server: each
type's create, update, replacement and delete as terraform-provider-aws makes them, and the strict
rules the three stand-ins used to differ on (a record's type/SetIdentifier change DELETEs the set
as recorded in the state; a domain configuration's certificate change is a replacement, never an
in-place update; a safety rule's wait period reaches the ARC cluster)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from orchestrator.drill.world.arc import ArcCluster
from orchestrator.drill.world.mirror import (
    BUCKET,
    BUCKET_REPLICATION,
    BUCKET_VERSIONING,
    DOMAIN_CONFIGURATION,
    HEALTH_CHECK,
    METRIC_ALARM,
    QUEUE,
    RECORD,
    ROUTING_CONTROL,
    SAFETY_RULE,
    SCHEDULE,
    STATE_MACHINE,
    TABLE,
    Declared,
    Mirror,
    StackApply,
    replaces,
)
from orchestrator.drill.world.route53_model import InvalidChangeBatch
from tests.moto_server import threaded_moto

REGION = "eu-west-1"
WEST, CENTRAL = "a-ats.iot.eu-west-1.amazonaws.com", "b-ats.iot.eu-central-1.amazonaws.com"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with threaded_moto() as url:
        yield url


@pytest.fixture
def aws(moto_url: str) -> Iterator[Any]:
    def make(service: str, region: str) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=moto_url, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    yield make
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10).read()


@pytest.fixture
def zone(aws: Any) -> str:
    return str(aws("route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference="z")["HostedZone"]["Id"].split("/")[-1])


def _cnames(aws: Any, zone: str) -> list[dict[str, Any]]:
    return [r for r in aws("route53", "us-east-1").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
            if r["Type"] == "CNAME"]


def _record(zone: str, value: str = WEST, **extra: Any) -> dict[str, Any]:
    return {"zoneId": zone, "name": "iot.example.com", "type": "CNAME", "ttl": 60, "records": [value], **extra}


# -- Route 53 records --------------------------------------------------------------------------------

def test_a_record_is_created_upserted_in_place_and_deleted_as_listed(aws: Any, zone: str) -> None:
    mirror = Mirror(aws)
    mirror.create(RECORD, REGION, "r", _record(zone))
    with pytest.raises(InvalidChangeBatch, match="already exists"):  # CREATE, not UPSERT: AWS refuses a second
        mirror.create(RECORD, REGION, "r", _record(zone))
    mirror.create(RECORD, REGION, "r", _record(zone, allowOverwrite=True))  # allow_overwrite: UPSERT
    mirror.update(RECORD, REGION, "r", _record(zone), _record(zone, CENTRAL, ttl=30))
    assert [(r["TTL"], r["ResourceRecords"]) for r in _cnames(aws, zone)] == [(30, [{"Value": CENTRAL}])]
    assert [[a for a, _ in b] for b in mirror.batches] == [["CREATE"], ["UPSERT"], ["UPSERT"]]
    # delete: the set as Route 53 lists it (edited behind the provider's back: still deleted)
    aws("route53", "us-east-1").change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 5,
                                                   "ResourceRecords": [{"Value": "drift.example.net"}]}}]})
    mirror.delete(RECORD, REGION, "r", _record(zone, CENTRAL, ttl=30))
    assert _cnames(aws, zone) == []
    mirror.delete(RECORD, REGION, "r", _record(zone))  # absent: nothing sent
    assert len(mirror.batches) == 4


def test_a_set_identifier_change_deletes_the_set_as_recorded_in_state(aws: Any, zone: str) -> None:
    """record.go: one batch [DELETE of the old set built from prior state, CREATE new]. After drift
    the DELETE does not match what Route 53 holds and the whole batch fails, as it fails in AWS
    ("values provided do not match"); the mirror does not paper over it with what is listed now."""
    mirror = Mirror(aws)
    routed = _record(zone, setIdentifier="primary", failoverRoutingPolicies=[{"type": "PRIMARY"}])
    mirror.create(RECORD, REGION, "r", routed)
    moved = {**routed, "setIdentifier": "eu-west-1"}
    mirror.update(RECORD, REGION, "r", routed, moved)
    assert mirror.batches[-1] == [("DELETE", {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60,
                                              "ResourceRecords": [{"Value": WEST}], "SetIdentifier": "primary",
                                              "Failover": "PRIMARY"}),
                                  ("CREATE", {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60,
                                              "ResourceRecords": [{"Value": WEST}], "SetIdentifier": "eu-west-1",
                                              "Failover": "PRIMARY"})]
    assert [r["SetIdentifier"] for r in _cnames(aws, zone)] == ["eu-west-1"]
    # drift: someone changed the TTL in the console; the state still says 60
    aws("route53", "us-east-1").change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {**mirror.batches[-1][1][1], "TTL": 300}}]})
    with pytest.raises(InvalidChangeBatch, match="values provided do not match"):
        mirror.update(RECORD, REGION, "r", moved, {**moved, "setIdentifier": "west"})
    assert [(r["SetIdentifier"], r["TTL"]) for r in _cnames(aws, zone)] == [("eu-west-1", 300)]  # all or nothing


def test_a_records_name_or_zone_change_is_a_replacement_not_an_update() -> None:
    assert replaces(RECORD, {"name": "a", "type": "A"}, {"name": "b", "type": "CNAME"}) == ["name"]
    assert replaces(RECORD, {"name": "a", "setIdentifier": "x"}, {"name": "a", "setIdentifier": "y"}) == []
    with pytest.raises(ValueError, match="cannot change name in place"):
        Mirror(lambda s, r: None).update(RECORD, REGION, "r", {"name": "a"}, {"name": "b"})


def test_a_record_without_a_ttl_is_refused_as_route53_refuses_it(aws: Any, zone: str) -> None:
    """TTL is sent only when set (record.go); Route 53 refuses a non-alias record without one."""
    with pytest.raises(InvalidChangeBatch, match=r"Expected exactly one of \[AliasTarget, all of \[TTL"):
        Mirror(aws).create(RECORD, REGION, "r", {k: v for k, v in _record(zone).items() if k != "ttl"})
    assert _cnames(aws, zone) == []


# -- health checks ---------------------------------------------------------------------------------------

TCP = {"type": "TCP", "fqdn": WEST, "port": 443, "requestInterval": 30, "failureThreshold": 3}


def test_a_health_check_updates_in_place_and_is_replaced_on_a_forcenew_change(aws: Any) -> None:
    r53 = aws("route53", "us-east-1")
    mirror = Mirror(aws)
    hc = mirror.create(HEALTH_CHECK, REGION, "hc", TCP)
    assert hc is not None
    mirror.update(HEALTH_CHECK, REGION, hc, TCP, {**TCP, "failureThreshold": 5, "fqdn": CENTRAL})
    config = r53.get_health_check(HealthCheckId=hc)["HealthCheck"]["HealthCheckConfig"]
    assert (config["FailureThreshold"], config["FullyQualifiedDomainName"]) == (5, CENTRAL)
    assert replaces(HEALTH_CHECK, TCP, {**TCP, "requestInterval": 10}) == ["requestInterval"]
    assert replaces(HEALTH_CHECK, TCP, {**TCP, "type": "CALCULATED"}) == ["type"]
    with pytest.raises(ValueError, match="a TCP health check needs a Port"):
        mirror.create(HEALTH_CHECK, REGION, "hc", {k: v for k, v in TCP.items() if k != "port"})
    mirror.delete(HEALTH_CHECK, REGION, hc, TCP)
    assert r53.list_health_checks()["HealthChecks"] == []


def test_stack_apply_replaces_create_before_delete_and_resolves_mock_ids(aws: Any, zone: str) -> None:
    """A check replaced (requestInterval changes) is created first, the record that names it is
    updated to the new id, and only then is the old check deleted; a record left out of the program
    is deleted before the check it named."""
    r53 = aws("route53", "us-east-1")
    world = StackApply(Mirror(aws), zone_id=zone)
    record = _record(zone, setIdentifier="primary", failoverRoutingPolicies=[{"type": "PRIMARY"}],
                     healthCheckId="mock-hc")
    states = {(HEALTH_CHECK, "hc"): {"id": "mock-hc"}}
    program = [Declared(HEALTH_CHECK, "hc", TCP), Declared(RECORD, "rec", record, ("hc",))]
    first = dict(world.apply("dns", program, states))
    old_id = first["hc"].id
    assert [r["HealthCheckId"] for r in _cnames(aws, zone)] == [old_id]
    sent = len(world.mirror.batches)
    assert world.apply("dns", program, states)["hc"].id == old_id  # unchanged: no call
    assert len(world.mirror.batches) == sent and len(r53.list_health_checks()["HealthChecks"]) == 1
    changed = [Declared(HEALTH_CHECK, "hc", {**TCP, "requestInterval": 10}), program[1]]
    second = world.apply("dns", changed, states)
    new_id = second["hc"].id
    assert new_id != old_id and [r["HealthCheckId"] for r in _cnames(aws, zone)] == [new_id]
    assert [h["Id"] for h in r53.list_health_checks()["HealthChecks"]] == [new_id]
    world.apply("dns", [], states)  # the program declares nothing: record first, then the check
    assert _cnames(aws, zone) == [] and r53.list_health_checks()["HealthChecks"] == []


# -- IoT domain configuration --------------------------------------------------------------------

def _domain(cert: str, **extra: Any) -> dict[str, Any]:
    return {"name": "iot-dev-eu-west-1-domain", "domainName": "iot.example.com", "serviceType": "DATA",
            "serverCertificateArns": [cert], "region": REGION, **extra}


def _cert(aws: Any) -> str:
    acm = aws("acm", REGION)
    return str(acm.request_certificate(DomainName="iot.example.com", ValidationMethod="DNS")["CertificateArn"])


def test_a_domain_configuration_certificate_change_replaces_it_never_updates_it(aws: Any) -> None:
    """domain_configuration.go: server_certificate_arns is ForceNew, and UpdateDomainConfiguration
    has no certificate field. With the explicit name the replacement is delete-before-create (one
    configuration per name); status and TLS policy change in place."""
    iot = aws("iot", REGION)
    cert_a, cert_b = _cert(aws), _cert(aws)
    mirror = Mirror(aws)
    world = StackApply(mirror)
    world.apply("region", [Declared(DOMAIN_CONFIGURATION, "domain", _domain(cert_a))], {})
    with pytest.raises(ValueError, match="cannot change serverCertificateArns"):
        mirror.update(DOMAIN_CONFIGURATION, REGION, "d", _domain(cert_a), _domain(cert_b))
    with pytest.raises(ClientError, match="ResourceAlreadyExists"):  # never adopted
        mirror.create(DOMAIN_CONFIGURATION, REGION, "d", _domain(cert_b))
    world.apply("region", [Declared(DOMAIN_CONFIGURATION, "domain", _domain(cert_b))], {})
    found = iot.describe_domain_configuration(domainConfigurationName="iot-dev-eu-west-1-domain")
    assert [c["serverCertificateArn"] for c in found["serverCertificates"]] == [cert_b]
    world.apply("region", [Declared(DOMAIN_CONFIGURATION, "domain", _domain(cert_b, status="DISABLED"))], {})
    found = iot.describe_domain_configuration(domainConfigurationName="iot-dev-eu-west-1-domain")
    assert found["domainConfigurationStatus"] == "DISABLED"
    assert [c["serverCertificateArn"] for c in found["serverCertificates"]] == [cert_b]
    world.apply("region", [], {})
    assert iot.list_domain_configurations()["domainConfigurations"] == []


# -- S3, SQS, DynamoDB -------------------------------------------------------------------------------

def test_a_bucket_its_versioning_and_replication_rules(aws: Any) -> None:
    s3 = aws("s3", REGION)
    world = StackApply(Mirror(aws))
    rules = [{"id": "to-eu-central-1", "priority": 1, "status": "Enabled", "filter": {"prefix": ""},
              "deleteMarkerReplication": {"status": "Enabled"}, "destination": {"bucket": "arn:aws:s3:::dst"}}]
    program = [Declared(BUCKET, "lake", {"bucket": "lake-a", "region": REGION}),
               Declared(BUCKET_VERSIONING, "v", {"bucket": "lake-a", "region": REGION,
                                                 "versioningConfiguration": {"status": "Enabled"}}, ("lake",)),
               Declared(BUCKET_REPLICATION, "r", {"bucket": "lake-a", "region": REGION, "role": "arn:aws:iam::1:role/r",
                                                  "rules": rules}, ("v",))]
    world.apply("s", program, {})
    assert s3.get_bucket_location(Bucket="lake-a")["LocationConstraint"] == REGION
    assert s3.get_bucket_versioning(Bucket="lake-a")["Status"] == "Enabled"
    two = [*rules, {**rules[0], "id": "to-us-east-1", "priority": 2, "destination": {"bucket": "arn:aws:s3:::d2"}}]
    world.apply("s", [*program[:2], Declared(BUCKET_REPLICATION, "r", {**program[2].inputs, "rules": two}, ("v",))], {})
    got = s3.get_bucket_replication(Bucket="lake-a")["ReplicationConfiguration"]["Rules"]
    assert [(r["ID"], r["Destination"]["Bucket"]) for r in got] == [("to-eu-central-1", "arn:aws:s3:::dst"),
                                                                   ("to-us-east-1", "arn:aws:s3:::d2")]
    # a new name is a new bucket (ForceNew); named by the program, the old one goes first
    renamed = [Declared(BUCKET, "lake", {"bucket": "lake-b", "region": REGION})]
    world.apply("s", renamed, {})
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["lake-b"]
    world.apply("s", [], {})
    assert s3.list_buckets()["Buckets"] == []


def test_a_versioning_delete_suspends_it(aws: Any) -> None:
    s3 = aws("s3", REGION)
    mirror = Mirror(aws)
    mirror.create(BUCKET, REGION, "bkt-b", {"bucket": "bkt-b"})
    v = {"bucket": "bkt-b", "versioningConfiguration": {"status": "Enabled"}}
    mirror.create(BUCKET_VERSIONING, REGION, "bkt-b", v)
    mirror.delete(BUCKET_VERSIONING, REGION, "bkt-b", v)
    assert s3.get_bucket_versioning(Bucket="bkt-b")["Status"] == "Suspended"


def test_a_queue_and_a_table_are_created_replaced_on_a_new_name_and_deleted(aws: Any) -> None:
    sqs, ddb = aws("sqs", REGION), aws("dynamodb", REGION)
    world = StackApply(Mirror(aws))
    table = {"name": "marks", "billingMode": "PAY_PER_REQUEST", "hashKey": "pk",
             "attributes": [{"name": "pk", "type": "S"}], "streamEnabled": True,
             "streamViewType": "NEW_AND_OLD_IMAGES", "region": REGION}
    world.apply("r", [Declared(QUEUE, "q", {"name": "dlq", "region": REGION}), Declared(TABLE, "t", table)], {})
    assert sqs.get_queue_url(QueueName="dlq")["QueueUrl"]
    assert ddb.describe_table(TableName="marks")["Table"]["StreamSpecification"]["StreamEnabled"] is True
    world.apply("r", [Declared(QUEUE, "q", {"name": "dlq2", "region": REGION}),
                      Declared(TABLE, "t", {**table, "name": "marks2"})], {})
    assert [u.rsplit("/", 1)[-1] for u in sqs.list_queues()["QueueUrls"]] == ["dlq2"]
    assert ddb.list_tables()["TableNames"] == ["marks2"]
    world.apply("r", [], {})
    assert "QueueUrls" not in sqs.list_queues() and ddb.list_tables()["TableNames"] == []


@pytest.fixture(scope="module")
def world_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The local world's moto (procs.STRICT_MOTO: global tables make replicas; plain moto ignores
    ReplicaUpdates), replicating at once."""
    import os

    from orchestrator.drill.world import global_tables
    from tests.moto_server import moto_server

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           global_tables.DELAY_ENV: "0"}
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log", env) as url:
        yield url


def test_a_tables_replicas_are_made_changed_and_deleted_as_the_resource_declares_them(world_url: str) -> None:
    def ddb(region: str) -> Any:
        return boto3.client("dynamodb", region_name=region, endpoint_url=world_url, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def tables() -> dict[str, list[str]]:
        return {r: ddb(r).list_tables()["TableNames"] for r in (REGION, "eu-central-1", "us-east-1")}

    world = StackApply(Mirror(lambda service, region: ddb(region)))
    outbox = {"name": "outbox", "billingMode": "PAY_PER_REQUEST", "hashKey": "thing", "rangeKey": "commandId",
              "attributes": [{"name": "thing", "type": "S"}, {"name": "commandId", "type": "S"}],
              "streamEnabled": True, "streamViewType": "NEW_AND_OLD_IMAGES",
              "ttl": {"attributeName": "expiresAt", "enabled": True}, "region": REGION,
              "replicas": [{"regionName": "eu-central-1", "pointInTimeRecovery": True}]}
    world.apply("replication", [Declared(TABLE, "outbox", outbox)], {})
    described = ddb(REGION).describe_table(TableName="outbox")["Table"]
    assert [r["RegionName"] for r in described["Replicas"]] == ["eu-central-1"]
    assert [(k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]] == [("thing", "HASH"),
                                                                                      ("commandId", "RANGE")]
    assert ddb(REGION).describe_time_to_live(TableName="outbox")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    assert tables() == {REGION: ["outbox"], "eu-central-1": ["outbox"], "us-east-1": []}
    # the replica is a member: a write in the table's region reaches it
    ddb(REGION).put_item(TableName="outbox", Item={"thing": {"S": "t"}, "commandId": {"S": "c"}})
    assert _eventually(lambda: "Item" in ddb("eu-central-1").get_item(
        TableName="outbox", Key={"thing": {"S": "t"}, "commandId": {"S": "c"}}))
    # the declared replicas change: the region that left is deleted first, the new one created (in place)
    world.apply("replication", [Declared(TABLE, "outbox", {**outbox, "replicas": [{"regionName": "us-east-1"}]})],
                {})
    assert tables() == {REGION: ["outbox"], "eu-central-1": [], "us-east-1": ["outbox"]}
    assert [r["RegionName"] for r in ddb(REGION).describe_table(TableName="outbox")["Table"]["Replicas"]] == [
        "us-east-1"]
    # the resource leaves the program: its replicas go, then the table
    world.apply("replication", [], {})
    assert tables() == {REGION: [], "eu-central-1": [], "us-east-1": []}


def _eventually(cond: Any, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


# -- Step Functions, Scheduler, CloudWatch -------------------------------------------------------------

DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


def test_a_state_machine_is_validated_created_updated_and_deleted(aws: Any) -> None:
    sfn = aws("stepfunctions", REGION)
    refused: list[str] = []

    def check(text: str) -> None:
        if "Succeed" not in text:
            refused.append(text)
            raise ValueError("InvalidDefinition: no terminal state")

    mirror = Mirror(aws, check_definition=check)
    props = {"name": "reconcile", "definition": DEFINITION, "roleArn": "arn:aws:iam::123456789012:role/sfn"}
    mirror.create(STATE_MACHINE, REGION, "sm", props)
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    other = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "Next": "Done"},
                                                      "Done": {"Type": "Succeed"}}})
    mirror.update(STATE_MACHINE, REGION, arn, {**props, "arn": arn}, {**props, "arn": arn, "definition": other})
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])["StartAt"] == "Wait"
    with pytest.raises(ValueError, match="InvalidDefinition"):
        mirror.update(STATE_MACHINE, REGION, arn, {**props, "arn": arn}, {**props, "arn": arn, "definition": "{}"})
    mirror.delete(STATE_MACHINE, REGION, arn, {**props, "arn": arn})
    assert sfn.list_state_machines()["stateMachines"] == []


def test_a_schedule_is_created_updated_deleted_and_an_off_window_with_a_maximum_refused(aws: Any) -> None:
    scheduler = aws("scheduler", REGION)
    mirror = Mirror(aws)
    props = {"name": "daily", "scheduleExpression": "rate(1 day)", "flexibleTimeWindow": {"mode": "OFF"},
             "target": {"arn": "arn:aws:states:eu-west-1:123456789012:stateMachine:reconcile",
                        "roleArn": "arn:aws:iam::123456789012:role/s"}}
    mirror.create(SCHEDULE, REGION, "s", props)
    mirror.update(SCHEDULE, REGION, "s", props, {**props, "scheduleExpression": "rate(12 hours)"})
    assert scheduler.get_schedule(Name="daily")["ScheduleExpression"] == "rate(12 hours)"
    with pytest.raises(ValueError, match="MaximumWindowInMinutes is only valid with mode FLEXIBLE"):
        mirror.update(SCHEDULE, REGION, "s", props,
                      {**props, "flexibleTimeWindow": {"mode": "OFF", "maximumWindowInMinutes": 5}})
    mirror.delete(SCHEDULE, REGION, "s", props)
    assert scheduler.list_schedules()["Schedules"] == []


def test_a_new_alarm_starts_insufficient_data_and_an_updated_one_keeps_its_state(aws: Any) -> None:
    cloudwatch = aws("cloudwatch", REGION)
    mirror = Mirror(aws)
    alarm = {"name": "canary", "namespace": "IoT/Canary", "metricName": "RoundTrip", "statistic": "Sum",
             "period": 60, "evaluationPeriods": 2, "threshold": 1, "comparisonOperator": "LessThanThreshold",
             "dimensions": {"Region": REGION}}
    mirror.create(METRIC_ALARM, REGION, "a", alarm)

    def state() -> str:
        return str(cloudwatch.describe_alarms(AlarmNames=["canary"])["MetricAlarms"][0]["StateValue"])

    assert state() == "INSUFFICIENT_DATA"
    cloudwatch.set_alarm_state(AlarmName="canary", StateValue="ALARM", StateReason="test")
    mirror.update(METRIC_ALARM, REGION, "a", alarm, {**alarm, "threshold": 2})
    assert state() == "ALARM"
    mirror.delete(METRIC_ALARM, REGION, "a", alarm)
    assert cloudwatch.describe_alarms(AlarmNames=["canary"])["MetricAlarms"] == []


# -- ARC --------------------------------------------------------------------------------------------------

def test_routing_controls_and_safety_rules_reach_the_cluster_with_their_wait_period() -> None:
    arc = ArcCluster()
    world = StackApply(Mirror(lambda s, r: None, arc=arc))
    states = {(ROUTING_CONTROL, "c"): {"arn": "rc/c"}, (SAFETY_RULE, "r"): {"arn": "sr/r"}}
    rule = {"name": "one-on", "assertedControls": ["rc/c"], "waitPeriodMs": 2500, "controlPanelArn": "p",
            "ruleConfig": {"threshold": 1, "inverted": False, "type": "ATLEAST"}}
    program = [Declared(ROUTING_CONTROL, "c", {"name": "c", "controlPanelArn": "p"}),
               Declared(SAFETY_RULE, "r", rule, ("c",))]
    world.apply("dns", program, states)
    assert set(arc.controls) == {"rc/c"} and arc.rules["sr/r"].wait_period_ms == 2500
    world.apply("dns", [program[0], Declared(SAFETY_RULE, "r", {**rule, "waitPeriodMs": 7000}, ("c",))], states)
    assert arc.rules["sr/r"].wait_period_ms == 7000  # waitPeriodMs changes in place
    with pytest.raises(KeyError):  # the resource requires waitPeriodMs
        without = {k: v for k, v in {**rule, "arn": "x"}.items() if k != "waitPeriodMs"}
        Mirror(lambda s, r: None, arc=arc).create(SAFETY_RULE, REGION, "r", without)
    world.apply("dns", [], states)
    assert arc.controls == {} and arc.rules == {}
