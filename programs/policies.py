"""IAM and IoT policy documents as plain data: pure functions of concrete ARNs, no Pulumi import.

The components call these inside `Output.apply`, the tests call them directly, and every
document names exactly the resources it needs: no `*` resource, no `service:*` action. Region
never appears in a document unless it is part of an ARN a resource reported about itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

Document = dict[str, Any]

# Topic layout devices use: buildings/<thing name>/<leaf>, e.g. buildings/hq-thermostat-7/telemetry.
TOPIC_ROOT = "buildings"
TELEMETRY_TOPIC_FILTER = f"{TOPIC_ROOT}/+/telemetry"
THING_NAME = "${iot:Connection.Thing.ThingName}"


def dumps(document: Document) -> str:
    """Canonical JSON (sorted keys) so the same inputs give byte-identical policies, no diff noise."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _doc(*statements: Document) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def device_policy(partition: str = "aws") -> Document:
    """What one device may do, identical in every region and account.

    `*` stands for region and account in every ARN: a literal region would silently deny devices
    once they fail over to another region. A device connects only with its own thing name as
    client id, and only while its certificate is attached to that thing, and publishes,
    subscribes and receives only below `buildings/<its thing name>/`.
    """
    iot = f"arn:{partition}:iot:*:*"
    own_topics = f"{TOPIC_ROOT}/{THING_NAME}/*"
    return _doc(
        {
            "Sid": "ConnectAsOwnThing",
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{iot}:client/{THING_NAME}",
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        },
        {
            "Sid": "PublishAndReceiveOwnTopics",
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": f"{iot}:topic/{own_topics}",
        },
        {
            "Sid": "SubscribeOwnTopics",
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": f"{iot}:topicfilter/{own_topics}",
        },
    )


def service_trust(service: str, account_id: str, *, condition_key: str = "aws:SourceAccount") -> Document:
    """Trust policy letting one AWS service assume a role, only on behalf of our own account.

    IoT rules honour `aws:SourceAccount`; Firehose documents `sts:ExternalId` set to the account.
    """
    return _doc({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {condition_key: account_id}},
    })


def kinesis_put(stream_arn: str) -> Document:
    """The IoT rule's role: put records into exactly one stream."""
    return _doc({
        "Effect": "Allow",
        "Action": ["kinesis:PutRecord", "kinesis:PutRecords"],
        "Resource": stream_arn,
    })


def s3_put_under(bucket_arn: str, prefix: str) -> Document:
    """Write objects below one key prefix of one bucket (the rule's error action)."""
    return _doc({
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": f"{bucket_arn}/{prefix.strip('/')}/*",
    })


def firehose_delivery(stream_arn: str, bucket_arn: str) -> Document:
    """Firehose reads one Kinesis stream and writes one bucket."""
    return _doc(
        {
            "Sid": "ReadSourceStream",
            "Effect": "Allow",
            "Action": ["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords",
                       "kinesis:ListShards"],
            "Resource": stream_arn,
        },
        {
            "Sid": "WriteLake",
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject",
                       "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject"],
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
        },
    )


def deny_insecure_transport(bucket_arn: str) -> Document:
    return _doc({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })


def s3_replication(source_bucket_arn: str, destination_bucket_arns: Sequence[str]) -> Document:
    """S3 replication role: read versions of the source bucket, write replicas to the destinations.

    Names exactly the source bucket (and its objects) and each destination's objects.
    """
    return _doc(
        {
            "Sid": "ReadSourceConfiguration",
            "Effect": "Allow",
            "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
            "Resource": source_bucket_arn,
        },
        {
            "Sid": "ReadSourceVersions",
            "Effect": "Allow",
            "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl",
                       "s3:GetObjectVersionTagging"],
            "Resource": f"{source_bucket_arn}/*",
        },
        {
            "Sid": "WriteReplicas",
            "Effect": "Allow",
            "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
            "Resource": [f"{arn}/*" for arn in destination_bucket_arns],
        },
    )


def s3_replication_trust(account_id: str, source_bucket_arn: str) -> Document:
    return _doc({
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account_id},
            "ArnLike": {"aws:SourceArn": source_bucket_arn},
        },
    })


def dynamodb_put(table_arn: str) -> Document:
    """The registry-events rule: put items into exactly one table."""
    return _doc({"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": table_arn})


def resources_of(document: Document) -> list[str]:
    """Every Resource named by a document, flattened (used by tests and reviews)."""
    found: list[str] = []
    for statement in document["Statement"]:
        value = statement.get("Resource", [])
        found.extend([value] if isinstance(value, str) else value)
    return found


def actions_of(document: Document) -> list[str]:
    found: list[str] = []
    for statement in document["Statement"]:
        value: Iterable[str] | str = statement.get("Action", [])
        found.extend([value] if isinstance(value, str) else value)
    return found
