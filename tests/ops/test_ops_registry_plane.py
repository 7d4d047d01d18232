"""The device-management plane (role aliases, CAs, job templates, indexing, registry events) carried by
`registry sync`, compared by `registry verify`, and kept by backup/restore, against moto with the
calls it lacks added (orchestrator/drill/world/iot_plane.py), behind the strict gate."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.errors import GuardRefused
from orchestrator.registry import backup_region, restore_registry, sync_registry, verify_registry
from orchestrator.registry.guards import PruneGuard
from orchestrator.registry.plane import REQUIRED_EVENTS
from tests.ops.conftest import DST, SRC, THIRD

ROLE = "arn:aws:iam::123456789012:role/device-credentials"
HOOK = "arn:aws:lambda:{r}:123456789012:function:provision-hook"


def _ca() -> tuple[str, str]:
    """(CA PEM, a verification certificate signed by the CA's key) - throwaway, never written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "factory CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(7).not_valid_before(now).not_valid_after(now + timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(key, hashes.SHA256()))
    vkey = ec.generate_private_key(ec.SECP256R1())
    verification = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registration-code")]))
                    .issuer_name(name).public_key(vkey.public_key()).serial_number(8)
                    .not_valid_before(now).not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem).decode(), verification.public_bytes(pem).decode()


def seed_plane(iot: Any) -> dict[str, Any]:
    region = iot.meta.region_name
    iot.create_role_alias(roleAlias="device-creds", roleArn=ROLE, credentialDurationSeconds=900)
    iot.create_role_alias(roleAlias="ops-creds", roleArn=ROLE)
    ca_pem, verification = _ca()
    ca = iot.register_ca_certificate(
        caCertificate=ca_pem, verificationCertificate=verification, setAsActive=True, allowAutoRegistration=True,
        registrationConfig={"templateBody": json.dumps({"Resources": {}}), "roleArn": ROLE})
    document = json.dumps({"operation": "ota", "files": [
        {"url": "arn:aws:s3:::fw-bucket/v2.bin", "signer": f"arn:aws:signer:{region}:123456789012:/p/x"}]})
    abort = {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 10.0,
                               "minNumberOfExecutedThings": 5}]}
    iot.create_job_template(jobTemplateId="ota-v2", description="firmware v2", document=document,
                            jobExecutionsRolloutConfig={"maximumPerMinute": 50}, abortConfig=abort,
                            timeoutConfig={"inProgressTimeoutInMinutes": 30})
    iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY_AND_SHADOW"},
                                      thingGroupIndexingConfiguration={"thingGroupIndexingMode": "ON"})
    iot.update_event_configurations(eventConfigurations={t: {"Enabled": True} for t in REQUIRED_EVENTS})
    return {"ca_id": ca["certificateId"], "ca_pem": ca_pem}


def _events(iot: Any) -> dict[str, bool]:
    return {t: c["Enabled"] for t, c in iot.describe_event_configurations()["eventConfigurations"].items()}


def test_sync_carries_the_plane_and_verify_sees_it(ctx: Any, iot: Any) -> None:
    src, dst = iot(SRC), iot(DST)
    seeded = seed_plane(src)
    before = verify_registry(ctx, SRC, DST, shadows=False)
    assert not before.equal
    assert before.kind("role_alias").only_in_from == 2
    assert before.kind("event_configurations").differ == 1  # registry events are off in a new region

    report = sync_registry(ctx, SRC, DST, rate=10_000, shadows=False)
    assert report.ok, report.errors
    assert report.counts["role_alias"] == {"create": 2}
    assert report.counts["ca_certificate"] == {"create": 1}
    alias = dst.describe_role_alias(roleAlias="device-creds")["roleAliasDescription"]
    assert (alias["roleArn"], alias["credentialDurationSeconds"]) == (ROLE, 900)
    ca = dst.describe_ca_certificate(certificateId=seeded["ca_id"])
    assert ca["certificateDescription"]["certificateMode"] == "SNI_ONLY"  # no CA key: no verification cert
    assert ca["certificateDescription"]["autoRegistrationStatus"] == "ENABLE"
    assert ca["certificateDescription"]["status"] == "ACTIVE"
    assert ca["registrationConfig"]["roleArn"] == ROLE
    tpl = dst.describe_job_template(jobTemplateId="ota-v2")
    assert f"arn:aws:signer:{DST}:" in tpl["document"] and SRC not in tpl["document"]
    assert tpl["abortConfig"]["criteriaList"][0]["thresholdPercentage"] == 10.0
    assert dst.get_indexing_configuration()["thingIndexingConfiguration"]["thingIndexingMode"] == \
        "REGISTRY_AND_SHADOW"
    assert all(_events(dst)[t] for t in REQUIRED_EVENTS)
    assert verify_registry(ctx, SRC, DST, shadows=False).equal

    again = sync_registry(ctx, SRC, DST, rate=10_000, shadows=False)
    assert again.ok and not any(k in again.counts for k in ("role_alias", "ca_certificate", "job_template"))


