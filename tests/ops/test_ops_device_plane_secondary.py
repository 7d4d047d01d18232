"""After a failover, devices that join or authenticate in other ways work in the secondary
(issue 26, "Done when"): a factory-fresh device with only a claim certificate provisions itself
there (CreateKeysAndCertificate + RegisterThing), and a device using a role alias gets AWS
credentials there. The secondary holds what `registry sync` carried (provisioning template, claim
and device certificates with their policies, role alias; the IAM role is global); the devices ask
the local world's regional services (orchestrator/drill/world/device_services.py), which read only that
region's registry, as AWS's do.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.drill.world.device_services import CredentialsProvider, DeviceRefused, FleetProvisioning
from orchestrator.drill.world.iotpolicy import Authoriser
from orchestrator.registry import sync_registry
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import make_pem

ACCOUNT = "123456789012"
TEMPLATE = "fleet"
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "credentials.iot.amazonaws.com"}}]}
BODY = {
    "Parameters": {"SerialNumber": {"Type": "String"}, "AWS::IoT::Certificate::Id": {"Type": "String"},
                   "Site": {"Type": "String", "Default": "dub"}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing", "Properties": {
            "ThingName": {"Fn::Join": ["", ["meter-", {"Ref": "SerialNumber"}]]},
            "AttributePayload": {"serial": {"Ref": "SerialNumber"}, "site": {"Ref": "Site"}}}},
        "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
            "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "device"}}},
    "DeviceConfiguration": {"telemetryTopic": "things/meter/telemetry"},
}
DEVICE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate", "Resource": "arn:aws:iot:*:*:rolealias/uploads"}]}
CLAIM_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/claim-*"},
    {"Effect": "Allow", "Action": "iot:Publish", "Resource": [
        "arn:aws:iot:*:*:topic/$aws/certificates/create/json",
        f"arn:aws:iot:*:*:topic/$aws/provisioning-templates/{TEMPLATE}/provision/json"]}]}


@pytest.fixture
def regions(ctx: AwsContext) -> dict[str, Any]:
    """The primary as operators set it up; nothing in the secondary yet."""
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    iam = client(ctx, "iam", SRC)
    role = iam.create_role(RoleName="iot-uploads", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    src.create_role_alias(roleAlias="uploads", roleArn=role, credentialDurationSeconds=900)
    src.create_policy(policyName="device", policyDocument=json.dumps(DEVICE_POLICY))
    src.create_policy(policyName="claim", policyDocument=json.dumps(CLAIM_POLICY))
    src.create_provisioning_template(templateName=TEMPLATE, templateBody=json.dumps(BODY), enabled=True,
                                     provisioningRoleArn=role)
    claim = src.register_certificate_without_ca(certificatePem=make_pem("claim", 1), status="ACTIVE")
    src.attach_policy(policyName="claim", target=claim["certificateArn"])
    src.create_thing(thingName="meter-1")
    device = src.register_certificate_without_ca(certificatePem=make_pem("meter-1", 2), status="ACTIVE")
    src.attach_thing_principal(thingName="meter-1", principal=device["certificateArn"])
    src.attach_policy(policyName="device", target=device["certificateArn"])
    return {"ctx": ctx, "src": src, "dst": dst, "iam": iam, "claim": claim["certificateId"],
            "device": device["certificateId"]}


def credentials(r: dict[str, Any], region: str) -> CredentialsProvider:
    ctx = r["ctx"]
    return CredentialsProvider(client(ctx, "iot", region), r["iam"], client(ctx, "sts", region), region, ACCOUNT)


def provisioning(r: dict[str, Any], region: str) -> FleetProvisioning:
    return FleetProvisioning(client(r["ctx"], "iot", region), region, ACCOUNT)


def refused(call: Any, *args: Any, **kwargs: Any) -> DeviceRefused:
    with pytest.raises(DeviceRefused) as exc:
        call(*args, **kwargs)
    return exc.value


def test_the_primary_serves_both_and_the_secondary_neither_before_a_sync(regions: dict[str, Any]) -> None:
    r = regions
    got = credentials(r, SRC).credentials(r["device"], "uploads", thing_name="meter-1")
    assert got["credentials"]["accessKeyId"] and got["credentials"]["sessionToken"]
    primary = provisioning(r, SRC)
    keys = primary.create_keys_and_certificate(r["claim"], "claim-a")
    done = primary.register_thing(r["claim"], "claim-a", TEMPLATE, keys["certificateOwnershipToken"],
                                  {"SerialNumber": "5"})
    assert done["thingName"] == "meter-5" and r["src"].describe_thing(thingName="meter-5")
    # the secondary knows neither certificate yet: refused as AWS refuses an unknown certificate
    assert refused(credentials(r, DST).credentials, r["device"], "uploads").status == 403
    assert refused(provisioning(r, DST).create_keys_and_certificate, r["claim"], "claim-a").status == 403


def test_after_a_sync_a_claim_certificate_provisions_a_device_in_the_secondary(regions: dict[str, Any]) -> None:
    r = regions
    dst = r["dst"]
    report = sync_registry(r["ctx"], SRC, DST, rate=10_000, shadows=False)
    assert report.ok, report.errors
    # the claim certificate (same id) and its policy are in the secondary, as is the template
    claim = dst.describe_certificate(certificateId=r["claim"])["certificateDescription"]
    assert claim["status"] == "ACTIVE"
    assert [p["policyName"] for p in dst.list_attached_policies(target=claim["certificateArn"])["policies"]] == \
        ["claim"]
    service = provisioning(r, DST)
    keys = service.create_keys_and_certificate(r["claim"], "claim-77")
    assert "PRIVATE KEY" in keys["privateKey"]
    new_id = keys["certificateId"]
    assert dst.describe_certificate(certificateId=new_id)["certificateDescription"]["status"] == "INACTIVE"
    # a token the primary issued means nothing here
    primary_token = provisioning(r, SRC).create_keys_and_certificate(
        r["claim"], "claim-77")["certificateOwnershipToken"]
    bad = refused(service.register_thing, r["claim"], "claim-77", TEMPLATE, primary_token, {"SerialNumber": "77"})
    assert bad.code == "InvalidCertificateOwnershipToken"
    missing = refused(service.register_thing, r["claim"], "claim-77", TEMPLATE, keys["certificateOwnershipToken"], {})
    assert missing.code == "InvalidParametersException" and "SerialNumber" in missing.message

    done = service.register_thing(r["claim"], "claim-77", TEMPLATE, keys["certificateOwnershipToken"],
                                  {"SerialNumber": "77"})
    assert done == {"thingName": "meter-77", "deviceConfiguration": {"telemetryTopic": "things/meter/telemetry"}}
    assert dst.describe_thing(thingName="meter-77")["attributes"] == {"serial": "77", "site": "dub"}
    cert = dst.describe_certificate(certificateId=new_id)["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    assert dst.list_thing_principals(thingName="meter-77")["principals"] == [cert["certificateArn"]]
    assert [p["policyName"] for p in dst.list_attached_policies(target=cert["certificateArn"])["policies"]] == \
        ["device"]
    # the provisioned device connects to the secondary with its new certificate
    decision, _ = Authoriser(dst, DST, ACCOUNT).connect(new_id, "meter-77", None)
    assert decision, decision.reason
    # the token is spent, and the claim policy does not reach another template
    assert refused(service.register_thing, r["claim"], "claim-77", TEMPLATE, keys["certificateOwnershipToken"],
                   {"SerialNumber": "77"}).code == "InvalidCertificateOwnershipToken"
    other = refused(service.register_thing, r["claim"], "claim-77", "other", keys["certificateOwnershipToken"], {})
    assert other.status == 403 and "provisioning-templates/other" in other.message


def test_after_a_sync_a_device_gets_credentials_through_the_role_alias_in_the_secondary(
        regions: dict[str, Any]) -> None:
    r = regions
    ctx, dst = r["ctx"], r["dst"]
    assert sync_registry(ctx, SRC, DST, rate=10_000, shadows=False).ok
    assert dst.describe_role_alias(roleAlias="uploads")["roleAliasDescription"]["roleArn"].endswith("role/iot-uploads")
    got = credentials(r, DST).credentials(r["device"], "uploads", thing_name="meter-1")["credentials"]
    device_sts = boto3.client(  # the device signs with the temporary credentials it got
        "sts", region_name=DST, endpoint_url=ctx.endpoint_url,
                              aws_access_key_id=got["accessKeyId"], aws_secret_access_key=got["secretAccessKey"],
                              aws_session_token=got["sessionToken"])
    assert ":assumed-role/iot-uploads/" in device_sts.get_caller_identity()["Arn"]

    # what the secondary refuses, as AWS does
    assert refused(credentials(r, DST).credentials, r["device"], "uploads", thing_name="meter-9").status == 403
    assert refused(credentials(r, DST).credentials, r["device"], "other").status == 403  # the policy names uploads
    dst.update_certificate(certificateId=r["device"], newStatus="INACTIVE")
    assert refused(credentials(r, DST).credentials, r["device"], "uploads").status == 403
    dst.update_certificate(certificateId=r["device"], newStatus="ACTIVE")
    dst.delete_role_alias(roleAlias="uploads")
    gone = refused(credentials(r, DST).credentials, r["device"], "uploads")
    assert (gone.status, gone.code) == (404, "ResourceNotFoundException")


def test_a_role_that_does_not_trust_the_credentials_provider_gives_nothing(regions: dict[str, Any]) -> None:
    r = regions
    iam, src = r["iam"], r["src"]
    arn = iam.create_role(RoleName="wrong-trust", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    src.update_role_alias(roleAlias="uploads", roleArn=arn)
    wrong = refused(credentials(r, SRC).credentials, r["device"], "uploads")
    assert wrong.status == 403 and "credentials.iot.amazonaws.com" in wrong.message
