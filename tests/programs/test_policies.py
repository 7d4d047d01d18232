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


def _allowed(doc: dict, action: str, resource: str, thing: str) -> bool:
    """IoT Core's evaluation of an Allow-only policy for a device connected as `thing`: the policy
    variable is replaced, `*` matches any characters (`/` included), `?` one."""
    import fnmatch

    for statement in doc["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if statement["Effect"] != "Allow" or action not in actions:
            continue
        for pattern in resources:
            pattern = pattern.replace(policies.THING_NAME, thing).replace("[", "[[]")
            if fnmatch.fnmatchcase(resource, pattern):
                return True
    return False


ARN = "arn:aws:iot:eu-central-1:123456789012"
OWN, OTHER = "dev-0001", "dev-0002"
CLASSIC, NAMED = "$aws/things/{}/shadow", "$aws/things/{}/shadow/name/config"


def test_a_device_uses_its_own_classic_and_named_shadows() -> None:
    doc = policies.device_policy()
    for root in (CLASSIC.format(OWN), NAMED.format(OWN)):
        for op in ("get", "update", "delete"):
            assert _allowed(doc, "iot:Publish", f"{ARN}:topic/{root}/{op}", OWN), (root, op)
        for leaf in ("get/accepted", "get/rejected", "update/accepted", "update/rejected", "update/delta",
                     "update/documents", "delete/accepted", "delete/rejected"):
            assert _allowed(doc, "iot:Subscribe", f"{ARN}:topicfilter/{root}/{leaf}", OWN), (root, leaf)
            assert _allowed(doc, "iot:Receive", f"{ARN}:topic/{root}/{leaf}", OWN), (root, leaf)
            # answers are the service's to send: the device cannot publish a forged one
            assert not _allowed(doc, "iot:Publish", f"{ARN}:topic/{root}/{leaf}", OWN), (root, leaf)


def test_a_device_uses_nothing_of_another_things_shadows() -> None:
    doc = policies.device_policy()
    for root in (CLASSIC.format(OTHER), NAMED.format(OTHER)):
        for leaf in ("get", "update", "delete", "get/accepted", "update/delta", "update/documents"):
            for action, kind in (("iot:Publish", "topic"), ("iot:Receive", "topic"), ("iot:Subscribe", "topicfilter")):
                assert not _allowed(doc, action, f"{ARN}:{kind}/{root}/{leaf}", OWN), (action, root, leaf)
    # a wildcard filter over every thing's shadows is not the device's own either
    for wild in ("$aws/things/+/shadow/update/delta", "$aws/things/#", f"$aws/things/{OWN}-x/shadow/get/accepted"):
        assert not _allowed(doc, "iot:Subscribe", f"{ARN}:topicfilter/{wild}", OWN), wild


def test_the_drill_devices_shadow_topics_are_allowed() -> None:
    """orchestrator/drill/world/fleet.py: a device gets its classic shadow on connect and reports to it,
    listening to get/accepted, get/rejected, update/accepted and update/delta."""
    doc = policies.device_policy()
    base = f"$aws/things/{OWN}/shadow"
    for topic in (f"{base}/get", f"{base}/update"):
        assert _allowed(doc, "iot:Publish", f"{ARN}:topic/{topic}", OWN)
    for topic in (f"{base}/get/accepted", f"{base}/get/rejected", f"{base}/update/accepted", f"{base}/update/delta"):
        assert _allowed(doc, "iot:Subscribe", f"{ARN}:topicfilter/{topic}", OWN)
        assert _allowed(doc, "iot:Receive", f"{ARN}:topic/{topic}", OWN)


def test_the_matcher_is_strict_enough_to_fail() -> None:
    """The previous policy (telemetry topics only) gave no shadow access: the matcher says so."""
    old = {"Statement": [s for s in policies.device_policy()["Statement"] if "Shadow" not in s["Sid"]]}
    assert not _allowed(old, "iot:Publish", f"{ARN}:topic/$aws/things/{OWN}/shadow/update", OWN)
    assert _allowed(old, "iot:Publish", f"{ARN}:topic/buildings/{OWN}/telemetry", OWN)
    assert not _allowed(old, "iot:Publish", f"{ARN}:topic/buildings/{OTHER}/telemetry", OWN)