def test_changes_reach_the_destination_and_prune_is_guarded(ctx: Any, iot: Any) -> None:
    src, dst = iot(SRC), iot(DST)
    seeded = seed_plane(src)
    assert sync_registry(ctx, SRC, DST, rate=10_000, shadows=False).ok
    src.update_role_alias(roleAlias="device-creds", credentialDurationSeconds=1800)
    src.update_ca_certificate(certificateId=seeded["ca_id"], newStatus="INACTIVE",
                              newAutoRegistrationStatus="DISABLE")
    src.delete_job_template(jobTemplateId="ota-v2")
    src.delete_role_alias(roleAlias="ops-creds")
    diff = verify_registry(ctx, SRC, DST, shadows=False)
    assert diff.kind("role_alias").only_in_to == 1 and diff.kind("role_alias").differ == 1

    report = sync_registry(ctx, SRC, DST, rate=10_000, shadows=False)  # no --prune: nothing deleted
    assert report.ok
    assert dst.describe_role_alias(roleAlias="device-creds")["roleAliasDescription"]["credentialDurationSeconds"] \
        == 1800
    desc = dst.describe_ca_certificate(certificateId=seeded["ca_id"])["certificateDescription"]
    assert (desc["status"], desc["autoRegistrationStatus"]) == ("INACTIVE", "DISABLE")
    assert "ops-creds" in dst.list_role_aliases()["roleAliases"]

    with pytest.raises(GuardRefused):  # --prune with no confirmation: refused before anything goes
        sync_registry(ctx, SRC, DST, rate=10_000, shadows=False, prune=True)
    assert "ops-creds" in dst.list_role_aliases()["roleAliases"]
    asked: list[str] = []
    guard = PruneGuard(confirm=lambda question, typed: asked.append(question))
    from orchestrator.registry.guards import DeleteBudget

    pruned = sync_registry(ctx, SRC, DST, rate=10_000, shadows=False, prune=True,
                           guard=PruneGuard(confirm=guard.confirm, budget=DeleteBudget(count=5)))
    assert pruned.ok, pruned.errors
    assert "ops-creds" not in dst.list_role_aliases()["roleAliases"]
    assert dst.list_job_templates()["jobTemplates"] == []
    assert any("plane objects" in q for q in asked)


def test_backup_and_restore_carry_the_plane(ctx: Any, iot: Any, tmp_path: Any, signing_key: str) -> None:
    src, third = iot(SRC), iot(THIRD)
    seeded = seed_plane(src)
    result = backup_region(ctx, "dev", SRC, tmp_path, shadows=False)
    assert "plane.json" in result.manifest.files
    report = restore_registry(ctx, tmp_path, THIRD, env="dev", region=SRC, rate=10_000, shadows=False)
    assert report.ok, report.errors
    assert sorted(third.list_role_aliases()["roleAliases"]) == ["device-creds", "ops-creds"]
    assert third.describe_ca_certificate(certificateId=seeded["ca_id"])["certificateDescription"][
        "certificateMode"] == "SNI_ONLY"
    assert f"arn:aws:signer:{THIRD}:" in third.describe_job_template(jobTemplateId="ota-v2")["document"]
    assert all(_events(third)[t] for t in REQUIRED_EVENTS)
    # additive: a role alias the region has since changed is left as it is
    third.update_role_alias(roleAlias="device-creds", credentialDurationSeconds=3000)
    assert restore_registry(ctx, tmp_path, THIRD, env="dev", region=SRC, rate=10_000, shadows=False).ok
    assert third.describe_role_alias(roleAlias="device-creds")["roleAliasDescription"][
        "credentialDurationSeconds"] == 3000


