"""Policy documents as plain data (`programs.policies`)."""

from __future__ import annotations

import json

from programs import policies


def test_device_policy_follows_the_partition_and_never_names_region_or_account() -> None:
    for partition in ("aws", "aws-cn"):
        doc = policies.device_policy(partition)
        for arn in policies.resources_of(doc):
            assert arn.startswith(f"arn:{partition}:iot:*:*:"), arn


def test_documents_are_canonical_json() -> None:
    doc = policies.kinesis_put("arn:aws:kinesis:eu-west-1:123456789012:stream/s")
    text = policies.dumps(doc)
    assert text == policies.dumps(json.loads(text))  # stable: no spurious policy diffs
    assert " " not in text.replace("2012-10-17", "")


def test_replication_policy_writes_only_to_the_destinations_objects() -> None:
    doc = policies.s3_replication("arn:aws:s3:::src", ["arn:aws:s3:::a", "arn:aws:s3:::b"])
    write = next(s for s in doc["Statement"] if s["Sid"] == "WriteReplicas")
    assert write["Resource"] == ["arn:aws:s3:::a/*", "arn:aws:s3:::b/*"]
    assert "s3:ReplicateObject" in write["Action"]


def test_error_prefix_policy_is_limited_to_the_prefix() -> None:
    doc = policies.s3_put_under("arn:aws:s3:::lake", "/errors/iot-rule/")
    assert policies.resources_of(doc) == ["arn:aws:s3:::lake/errors/iot-rule/*"]
