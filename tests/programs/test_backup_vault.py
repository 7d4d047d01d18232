"""The home region's stack keeps the backup vault in the backup region: hardened and time-limited."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from programs.contract import BACKUP_OUTPUT
from programs.mocks import evaluate
from tests.programs.conftest import PRIMARY, SECONDARY, region_args


def vault_eval():  # noqa: ANN201
    return evaluate(replace(region_args(PRIMARY), backup_region=SECONDARY), stack="dev-region-eu-west-1")


def by_name(ev, name: str):  # noqa: ANN001, ANN201
    return next(r for r in ev.resources if r.name == name)


@pytest.mark.slow
def test_vault_lives_in_the_backup_region_and_is_protected() -> None:
    ev = vault_eval()
    bucket = by_name(ev, "iot-dev-eu-west-1-backups")
    assert bucket.type == "aws:s3/bucket:Bucket" and bucket.protect
    assert bucket.inputs["region"] == SECONDARY
    assert ev.outputs[BACKUP_OUTPUT].startswith("iot-dev-backups-")


def test_vault_is_hardened_like_the_lake() -> None:
    ev = vault_eval()
    block = by_name(ev, "iot-dev-eu-west-1-backups-public-access")
    assert all(block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                         "restrictPublicBuckets"))
    assert by_name(ev, "iot-dev-eu-west-1-backups-versioning").inputs["versioningConfiguration"] == \
        {"status": "Enabled"}
    sse = by_name(ev, "iot-dev-eu-west-1-backups-encryption").inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"


def test_vault_retention_expires_backups() -> None:
    rule = by_name(vault_eval(), "iot-dev-eu-west-1-backups-retention").inputs["rules"][0]
    assert rule["expiration"] == {"days": 35} and rule["status"] == "Enabled"


def test_no_vault_without_a_backup_region() -> None:
    ev = evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    assert not [r for r in ev.resources if "backups" in r.name]
    assert BACKUP_OUTPUT not in ev.outputs


@pytest.mark.slow
def test_only_the_home_region_gets_the_vault() -> None:
    from pathlib import Path

    from orchestrator.stacks import wiring
    from orchestrator.topology import load

    topo = load(Path(__file__).resolve().parents[2] / "stacks" / "dev.topology.yaml")
    assert topo.backup_region == SECONDARY
    topo = topo.with_secondary(SECONDARY)
    assert wiring.region_args(topo, PRIMARY).backup_region == SECONDARY
    assert wiring.region_args(topo, SECONDARY).backup_region == ""


@pytest.mark.slow
def test_backup_manifests_are_signed_with_a_key_beside_the_vault() -> None:
    """An asymmetric SIGN_VERIFY key in the backup region (writers of the bucket cannot sign; a
    restore during the primary's outage still verifies), protected, exported as the signing spec."""
    from programs.contract import SIGNING_KEY_OUTPUT

    ev = vault_eval()
    key = by_name(ev, "iot-dev-eu-west-1-backup-signing")
    assert key.type == "aws:kms/key:Key" and key.protect
    assert (key.inputs["keyUsage"], key.inputs["customerMasterKeySpec"]) == ("SIGN_VERIFY", "ECC_NIST_P256")
    assert key.inputs["region"] == SECONDARY and "enableKeyRotation" not in key.inputs
    alias = by_name(ev, "iot-dev-eu-west-1-backup-signing-alias")
    assert alias.inputs["name"] == "alias/iot-dev-backup-signing" and alias.inputs["region"] == SECONDARY
    spec = ev.outputs[SIGNING_KEY_OUTPUT]
    assert spec.startswith(f"awskms:arn:aws:kms:{SECONDARY}:") and ":key/" in spec
    plain = evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    assert SIGNING_KEY_OUTPUT not in plain.outputs
    assert not [r for r in plain.resources if r.type.startswith("aws:kms/")]


@pytest.mark.slow
def test_vault_locks_every_backup_for_as_long_as_it_is_kept() -> None:
    """Object Lock (governance) through its own resource, after versioning: enabling it on an
    existing vault must not replace the bucket; a lock longer than the retention would keep
    versions the lifecycle rule expires."""
    from programs.region import BACKUP_RETENTION_DAYS

    ev = vault_eval()
    lock = by_name(ev, "iot-dev-eu-west-1-backups-lock")
    assert lock.type == "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
    assert lock.inputs["objectLockEnabled"] == "Enabled" and lock.inputs["region"] == SECONDARY
    retention = lock.inputs["rule"]["defaultRetention"]
    assert retention["mode"] == "GOVERNANCE"
    assert 0 < retention["days"] <= BACKUP_RETENTION_DAYS
    rule = by_name(ev, "iot-dev-eu-west-1-backups-retention").inputs["rules"][0]
    assert retention["days"] <= rule["expiration"]["days"]
    bucket = by_name(ev, "iot-dev-eu-west-1-backups")
    assert "objectLockEnabled" not in bucket.inputs  # create-time only: would replace the vault


def test_only_the_backup_role_may_sign_with_the_key() -> None:
    """The key's own policy: kms:Sign only for the backup job's role (by aws:PrincipalArn), the
    account keeps administering it (never unmanageable) and may verify; nobody gets kms:*."""
    from programs.mocks import ACCOUNT_ID

    key = by_name(vault_eval(), "iot-dev-eu-west-1-backup-signing")
    doc = json.loads(key.inputs["policy"])
    root = f"arn:aws:iam::{ACCOUNT_ID}:root"
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert all(s["Effect"] == "Allow" and s["Principal"] == {"AWS": root} for s in doc["Statement"])
    signers = [s for s in doc["Statement"] if "kms:Sign" in s["Action"] or "kms:*" in s["Action"]]
    assert [s["Sid"] for s in signers] == ["BackupRoleSigns"]
    assert signers[0]["Condition"] == {"ArnEquals": {"aws:PrincipalArn": [
        f"arn:aws:iam::{ACCOUNT_ID}:role/iot-dev-backup"]}}
    admin = set(by_sid["AccountAdministersTheKey"]["Action"])
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"} <= admin
    assert not any(a in admin for a in ("kms:Sign", "kms:*"))
    assert "kms:Verify" in by_sid["AccountVerifies"]["Action"]
    assert "kms:Sign" not in by_sid["AccountVerifies"]["Action"]