def test_a_changed_plane_file_is_refused_before_anything_is_restored(ctx: Any, iot: Any, tmp_path: Any,
                                                                     signing_key: str) -> None:
    seed_plane(iot(SRC))
    result = backup_region(ctx, "dev", SRC, tmp_path, shadows=False)
    path = next(tmp_path.rglob("plane.json"))
    data = json.loads(path.read_text())
    data["items"]["role_alias"]["device-creds"]["roleArn"] = "arn:aws:iam::999999999999:role/attacker"
    path.write_text(json.dumps(data))
    from orchestrator.errors import InputRejected

    with pytest.raises(InputRejected, match="plane.json"):
        restore_registry(ctx, result.location, THIRD, rate=10_000, shadows=False)
    assert iot(THIRD).list_role_aliases()["roleAliases"] == []
    assert iot(THIRD).list_things()["things"] == []


def test_strict_world_refuses_what_aws_refuses(iot: Any) -> None:
    src = iot(SRC)
    ca_pem, verification = _ca()
    with pytest.raises(ClientError, match="verificationCertificate"):  # DEFAULT mode needs one
        src.register_ca_certificate(caCertificate=ca_pem)
    with pytest.raises(ClientError, match="verificationCertificate"):  # SNI_ONLY must not have one
        src.register_ca_certificate(caCertificate=ca_pem, verificationCertificate=verification,
                                    certificateMode="SNI_ONLY")
    src.register_ca_certificate(caCertificate=ca_pem, certificateMode="SNI_ONLY")
    with pytest.raises(ClientError) as again:
        src.register_ca_certificate(caCertificate=ca_pem, certificateMode="SNI_ONLY")
    assert again.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as bad:
        src.update_event_configurations(eventConfigurations={"NOT_A_TYPE": {"Enabled": True}})
    assert bad.value.response["Error"]["Code"] == "InvalidRequestException"
    assert not any(_events(src).values())  # a new region: every registry event off


# -- provisioning templates and custom authorizers (the local world adds them: moto has neither) ----

def _function(ctx: Any, region: str, name: str) -> str:
    """A Lambda function in `region` (each region's stack deploys its own copy)."""
    import io
    import zipfile

    from orchestrator.aws import client

    iam = client(ctx, "iam", region)
    try:
        role = iam.get_role(RoleName="hook-role")["Role"]["Arn"]
    except ClientError:
        role = iam.create_role(RoleName="hook-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                   "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", "def h(event, context):\n    return {'allowProvisioning': True}\n")
    made = client(ctx, "lambda", region).create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="h.h", Code={"ZipFile": buf.getvalue()})
    return str(made["FunctionArn"])


def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _body(region: str, version: int) -> str:
    statement = {"Effect": "Allow", "Action": "iot:Connect",
                 "Resource": f"arn:aws:iot:{region}:123456789012:client/v{version}"}
    return json.dumps({"Parameters": {"SerialNumber": {"Type": "String"}}, "Resources": {"policy": {
        "Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": json.dumps({
            "Version": "2012-10-17", "Statement": [statement]})}}}})


def seed_provisioning(ctx: Any, iot: Any) -> None:
    region = iot.meta.region_name
    hook = _function(ctx, region, "provision-hook")
    auth_fn = _function(ctx, region, "token-authorizer")
    iot.create_provisioning_template(templateName="fleet-claim", description="claim certificates",
                                     templateBody=_body(region, 1), enabled=True, provisioningRoleArn=ROLE,
                                     preProvisioningHook={"targetArn": hook, "payloadVersion": "2020-04-01"})
    iot.create_provisioning_template_version(templateName="fleet-claim", templateBody=_body(region, 2),
                                             setAsDefault=True)
    iot.create_authorizer(authorizerName="token-auth", authorizerFunctionArn=auth_fn, tokenKeyName="x-token",
                          tokenSigningPublicKeys={"k1": _public_key()}, status="ACTIVE")


