"""IAM and IoT policy documents as plain data: pure functions of concrete ARNs, no Pulumi import.

The components call these inside `Output.apply`, the tests call them directly, and every
document names exactly the resources it needs: no `*` resource, no `service:*` action. Region
never appears in a document unless it is part of an ARN a resource reported about itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Document = dict[str, Any]

# Topic layout devices use: buildings/<thing name>/<leaf>, e.g. buildings/hq-thermostat-7/telemetry.
TOPIC_ROOT = "buildings"
TELEMETRY_TOPIC_FILTER = f"{TOPIC_ROOT}/+/telemetry"
THING_NAME = "${iot:Connection.Thing.ThingName}"
# The command outbox's topics (orchestrator.registry.outbox.COMMAND_PREFIX and ACK_PREFIX; a test
# keeps them equal): commands under cmd/<thing>, acknowledgements on cmd/ack/<thing>
OUTBOX_COMMANDS = "cmd/"
OUTBOX_ACKS = "cmd/ack/"


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
    subscribes and receives only below `buildings/<its thing name>/`, receives the command outbox's
    commands on `cmd/<its thing name>` (and below) and acknowledges them on `cmd/ack/<its thing
    name>` (docs/devices.md; never another's acknowledgements, whatever its name), and uses its own classic
    and named shadows (requests: get, update, delete; the service's accepted, rejected, delta
    and documents answers), never another thing's: after a failover it reads and reports its
    shadow in the region it reconnected to, as in the one it left.
    """
    iot = f"arn:{partition}:iot:*:*"
    own = f"{TOPIC_ROOT}/{THING_NAME}/*"
    shadow = f"$aws/things/{THING_NAME}/shadow/"
    cmd, ack = f"{OUTBOX_COMMANDS}{THING_NAME}", OUTBOX_ACKS  # orchestrator.registry.outbox's prefixes
    # IoT Core refuses a policy document over 2,048 characters, whitespace excluded (CreatePolicy,
    # policyDocument: "maximum length of 2048, excluding whitespace"; DEVICE_POLICY_LIMIT): hence one
    # statement per action, and each shadow request as one pattern over the classic and the named
    # shadows (`shadow/*get` is `shadow/get` and `shadow/name/<name>/get`; no answer topic ends so).
    return _doc(
        {
            "Sid": "ConnectAsOwnThing",
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{iot}:client/{THING_NAME}",
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        },
        {
            "Sid": "Publish",
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": [f"{iot}:topic/{own}", f"{iot}:topic/{ack}{THING_NAME}"],
        },
        {
            "Sid": "ShadowRequests",
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": [f"{iot}:topic/{shadow}*{op}" for op in SHADOW_REQUESTS],
        },
        {
            "Sid": "Subscribe",
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": [f"{iot}:topicfilter/{t}" for t in (own, cmd, f"{cmd}/*", f"{shadow}*")],
        },
        {
            "Sid": "Receive",
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": [f"{iot}:topic/{t}" for t in (own, cmd, f"{cmd}/*", f"{shadow}*")],
        },
        {
            # a thing named `ack` would otherwise read every device's acknowledgements
            "Sid": "NoOneElsesAcknowledgements",
            "Effect": "Deny",
            "Action": ["iot:Subscribe", "iot:Receive"],
            "Resource": [f"{iot}:topicfilter/{ack}*", f"{iot}:topic/{ack}*"],
        },
    )


# CreatePolicy / CreatePolicyVersion: "policyDocument must have a minimum length of 1, with a
# maximum length of 2048, excluding whitespace" (AWS IoT API reference).
DEVICE_POLICY_LIMIT = 2048


def iot_policy_size(document: str | Mapping[str, Any]) -> int:
    """A policy document's size as IoT Core counts it: characters, whitespace excluded."""
    text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
    return sum(1 for c in text if not c.isspace())


# The device shadow MQTT API: a device publishes requests and receives the service's responses on
# reserved topics below $aws/things/<thing>/shadow (classic) and .../shadow/name/<name> (named).
SHADOW_REQUESTS = ("get", "update", "delete")
SHADOW_RESPONSES = ("get/accepted", "get/rejected", "update/accepted", "update/rejected", "update/delta",
                    "update/documents", "delete/accepted", "delete/rejected")


def _shadow_roots(thing: str) -> tuple[str, str]:
    """The classic shadow's topic root and the named shadows' (`*`: any shadow name, which cannot
    hold a `/`), both below the one thing."""
    return f"$aws/things/{thing}/shadow", f"$aws/things/{thing}/shadow/name/*"


def shadow_request_topics(thing: str = THING_NAME) -> list[str]:
    """The topics a device publishes shadow requests to (its own thing's shadows only)."""
    return [f"{root}/{op}" for root in _shadow_roots(thing) for op in SHADOW_REQUESTS]


def shadow_response_topics(thing: str = THING_NAME) -> list[str]:
    """The topics (and, for Subscribe, topic filters) of the shadow service's answers to one thing."""
    return [f"{root}/{leaf}" for root in _shadow_roots(thing) for leaf in SHADOW_RESPONSES]


# What the account keeps on the backup signing key (through IAM): managing it, never using it.
KEY_ADMINISTRATION = (
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:DeleteAlias", "kms:DescribeKey",
    "kms:DisableKey", "kms:EnableKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListAliases",
    "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:RetireGrant",
    "kms:RevokeGrant", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource",
    "kms:UpdateAlias", "kms:UpdateKeyDescription",
)
# Verifying proves nothing an attacker could use: whoever restores (or runs `status`) may do it.
KEY_VERIFY = ("kms:DescribeKey", "kms:GetPublicKey", "kms:Verify")


def backup_role_name(env: str) -> str:
    """The role the backup job runs as (the workflow's AWS_BACKUP_ROLE_ARN): the only signer."""
    return f"iot-{env}-backup"


def backup_signing_key_policy(account_id: str, signer_role_arns: Sequence[str], partition: str = "aws",
                              ) -> Document:
    """The key policy of the backup signing key: `kms:Sign` only for the backup role(s), verify for
    the account's principals that IAM allows, administration for the account (so the key is never
    unmanageable) but not signing. The default key policy (`kms:*` for the account, then IAM)
    would let any principal with `kms:Sign` on `*` forge a backup.

    The roles are named by `aws:PrincipalArn` (the role ARN of a role session), not as principals:
    KMS refuses a key policy naming a role that does not exist yet, and the job's role may be
    created after the key. The account principal delegates to IAM: the role also needs `kms:Sign`
    in its own policy; a principal whose IAM policy allows `kms:Sign` on `*` is still refused."""
    root = {"AWS": f"arn:{partition}:iam::{account_id}:root"}
    return _doc(
        {"Sid": "AccountAdministersTheKey", "Effect": "Allow", "Principal": root,
         "Action": list(KEY_ADMINISTRATION), "Resource": "*"},
        {"Sid": "BackupRoleSigns", "Effect": "Allow", "Principal": root,
         "Action": ["kms:DescribeKey", "kms:Sign"], "Resource": "*",
         "Condition": {"ArnEquals": {"aws:PrincipalArn": list(signer_role_arns)}}},
        {"Sid": "AccountVerifies", "Effect": "Allow", "Principal": root, "Action": list(KEY_VERIFY),
         "Resource": "*"},
    )


def shadow_key_policy(account_id: str, replicator_role_arns: Sequence[str], partition: str = "aws") -> Document:
    """The key policy of the HMAC key that signs replica shadow writes (and of its replicas): MACs
    only for the replication functions' roles, administration (and replication to new regions) for
    the account. With the default key policy any principal allowed `kms:GenerateMac` on `*` could
    sign a token that hides a shadow update from replication."""
    root = {"AWS": f"arn:{partition}:iam::{account_id}:root"}
    return _doc(
        {"Sid": "AccountAdministersTheKey", "Effect": "Allow", "Principal": root,
         "Action": [*KEY_ADMINISTRATION, "kms:ReplicateKey", "kms:UpdatePrimaryRegion"], "Resource": "*"},
        {"Sid": "ReplicatorsSignAndVerify", "Effect": "Allow", "Principal": root,
         "Action": ["kms:GenerateMac", "kms:VerifyMac"], "Resource": "*",
         "Condition": {"ArnEquals": {"aws:PrincipalArn": sorted(replicator_role_arns)}}},
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


def lambda_trust() -> Document:
    """A function's execution role. Lambda assumes it for the function's own account only (a
    function can use only roles of its account), so no source condition is added: Lambda does not
    send `aws:SourceAccount` when it assumes an execution role."""
    return _doc({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})


# What the replication function calls: writes (and reads) in its own region, reads in the source
# regions (certificate catch-up), listings for the daily reconciliation.
REPLICATOR_IOT_WRITE = (
    "iot:CreateThing", "iot:UpdateThing", "iot:DeleteThing", "iot:DescribeThing",
    "iot:CreateThingType", "iot:DeprecateThingType", "iot:DeleteThingType", "iot:DescribeThingType",
    "iot:CreateThingGroup", "iot:UpdateThingGroup", "iot:DeleteThingGroup", "iot:DescribeThingGroup",
    "iot:AddThingToThingGroup", "iot:RemoveThingFromThingGroup", "iot:ListThingGroupsForThing",
    "iot:ListThingPrincipals", "iot:AttachThingPrincipal", "iot:DetachThingPrincipal",
    "iot:RegisterCertificateWithoutCA", "iot:DescribeCertificate", "iot:UpdateCertificate",
    "iot:CreatePolicy", "iot:CreatePolicyVersion", "iot:GetPolicy", "iot:ListPolicyVersions",
    "iot:DeletePolicyVersion", "iot:AttachPolicy", "iot:ListAttachedPolicies",
    "iot:GetThingShadow", "iot:UpdateThingShadow",
    "iot:CreateDynamicThingGroup", "iot:UpdateDynamicThingGroup", "iot:DeleteDynamicThingGroup",
)
REPLICATOR_IOT_READ = (
    "iot:DescribeThing", "iot:DescribeThingType", "iot:DescribeThingGroup", "iot:ListThingPrincipals",
    "iot:DescribeCertificate", "iot:ListAttachedPolicies", "iot:GetPolicy", "iot:ListThingGroupsForThing",
)
# list calls without resource-level permissions: Resource "*", limited to the regions involved
REPLICATOR_IOT_LIST = (
    "iot:ListThings", "iot:ListThingTypes", "iot:ListThingGroups", "iot:ListPolicies", "iot:ListCertificates",
    "iot:ListTargetsForPolicy", "iot:ListThingsInThingGroup", "iot:DescribeEndpoint", "iot:GetIndexingConfiguration",
)
# the device-management plane the daily reconciliation carries (orchestrator/registry/plane.py via
# replicate.reconcile_plane, never pruning): reads in every region involved, writes in its own; a
# changed job template, authorizer mode or template type is replaced (delete, then create)
REPLICATOR_PLANE_READ = (
    "iot:DescribeRoleAlias", "iot:DescribeCACertificate", "iot:DescribeJobTemplate",
    "iot:DescribeProvisioningTemplate", "iot:ListProvisioningTemplateVersions", "iot:DescribeAuthorizer",
)
REPLICATOR_PLANE_LIST = (
    "iot:ListRoleAliases", "iot:ListCACertificates", "iot:ListJobTemplates", "iot:ListProvisioningTemplates",
    "iot:ListAuthorizers", "iot:DescribeEventConfigurations",
)
REPLICATOR_PLANE_WRITE = (
    "iot:CreateRoleAlias", "iot:UpdateRoleAlias", "iot:RegisterCACertificate", "iot:UpdateCACertificate",
    "iot:CreateJobTemplate", "iot:DeleteJobTemplate", "iot:CreateProvisioningTemplate",
    "iot:UpdateProvisioningTemplate", "iot:CreateProvisioningTemplateVersion",
    "iot:DeleteProvisioningTemplateVersion", "iot:DeleteProvisioningTemplate", "iot:CreateAuthorizer",
    "iot:UpdateAuthorizer", "iot:DeleteAuthorizer",
)
# registry events: a singleton without resource-level permission, written in the function's own region
REPLICATOR_PLANE_EVENTS = ("iot:UpdateEventConfigurations",)
# the region's fleet-indexing configuration (a singleton: no resource-level permission), written only
# in the function's own region, when a dynamic group it carries needs thing indexing turned on
REPLICATOR_IOT_INDEXING = ("iot:UpdateIndexingConfiguration",)


def replicator(*, account_id: str, region: str, sources: Sequence[str], stream_arn_prefix: str,
               applied_table_arn: str, dead_letter_queue_arn: str, log_group_arn: str,
               metric_namespace: str, shadow_key_arn: str, retained_prefixes: Sequence[str] = (),
               partition: str = "aws") -> Document:
    """The replication function in `region`: its stream, its watermark and lease table, its
    dead-letter queue, its log group, one metric namespace, the HMAC key that signs its shadow
    writes (its own region's replica), the registry of its region (read and write) and of the
    source regions (read only). With `retained_prefixes`: publishing retained messages (iot:Publish
    and iot:RetainPublish, both needed for a retained publish) and reading them, only on those
    prefixes' topics in its own region, and reading them on those topics in the sources."""

    def iot(r: str) -> str:
        return f"arn:{partition}:iot:{r}:{account_id}:*"

    def topics(r: str) -> list[str]:
        return [f"arn:{partition}:iot:{r}:{account_id}:topic/{p}*" for p in retained_prefixes]

    retained: list[Document] = []
    if retained_prefixes:
        retained = [
            {"Sid": "RetainedHere", "Effect": "Allow",
             "Action": ["iot:GetRetainedMessage", "iot:Publish", "iot:RetainPublish"], "Resource": topics(region)},
            {"Sid": "RetainedSources", "Effect": "Allow", "Action": "iot:GetRetainedMessage",
             "Resource": [arn for r in sources for arn in topics(r)]},
        ]
    return _doc(
        {"Sid": "ReadTheStream", "Effect": "Allow",
         "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
         "Resource": f"{stream_arn_prefix}/stream/*"},
        {"Sid": "ListStreams", "Effect": "Allow", "Action": "dynamodb:ListStreams", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "Watermarks", "Effect": "Allow",
         "Action": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
         "Resource": applied_table_arn},
        {"Sid": "SignShadowWrites", "Effect": "Allow", "Action": ["kms:GenerateMac", "kms:VerifyMac"],
         "Resource": shadow_key_arn},
        {"Sid": "DeadLetters", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": dead_letter_queue_arn},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        {"Sid": "LagMetric", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": metric_namespace}}},
        {"Sid": "RegistryHere", "Effect": "Allow", "Action": list(REPLICATOR_IOT_WRITE), "Resource": iot(region)},
        {"Sid": "RegistrySources", "Effect": "Allow", "Action": list(REPLICATOR_IOT_READ),
         "Resource": [iot(r) for r in sources]},
        {"Sid": "Listings", "Effect": "Allow", "Action": list(REPLICATOR_IOT_LIST), "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": [region, *sources]}}},
        {"Sid": "IndexingHere", "Effect": "Allow", "Action": list(REPLICATOR_IOT_INDEXING), "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "PlaneHere", "Effect": "Allow", "Action": list(REPLICATOR_PLANE_WRITE), "Resource": iot(region)},
        {"Sid": "EventsHere", "Effect": "Allow", "Action": list(REPLICATOR_PLANE_EVENTS), "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "PlaneReads", "Effect": "Allow", "Action": list(REPLICATOR_PLANE_READ),
         "Resource": [iot(r) for r in (region, *sources)]},
        {"Sid": "PlaneListings", "Effect": "Allow", "Action": list(REPLICATOR_PLANE_LIST), "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": [region, *sources]}}},
        # a role alias, a provisioning template and a CA's registration config name an IAM role that
        # IoT assumes: creating or updating one passes that role (iam:PassRole), to IoT only
        {"Sid": "PassPlaneRoles", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": f"arn:{partition}:iam::{account_id}:role/*",
         "Condition": {"StringEquals": {"iam:PassedToService": ["iot.amazonaws.com",
                                                                "credentials.iot.amazonaws.com"]}}},
        *retained,
    )


# What `orchestrate readiness` reads (the scheduled function runs the same rules): read-only calls
# only. IoT listings have no resource-level permissions: Resource "*", limited to the compared regions.
READINESS_IOT_LIST = (
    "iot:DescribeEventConfigurations", "iot:ListCertificates", "iot:ListPolicies", "iot:ListTargetsForPolicy",
    "iot:ListThingGroups", "iot:ListThingTypes", "iot:ListThings", "iot:ListThingsInThingGroup",
)
READINESS_IOT_READ = (
    "iot:DescribeDomainConfiguration", "iot:DescribeThingGroup", "iot:GetPolicy", "iot:GetThingShadow",
    "iot:GetTopicRule", "iot:ListNamedShadowsForThing", "iot:ListThingPrincipals",
)


def readiness(*, account_id: str, env: str, regions: Sequence[str], function_regions: Sequence[str],
              table_regions: Sequence[str], lake_bucket_arns: Sequence[str], primary_lake_arn: str,
              stream_names: dict[str, str], log_group_arn: str, metric_namespace: str, metric_region: str,
              health_check_ids: Sequence[str] = (), vault: tuple[str, str] | None = None,
              signing_key: str | None = None, key_region: str = "", backend_bucket: str | None = None,
              arc: bool = False, partition: str = "aws") -> Document:
    """The scheduled readiness function: every read the rules make, on the resources they read, and
    one write: its metrics (PutMetricData has no resource-level permission: `*`, with the namespace
    and region as conditions). `vault` is (bucket, key prefix); `signing_key` the spec
    (`awskms:<key>` or `secretsmanager:<secret>`; a name rather than an ARN is looked up in `key_region`,
    as the rules do)."""
    regions = sorted(regions)
    in_regions = {"StringEquals": {"aws:RequestedRegion": regions}}

    def arn(service: str, region: str, resource: str) -> str:
        return f"arn:{partition}:{service}:{region}:{account_id}:{resource}"

    statements: list[Document] = [
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        {"Sid": "PublishReadiness", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": metric_namespace,
                                        "aws:RequestedRegion": metric_region}}},
        {"Sid": "ReadMetrics", "Effect": "Allow", "Action": "cloudwatch:GetMetricStatistics", "Resource": "*",
         "Condition": in_regions},
        {"Sid": "Quotas", "Effect": "Allow", "Action": "servicequotas:ListServiceQuotas", "Resource": "*",
         "Condition": in_regions},
        {"Sid": "RegistryListings", "Effect": "Allow", "Action": list(READINESS_IOT_LIST), "Resource": "*",
         "Condition": in_regions},
        {"Sid": "RegistryReads", "Effect": "Allow", "Action": list(READINESS_IOT_READ),
         "Resource": [arn("iot", r, "*") for r in regions]},
        {"Sid": "Certificates", "Effect": "Allow", "Action": "acm:DescribeCertificate",
         "Resource": [arn("acm", r, "certificate/*") for r in regions]},
        {"Sid": "Streams", "Effect": "Allow", "Action": "kinesis:DescribeStreamSummary",
         "Resource": [arn("kinesis", r, f"stream/{stream_names[r]}") for r in regions]},
        {"Sid": "Lakes", "Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:GetBucketVersioning"],
         "Resource": sorted(lake_bucket_arns)},
        {"Sid": "LakeReplication", "Effect": "Allow", "Action": "s3:GetReplicationConfiguration",
         "Resource": primary_lake_arn},
        {"Sid": "RegistryTable", "Effect": "Allow", "Action": "dynamodb:DescribeTable",
         "Resource": [arn("dynamodb", r, f"table/iot-{env}-registry-events") for r in sorted(table_regions)]},
    ]
    if function_regions:
        fr = sorted(function_regions)
        statements += [
            {"Sid": "ReplicationFunctions", "Effect": "Allow", "Action": "lambda:GetFunction",
             "Resource": [arn("lambda", r, f"function:iot-{env}-replicator-{r}") for r in fr]},
            {"Sid": "DeadLetters", "Effect": "Allow", "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
             "Resource": [arn("sqs", r, f"iot-{env}-replication-dlq-{r}") for r in fr]},
            {"Sid": "Reconciliations", "Effect": "Allow", "Action": "dynamodb:GetItem",
             "Resource": [arn("dynamodb", r, f"table/iot-{env}-replication-applied-{r}") for r in fr]},
        ]
    if health_check_ids:
        statements.append({"Sid": "HealthChecks", "Effect": "Allow",
                           "Action": ["route53:GetHealthCheck", "route53:GetHealthCheckStatus"],
                           "Resource": [f"arn:{partition}:route53:::healthcheck/{i}"
                                        for i in sorted(health_check_ids)]})
    if arc:  # the cluster's data plane: read-only, no resource-level scoping for the listing
        statements.append({"Sid": "RoutingControls", "Effect": "Allow",
                           "Action": ["route53-recovery-cluster:GetRoutingControlState",
                                      "route53-recovery-cluster:ListRoutingControls"], "Resource": "*"})
    buckets = sorted({b for b in (vault[0] if vault else None, backend_bucket) if b})
    if buckets:
        statements.append({"Sid": "BucketRegions", "Effect": "Allow", "Action": "s3:GetBucketLocation",
                           "Resource": [f"arn:{partition}:s3:::{b}" for b in buckets]})
    if vault:
        bucket, prefix = vault
        under = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        statements += [
            {"Sid": "ListBackups", "Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": f"arn:{partition}:s3:::{bucket}",
             **({"Condition": {"StringLike": {"s3:prefix": f"{under}*"}}} if under else {})},
            {"Sid": "ReadBackups", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"arn:{partition}:s3:::{bucket}/{under}*"},
        ]
    scheme, _, ref = (signing_key or "").partition(":")
    if scheme == "awskms" and ref:
        key = ref if ref.startswith("arn:") else arn("kms", key_region, "key/*")  # an alias or key id
        statements.append({"Sid": "VerifyBackups", "Effect": "Allow", "Action": "kms:Verify", "Resource": key})
    elif scheme == "secretsmanager" and ref:
        secret = ref if ref.startswith("arn:") else arn("secretsmanager", key_region, f"secret:{ref}-??????")
        statements.append({"Sid": "VerifyBackups", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                           "Resource": secret})
    return _doc(*statements)


def canary_thing(*, partition: str, region: str, account_id: str, client_id: str, topic_prefix: str) -> Document:
    """The MQTT canary's IoT policy: connect as its own client id, publish, subscribe and receive
    under its own topic prefix, in its own region; nothing else (no `*` resource)."""
    iot = f"arn:{partition}:iot:{region}:{account_id}"
    return _doc(
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{iot}:client/{client_id}"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": f"{iot}:topic/{topic_prefix}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{iot}:topicfilter/{topic_prefix}/*"},
    )


def canary_function(*, secret_arn: str, log_group_arn: str, metric_namespace: str, region: str) -> Document:
    """The canary function's role: read its credentials secret, write its log group, put metrics in
    its namespace (PutMetricData has no resource-level permission: `*` with the namespace and region
    as conditions)."""
    return _doc(
        {"Sid": "Credentials", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        {"Sid": "Metric", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": metric_namespace,
                                        "aws:RequestedRegion": region}}},
    )


def outbox_function(*, account_id: str, region: str, table_name: str, log_group_arn: str,
                    command_prefix: str, ack_prefix: str, partition: str = "aws") -> Document:
    """The command outbox's replay function in `region` (docs/adr/0002-command-outbox.md): query and
    update that region's replica of the outbox table (a replica has the table's name and its own
    region's ARN), publish under the command prefix there and nowhere else (never an acknowledgement
    topic: an explicit deny), find the region's data endpoint, write its own log group."""
    topic = f"arn:{partition}:iot:{region}:{account_id}:topic/"
    return _doc(
        {"Sid": "OutboxReplica", "Effect": "Allow", "Action": ["dynamodb:Query", "dynamodb:UpdateItem"],
         "Resource": f"arn:{partition}:dynamodb:{region}:{account_id}:table/{table_name}"},
        {"Sid": "PublishCommands", "Effect": "Allow", "Action": "iot:Publish", "Resource": f"{topic}{command_prefix}*"},
        {"Sid": "NeverAcknowledgements", "Effect": "Deny", "Action": "iot:Publish",
         "Resource": [f"{topic}{ack_prefix.rstrip('/')}", f"{topic}{ack_prefix}*"]},
        # DescribeEndpoint has no resource-level permission (Service Authorization Reference, AWS IoT)
        {"Sid": "DataEndpoint", "Effect": "Allow", "Action": "iot:DescribeEndpoint", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
    )


def invoke_function(function_arn: str) -> Document:
    """The reconciliation state machine's role: invoke exactly one function (its ARN, and its
    versions and aliases: `:*`), nothing else."""
    return _doc({"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": [function_arn, f"{function_arn}:*"]})


def start_execution(state_machine_arn: str) -> Document:
    """The reconciliation schedule's role: start exactly one state machine."""
    return _doc({"Effect": "Allow", "Action": "states:StartExecution", "Resource": state_machine_arn})


def events_forward(bus_arns: Sequence[str]) -> Document:
    """EventBridge forwarding recorded IoT API calls to the default bus of the function regions."""
    return _doc({"Effect": "Allow", "Action": "events:PutEvents", "Resource": sorted(bus_arns)})


def dead_letters_from_rule(queue_arn: str, rule_arn: str) -> Document:
    """A dead-letter queue's policy: EventBridge may send what one rule could not deliver."""
    return _doc({"Sid": "UndeliveredApiCalls", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                 "Action": "sqs:SendMessage", "Resource": queue_arn,
                 "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}})


def cloudtrail_bucket(bucket_arn: str, trail_arn: str, account_id: str, partition: str = "aws") -> Document:
    """The trail's log bucket: CloudTrail (for this trail only) may read the ACL and write logs."""
    condition = {"StringEquals": {"aws:SourceArn": trail_arn}}
    return _doc(
        {"Sid": "AclCheck", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:GetBucketAcl", "Resource": bucket_arn, "Condition": condition},
        {"Sid": "Write", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": f"{bucket_arn}/AWSLogs/{account_id}/*",
         "Condition": {"StringEquals": {"aws:SourceArn": trail_arn, "s3:x-amz-acl": "bucket-owner-full-control"}}},
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    )


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
