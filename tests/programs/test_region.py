"""The region program (`iotplatform:region:IotRegion`) under mocks: what a reviewer checks."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from programs import policies
from programs.contract import REGION_OUTPUTS, Sizing
from programs.mocks import Evaluation, ats_endpoint, evaluate
from programs.region import lake_bucket_prefix
from tests.programs.conftest import (
    DOMAIN,
    PRIMARY,
    SECONDARY,
    THIRD,
    policy_attached_to,
    policy_of,
    region_args,
    region_eval,
    strings_in,
)

REGION_INVENTORY = Counter({
    "iotplatform:region:IotRegion": 1,
    "aws:acm/certificate:Certificate": 1,
    "aws:acm/certificateValidation:CertificateValidation": 1,
    "aws:iot/domainConfiguration:DomainConfiguration": 1,
    "aws:iot/thingType:ThingType": 2,
    "aws:iot/thingGroup:ThingGroup": 2,
    "aws:iot/eventConfigurations:EventConfigurations": 1,
    "aws:iot/indexingConfiguration:IndexingConfiguration": 1,
    "aws:iot/policy:Policy": 2,  # devices, the MQTT canary thing
    "aws:s3/bucket:Bucket": 1,
    "aws:s3/bucketVersioning:BucketVersioning": 1,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 1,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 1,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1,
    "aws:s3/bucketPolicy:BucketPolicy": 1,
    "aws:kinesis/stream:Stream": 1,
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": 1,
    "aws:iam/role:Role": 4,  # rule, rule error action, firehose, MQTT canary
    "aws:iam/rolePolicy:RolePolicy": 4,
    "aws:iot/topicRule:TopicRule": 1,
    # the MQTT canary (programs/canary.py; tests/programs/test_canary.py)
    "aws:iot/thing:Thing": 1,
    "aws:iot/certificate:Certificate": 1,
    "aws:iot/policyAttachment:PolicyAttachment": 1,
    "aws:iot/thingPrincipalAttachment:ThingPrincipalAttachment": 1,
    "aws:secretsmanager/secret:Secret": 1,
    "aws:secretsmanager/secretVersion:SecretVersion": 1,
    "aws:cloudwatch/logGroup:LogGroup": 1,
    "aws:lambda/function:Function": 1,
    "aws:cloudwatch/eventRule:EventRule": 1,
    "aws:lambda/permission:Permission": 1,
    "aws:cloudwatch/eventTarget:EventTarget": 1,
    "aws:cloudwatch/metricAlarm:MetricAlarm": 1,
})
VALIDATION_RECORD = "aws:route53/record:Record"


def test_owner_inventory_is_the_region_platform_plus_the_validation_record(primary: Evaluation) -> None:
    assert Counter(r.type for r in primary.resources) == REGION_INVENTORY + Counter({VALIDATION_RECORD: 1})


def test_non_owner_inventory_has_no_validation_record(secondary: Evaluation) -> None:
    assert Counter(r.type for r in secondary.resources) == REGION_INVENTORY


def test_every_child_is_named_after_and_parented_to_the_component(primary: Evaluation) -> None:
    component = primary.one("iotplatform:region:IotRegion")
    assert component.name == f"iot-dev-{PRIMARY}"
    for r in primary.resources:
        if r is not component:
            assert r.parent == component.name, r.name
            assert r.name.startswith(f"{component.name}-"), r.name


def test_outputs_are_exactly_the_contract_names_with_real_values(primary: Evaluation) -> None:
    assert list(primary.outputs) == list(REGION_OUTPUTS)
    out = primary.outputs
    assert out["region"] == PRIMARY
    assert out["iotEndpoint"] == ats_endpoint(PRIMARY)
    assert re.fullmatch(r"[a-z0-9]{14}-ats\.iot\.eu-west-1\.amazonaws\.com", out["iotEndpoint"])
    assert out["certificateArn"].startswith(f"arn:aws:acm:{PRIMARY}:123456789012:certificate/")
    assert out["domainConfigurationArn"].startswith(
        f"arn:aws:iot:{PRIMARY}:123456789012:domainconfiguration/")
    assert out["streamArn"] == f"arn:aws:kinesis:{PRIMARY}:123456789012:stream/{out['streamName']}"
    assert out["dataLakeBucketArn"] == f"arn:aws:s3:::{out['dataLakeBucketName']}"
    assert out["devicePolicyName"] == "iot-dev-device"


def test_endpoint_is_looked_up_in_the_stack_region_and_is_stable() -> None:
    assert region_eval(SECONDARY, False).outputs["iotEndpoint"] == ats_endpoint(SECONDARY)
    again = evaluate(region_args(SECONDARY, owner=False), stack="dev-region-eu-central-1")
    assert again.outputs["iotEndpoint"] == region_eval(SECONDARY, False).outputs["iotEndpoint"]
    assert ats_endpoint(PRIMARY) != ats_endpoint(SECONDARY)


# -- custom domain ------------------------------------------------------------------------------

def test_domain_configuration_serves_data_with_tls13_policy_and_the_validated_certificate(
        primary: Evaluation) -> None:
    domain = primary.one("aws:iot/domainConfiguration:DomainConfiguration")
    assert domain.inputs["serviceType"] == "DATA"
    assert domain.inputs["domainName"] == DOMAIN
    assert domain.inputs["tlsConfig"] == {"securityPolicy": "IoTSecurityPolicy_TLS13_1_2_2022_10"}
    cert = primary.one("aws:acm/certificate:Certificate")
    validation = primary.one("aws:acm/certificateValidation:CertificateValidation")
    assert domain.inputs["serverCertificateArns"] == [primary.outputs["certificateArn"]]
    assert validation.name in domain.depends_on  # the domain waits for a validated certificate
    assert cert.inputs["domainName"] == DOMAIN and cert.inputs["validationMethod"] == "DNS"
    assert cert.inputs["region"] == PRIMARY


def test_only_the_validation_owner_creates_the_record_others_wait_on_the_same_fqdn(
        primary: Evaluation, secondary: Evaluation) -> None:
    record = primary.one(VALIDATION_RECORD)
    assert record.inputs["type"] == "CNAME"
    assert record.inputs["name"].endswith(f".{DOMAIN}.")
    owner_wait = primary.one("aws:acm/certificateValidation:CertificateValidation")
    other_wait = secondary.one("aws:acm/certificateValidation:CertificateValidation")
    assert secondary.of_type(VALIDATION_RECORD) == []
    assert owner_wait.inputs["validationRecordFqdns"] == other_wait.inputs["validationRecordFqdns"]
    assert other_wait.inputs["validationRecordFqdns"] == [record.inputs["name"].rstrip(".")]
    assert record.name in owner_wait.depends_on


# -- registry -----------------------------------------------------------------------------------

def test_registry_types_groups_with_parent_events_and_indexing(primary: Evaluation) -> None:
    types = {r.inputs["name"] for r in primary.of_type("aws:iot/thingType:ThingType")}
    assert types == {"thermostat", "energy-meter"}
    groups = {r.inputs["name"]: r for r in primary.of_type("aws:iot/thingGroup:ThingGroup")}
    assert groups["building-hq"].inputs["parentGroupName"] == "buildings"
    assert "parentGroupName" not in groups["buildings"].inputs
    assert groups["buildings"].name in groups["building-hq"].depends_on
    events = primary.one("aws:iot/eventConfigurations:EventConfigurations").inputs["eventConfigurations"]
    for key in ("THING", "THING_GROUP", "THING_TYPE", "THING_GROUP_MEMBERSHIP"):
        assert events[key] is True
    indexing = primary.one("aws:iot/indexingConfiguration:IndexingConfiguration").inputs
    assert indexing["thingIndexingConfiguration"]["thingIndexingMode"] == "REGISTRY"
    assert indexing["thingGroupIndexingConfiguration"]["thingGroupIndexingMode"] == "ON"


# -- device policy --------------------------------------------------------------------------------

def _device_policy(ev: Evaluation) -> dict:
    return policy_of(ev.named(f"iot-dev-{ev.stack.rsplit('-region-', 1)[1]}-device-policy"))


def test_device_policy_is_least_privilege(primary: Evaluation) -> None:
    doc = _device_policy(primary)
    actions = policies.actions_of(doc)
    resources = policies.resources_of(doc)
    assert set(actions) == {"iot:Connect", "iot:Publish", "iot:Receive", "iot:Subscribe"}
    assert "iot:*" not in actions and "*" not in resources
    # the one Deny: no device reads the outbox's acknowledgements (tests/programs/test_command_outbox.py)
    assert [s["Sid"] for s in doc["Statement"] if s["Effect"] != "Allow"] == ["NoOneElsesAcknowledgements"]
    connect = next(s for s in doc["Statement"] if s["Action"] == "iot:Connect")
    assert connect["Resource"] == "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    # every other grant names the thing's own topics only: its telemetry tree, its command topic and
    # acknowledgement topic (the outbox), its shadows (requests to publish; answers to read)
    thing = "${iot:Connection.Thing.ThingName}"
    own, cmd, shadow = f"buildings/{thing}/*", f"cmd/{thing}", f"$aws/things/{thing}/shadow/"
    allowed = {
        "iot:Publish": {own, f"cmd/ack/{thing}", f"{shadow}*get", f"{shadow}*update", f"{shadow}*delete"},
        "iot:Subscribe": {own, cmd, f"{cmd}/*", f"{shadow}*"},
        "iot:Receive": {own, cmd, f"{cmd}/*", f"{shadow}*"},
    }
    granted: dict[str, set[str]] = {action: set() for action in allowed}
    for s in doc["Statement"]:
        if s is connect or s["Effect"] == "Deny":
            continue
        kind = "topicfilter" if s["Action"] == "iot:Subscribe" else "topic"
        for r in s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]:
            assert r.startswith(f"arn:aws:iot:*:*:{kind}/"), (s["Sid"], r)
            granted[s["Action"]].add(r.split(f":{kind}/", 1)[1])
    assert granted == allowed


def test_every_iot_policy_fits_iot_cores_document_limit(primary: Evaluation, secondary: Evaluation) -> None:
    # CreatePolicy refuses a document over 2,048 characters, whitespace excluded: a stack whose
    # device policy grew past it would fail in AWS while every double accepted it
    for ev in (primary, secondary):
        found = ev.of_type("aws:iot/policy:Policy")
        assert len(found) == 2
        for resource in found:
            size = policies.iot_policy_size(resource.inputs["policy"])
            assert 0 < size <= policies.DEVICE_POLICY_LIMIT, (resource.name, size)


def test_device_policy_is_region_neutral_and_identical_in_every_region(
        primary: Evaluation, secondary: Evaluation) -> None:
    doc = json.dumps(_device_policy(primary))
    assert not re.search(r"[a-z]{2}(-gov)?-[a-z]+-\d", doc), "a literal region in the device policy"
    assert "123456789012" not in doc
    for arn in policies.resources_of(_device_policy(primary)):
        assert arn.split(":")[3:5] == ["*", "*"], arn
    assert _device_policy(primary) == _device_policy(secondary)
    names = {ev.named(f"{ev.one('iotplatform:region:IotRegion').name}-device-policy").inputs["name"]
             for ev in (primary, secondary)}
    assert names == {"iot-dev-device"}


# -- data lake ------------------------------------------------------------------------------------

def test_lake_bucket_is_encrypted_versioned_private_and_owner_enforced(primary: Evaluation) -> None:
    bucket = primary.one("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucketPrefix"] == f"iot-dev-lake-{PRIMARY}-"
    assert "bucket" not in bucket.inputs  # autonamed: names are global
    assert not bucket.inputs.get("forceDestroy")

    def on_bucket(type_token: str) -> dict:
        r = primary.one(type_token)
        assert r.inputs["bucket"] == primary.outputs["dataLakeBucketName"], type_token
        assert r.inputs["region"] == PRIMARY
        return r.inputs

    versioning = on_bucket("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    sse = on_bucket("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    algorithm = sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
    assert algorithm in ("AES256", "aws:kms")
    block = on_bucket("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block[key] is True, key
    ownership = on_bucket("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_lake_policy_denies_insecure_transport_on_bucket_and_objects(primary: Evaluation) -> None:
    doc = policy_of(primary.one("aws:s3/bucketPolicy:BucketPolicy"))
    arn = primary.outputs["dataLakeBucketArn"]
    (deny,) = doc["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(deny["Resource"]) == sorted([arn, f"{arn}/*"])


@pytest.mark.parametrize("expiration", [0, 400])
def test_lake_lifecycle_follows_sizing(expiration: int) -> None:
    sizing = Sizing(lake_transition_days=45, lake_expiration_days=expiration)
    ev = evaluate(region_args(THIRD, sizing=sizing), stack=f"dev-region-{THIRD}")
    lifecycle = ev.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    (rule,) = lifecycle.inputs["rules"]
    assert rule["status"] == "Enabled"
    assert rule["transitions"] == [{"days": 45, "storageClass": "STANDARD_IA"}]
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] > 0
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] > 0
    if expiration:
        assert rule["expiration"] == {"days": expiration}
    else:
        assert "expiration" not in rule  # 0 means keep: nothing expires
    assert ev.one("aws:s3/bucketVersioning:BucketVersioning").name in lifecycle.depends_on


def test_bucket_prefix_fits_s3_limits_for_long_env_names() -> None:
    prefix = lake_bucket_prefix("a-very-long-environment-name", "ap-southeast-2")
    assert len(prefix) <= 37 and prefix.endswith("-lake-ap-southeast-2-")
    assert re.fullmatch(r"[a-z0-9-]+", prefix)


# -- ingestion ------------------------------------------------------------------------------------

def test_stream_is_kms_encrypted_with_sizing_retention_and_mode(primary: Evaluation) -> None:
    stream = primary.one("aws:kinesis/stream:Stream").inputs
    assert stream["encryptionType"] == "KMS" and stream["kmsKeyId"] == "alias/aws/kinesis"
    assert stream["retentionPeriod"] == 24
    assert stream["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
    assert "shardCount" not in stream
    provisioned = evaluate(region_args(THIRD, sizing=Sizing("PROVISIONED", 4, 168)), stack="p")
    p = provisioned.one("aws:kinesis/stream:Stream").inputs
    assert p["streamModeDetails"] == {"streamMode": "PROVISIONED"}
    assert p["shardCount"] == 4 and p["retentionPeriod"] == 168


def _role_policy(ev: Evaluation, role_suffix: str) -> dict:
    return policy_attached_to(ev, f"iot-dev-{ev.outputs['region']}-{role_suffix}-role")


def test_rule_role_is_scoped_to_exactly_the_stream_and_trusts_only_iot_for_this_account(
        primary: Evaluation) -> None:
    doc = _role_policy(primary, "rule")
    assert policies.resources_of(doc) == [primary.outputs["streamArn"]]
    assert sorted(policies.actions_of(doc)) == ["kinesis:PutRecord", "kinesis:PutRecords"]
    trust = policy_of(primary.named(f"iot-dev-{PRIMARY}-rule-role"), "assumeRolePolicy")
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "iot.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_telemetry_rule_feeds_the_stream_and_errors_go_to_a_scoped_lake_prefix(primary: Evaluation) -> None:
    rule = primary.one("aws:iot/topicRule:TopicRule").inputs
    assert rule["sql"] == "SELECT * FROM 'buildings/+/telemetry'"
    assert rule["sqlVersion"] == "2016-03-23" and rule["enabled"] is True
    (kinesis,) = rule["kineses"]
    assert kinesis["streamName"] == primary.outputs["streamName"]
    error = rule["errorAction"]["s3"]
    assert error["bucketName"] == primary.outputs["dataLakeBucketName"]
    assert error["key"].startswith("errors/iot-rule/")
    error_doc = _role_policy(primary, "rule-error")
    assert policies.resources_of(error_doc) == [f"{primary.outputs['dataLakeBucketArn']}/errors/iot-rule/*"]
    assert policies.actions_of(error_doc) == ["s3:PutObject"]


def test_firehose_reads_the_stream_writes_partitioned_keys_with_its_own_role(primary: Evaluation) -> None:
    firehose = primary.one("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream").inputs
    assert firehose["destination"] == "extended_s3"
    assert firehose["kinesisSourceConfiguration"]["kinesisStreamArn"] == primary.outputs["streamArn"]
    s3 = firehose["extendedS3Configuration"]
    assert s3["bucketArn"] == primary.outputs["dataLakeBucketArn"]
    assert s3["prefix"] == ("telemetry/year=!{timestamp:yyyy}/month=!{timestamp:MM}/"
                            "day=!{timestamp:dd}/hour=!{timestamp:HH}/")
    errors = s3["errorOutputPrefix"]
    assert errors.startswith("errors/") and "!{firehose:error-output-type}" in errors
    doc = _role_policy(primary, "firehose")
    bucket, stream = primary.outputs["dataLakeBucketArn"], primary.outputs["streamArn"]
    assert set(policies.resources_of(doc)) == {stream, bucket, f"{bucket}/*"}
    assert not any(a.endswith(":*") for a in policies.actions_of(doc))
    trust = policy_of(primary.named(f"iot-dev-{PRIMARY}-firehose-role"), "assumeRolePolicy")
    assert trust["Statement"][0]["Principal"] == {"Service": "firehose.amazonaws.com"}


# -- protection and region neutrality -------------------------------------------------------------

def test_only_stateful_resources_are_protected(primary: Evaluation) -> None:
    assert set(primary.protected) == {f"iot-dev-{PRIMARY}-lake", f"iot-dev-{PRIMARY}-telemetry"}
    assert primary.named(f"iot-dev-{PRIMARY}-lake").type == "aws:s3/bucket:Bucket"
    assert primary.named(f"iot-dev-{PRIMARY}-telemetry").type == "aws:kinesis/stream:Stream"


GLOBAL = {"aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy", "aws:route53/record:Record"}


def test_every_regional_resource_is_placed_with_region_argument(primary: Evaluation,
                                                                secondary: Evaluation) -> None:
    for ev, region in ((primary, PRIMARY), (secondary, SECONDARY)):
        for r in ev.managed:
            if r.type in GLOBAL:
                assert "region" not in r.inputs, r.name
            else:
                assert r.inputs.get("region") == region, r.name


# inputs that carry the region because a name was derived from the region parameter
DERIVED_FROM_REGION = {"region", "name", "bucketPrefix", "bucket", "bucketName", "streamName", "role",
                       # the MQTT canary's own region, client id and topic, its alarm's dimension
                       "CANARY_REGION", "CANARY_CLIENT_ID", "CANARY_TOPIC_PREFIX", "Region",
                       "description", "alarmDescription", "thing", "policy", "function", "rule",
                       "aws:RequestedRegion"}


@pytest.mark.slow
def test_no_region_is_baked_into_the_program() -> None:
    """Same program, two regions: the region shows up only where it was passed or reported."""
    a, b = region_eval(PRIMARY, True), region_eval(SECONDARY, True)

    def normalized(ev: Evaluation, region: str) -> list[tuple[str, str, str]]:
        def blank(text: str) -> str:  # the region as given, and as rule names spell it
            return text.replace(region, "<r>").replace(region.replace("-", "_"), "<r>")

        return sorted((r.type, blank(r.name), blank(json.dumps(r.inputs, sort_keys=True)))
                      for r in ev.resources)

    def shape(ev: Evaluation, region: str) -> list[tuple[str, str, str]]:  # ids/hashes differ by region
        return [(t, n, re.sub(r"[0-9a-f]{4,}", "<h>", i)) for t, n, i in normalized(ev, region)]

    assert shape(a, PRIMARY) == shape(b, SECONDARY)
    for ev, region, other in ((a, PRIMARY, SECONDARY), (b, SECONDARY, PRIMARY)):
        for r in ev.resources:
            for path, value in strings_in(dict(r.inputs)):
                assert other not in value, f"{r.name}.{path} names {other}"
                if region in value:
                    leaf = path.rsplit(".", 1)[-1]
                    # passed as region=, part of a name derived from it, or reported by AWS
                    assert (leaf in DERIVED_FROM_REGION or value.startswith("arn:")
                            or value.endswith(".amazonaws.com")), (r.name, path, value)
