"""The device-management plane (role aliases, CAs, job templates, indexing, registry events) carried by
`registry sync`, compared by `registry verify`, and kept by backup/restore, against moto with the
calls it lacks added (orchestrator/drill/iot_plane.py), behind the strict gate."""

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