def test_provisioning_templates_and_authorizers_are_carried_with_their_functions_region(
        ctx: Any, iot: Any) -> None:
    src, dst = iot(SRC), iot(DST)
    seed_provisioning(ctx, src)
    _function(ctx, DST, "provision-hook")
    _function(ctx, DST, "token-authorizer")
    report = sync_registry(ctx, SRC, DST, rate=10_000, shadows=False)
    assert report.ok, report.errors
    tpl = dst.describe_provisioning_template(templateName="fleet-claim")
    assert tpl["preProvisioningHook"]["targetArn"] == f"arn:aws:lambda:{DST}:123456789012:function:provision-hook"
    assert "client/v2" in tpl["templateBody"] and f"arn:aws:iot:{DST}:" in tpl["templateBody"]  # the default version
    assert tpl["enabled"] is True and tpl["provisioningRoleArn"] == ROLE
    auth = dst.describe_authorizer(authorizerName="token-auth")["authorizerDescription"]
    assert auth["authorizerFunctionArn"] == f"arn:aws:lambda:{DST}:123456789012:function:token-authorizer"
    assert auth["tokenSigningPublicKeys"] == src.describe_authorizer(
        authorizerName="token-auth")["authorizerDescription"]["tokenSigningPublicKeys"]
    assert verify_registry(ctx, SRC, DST, shadows=False).equal

    # a new default version in the source becomes a new default version there
    src.create_provisioning_template_version(templateName="fleet-claim", templateBody=_body(SRC, 3), setAsDefault=True)
    src.update_authorizer(authorizerName="token-auth", tokenSigningPublicKeys={"k1": _public_key(),
                                                                               "k2": _public_key()})
    assert verify_registry(ctx, SRC, DST, shadows=False).kind("provisioning_template").differ == 1
    assert sync_registry(ctx, SRC, DST, rate=10_000, shadows=False).ok
    assert "client/v3" in dst.describe_provisioning_template(templateName="fleet-claim")["templateBody"]
    versions = dst.list_provisioning_template_versions(templateName="fleet-claim")["versions"]
    assert [v["isDefaultVersion"] for v in versions] == [False, True]
    assert len(dst.describe_authorizer(authorizerName="token-auth")["authorizerDescription"][
        "tokenSigningPublicKeys"]) == 2
    assert verify_registry(ctx, SRC, DST, shadows=False).equal


def test_a_hook_or_authorizer_function_missing_in_the_destination_is_an_error_named(ctx: Any, iot: Any) -> None:
    seed_provisioning(ctx, iot(SRC))
    report = sync_registry(ctx, SRC, THIRD, rate=10_000, shadows=False)
    assert not report.ok
    failed = {e.op: e.message for e in report.errors}
    assert "provision-hook" in failed["create provisioning_template fleet-claim"]
    assert "token-authorizer" in failed["create authorizer token-auth"]
    assert iot(THIRD).list_provisioning_templates()["templates"] == []


def test_strict_world_provisioning_and_authorizer_rules(ctx: Any, iot: Any) -> None:
    src = iot(SRC)
    seed_provisioning(ctx, src)

    def code(call: Any, **kw: Any) -> str:
        with pytest.raises(ClientError) as err:
            call(**kw)
        return str(err.value.response["Error"]["Code"])

    assert code(src.create_provisioning_template, templateName="bad name!", templateBody="{}",
                provisioningRoleArn=ROLE) == "InvalidRequestException"
    assert code(src.create_provisioning_template, templateName="t2", templateBody="{}", provisioningRoleArn=ROLE,
                preProvisioningHook={"targetArn": f"arn:aws:lambda:{SRC}:123456789012:function:nope"}) \
        == "InvalidRequestException"
    assert code(src.delete_provisioning_template_version, templateName="fleet-claim", versionId=2) \
        == "DeleteConflictException"
    for v in range(3, 6):
        src.create_provisioning_template_version(templateName="fleet-claim", templateBody=_body(SRC, v))
    assert code(src.create_provisioning_template_version, templateName="fleet-claim", templateBody="{}") \
        == "VersionsLimitExceededException"
    fn = f"arn:aws:lambda:{SRC}:123456789012:function:token-authorizer"
    assert code(src.create_authorizer, authorizerName="a2", authorizerFunctionArn=fn, tokenKeyName="t",
                tokenSigningPublicKeys={f"k{i}": _public_key() for i in range(3)}) == "InvalidRequestException"
    assert code(src.create_authorizer, authorizerName="a3", authorizerFunctionArn=fn.replace(SRC, DST),
                tokenKeyName="t", tokenSigningPublicKeys={"k": _public_key()}) == "InvalidRequestException"
    assert code(src.delete_authorizer, authorizerName="token-auth") == "DeleteConflictException"
