"""Cross-region wiring (`E-replication`): S3 replication, registry-events table, registry sync.

Lives in the primary region (resources take `region=primary`); targets every secondary, and only
secondaries inside the environment's residency list.

Versioning: S3 rejects a replication configuration unless both buckets are versioned. The region
stacks own `BucketVersioning` (two owners would fight), so this stack *observes* it: it reads each
bucket's versioning with `aws.s3.BucketVersioning.get` (a read-only resource: never created,
changed or deleted here; pulumi-aws 7.51 has no versioning data source), refuses to continue
unless the status is `Enabled`, and makes the replication configuration depend on those reads.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_command as command
from pulumi import Output, ResourceOptions

from programs import policies
from programs.contract import REPLICATION_OUTPUTS, LakeRef, ReplicationArgs

TYPE = "iotplatform:replication:CrossRegionReplication"
REPLICA_STORAGE_CLASS = "STANDARD_IA"  # the replica is a DR copy: written always, read rarely
# Registry events only: `$aws/events/#` also carries presence and subscription lifecycle events
# (one per device connect), which must not flood the table.
REGISTRY_EVENTS_SQL = ("SELECT *, topic() AS topic FROM '$aws/events/#' "
                       "WHERE startswith(topic(), '$aws/events/thing')")
SQL_VERSION = "2016-03-23"
# orchestrator.stacks.wiring marks upstream values not known yet (previews only) with this prefix
PLACEHOLDER_PREFIX = "placeholder:"


def check_residency(args: ReplicationArgs) -> None:
    """Data never leaves the residency list: refuse before anything is declared."""
    seen: set[str] = set()
    for lake in args.secondaries:
        if lake.region not in args.residency:
            raise ValueError(
                f"replication to {lake.region} refused: it is outside the residency list "
                f"{list(args.residency)} of env {args.env}")
        if lake.region == args.primary.region:
            raise ValueError(f"replication target {lake.region} is the primary region itself")
        if lake.region in seen:
            raise ValueError(f"replication target {lake.region} is listed twice")
        seen.add(lake.region)
    if not args.secondaries:
        raise ValueError(f"env {args.env}: replication needs at least one secondary region")


def sync_command(args: ReplicationArgs, secondary: str) -> str:
    q = shlex.quote
    return (f"{args.sync_command} registry sync --env {q(args.env)} "
            f"--from {q(args.primary.region)} --to {q(secondary)}")


def region_set(args: ReplicationArgs) -> list[str]:
    return sorted({args.primary.region, *(s.region for s in args.secondaries)})


def _require_enabled(lake: LakeRef) -> Callable[[Any], str]:
    """Check an observed versioning configuration; the bucket name when it is Enabled."""

    def check(conf: Any) -> str:
        status = getattr(conf, "status", None)
        if status != "Enabled":
            raise ValueError(
                f"bucket {lake.bucket_name} in {lake.region} has versioning "
                f"{status or 'never enabled'}; S3 replication needs it Enabled on both buckets "
                f"(run `orchestrate up --region {lake.region}` first)")
        return lake.bucket_name

    return check


class CrossRegionReplication(pulumi.ComponentResource):
    replication_role_arn: Output[str]
    registry_table_name: Output[str]
    targets: Output[list[dict[str, str]]]

    def __init__(self, name: str, args: ReplicationArgs, opts: ResourceOptions | None = None) -> None:
        check_residency(args)
        super().__init__(TYPE, name, None, opts)
        primary = args.primary.region
        child = ResourceOptions(parent=self)
        tags = {"Environment": args.env, "ManagedBy": "orchestrate", "Component": "replication"}
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id

        # -- observe versioning on every bucket (owned by the region stacks) ---------------------
        observed: dict[str, Output[str]] = {}
        reads: list[pulumi.Resource] = []
        for lake in (args.primary, *args.secondaries):
            if lake.bucket_name.startswith(PLACEHOLDER_PREFIX):
                # A preview while that region stack is not deployed yet: there is no bucket to
                # read (AWS would answer "does not exist" and fail the whole preview). `up`
                # never gets here: the orchestrator refuses placeholder values.
                observed[lake.region] = Output.from_input(lake.bucket_name)
                continue
            read = aws.s3.BucketVersioning.get(
                f"{name}-versioning-{lake.region}", id=lake.bucket_name, region=lake.region,
                opts=ResourceOptions(parent=self))
            reads.append(read)
            observed[lake.region] = read.versioning_configuration.apply(_require_enabled(lake))

        # -- S3 replication: primary lake -> every secondary lake --------------------------------
        destinations = [s.bucket_arn for s in args.secondaries]
        role = aws.iam.Role(
            f"{name}-s3-role",
            assume_role_policy=account_id.apply(lambda a: policies.dumps(
                policies.s3_replication_trust(a, args.primary.bucket_arn))),
            tags=tags, opts=child)
        role_policy = aws.iam.RolePolicy(
            f"{name}-s3-policy", role=role.id,
            policy=policies.dumps(policies.s3_replication(args.primary.bucket_arn, destinations)),
            opts=child)
        rules: list[aws.s3.BucketReplicationConfigRuleArgsDict] = [{
            "id": f"to-{lake.region}",
            "priority": index + 1,
            "status": "Enabled",
            "filter": {"prefix": ""},  # every object (a V2 rule, which delete_marker_replication needs)
            # Delete markers are replicated so a secondary never serves data the primary deleted
            # (erasure requests, lifecycle expiry). S3 never replicates deletes of a specific
            # version, so a malicious or mistaken version delete cannot propagate.
            "delete_marker_replication": {"status": "Enabled"},
            "destination": {"bucket": lake.bucket_arn, "storage_class": REPLICA_STORAGE_CLASS},
        } for index, lake in enumerate(args.secondaries)]
        aws.s3.BucketReplicationConfig(
            f"{name}-s3-replication",
            # Resolves only after every read above reported Enabled: a bucket without versioning
            # stops the update here, with a message naming it.
            bucket=Output.all(*observed.values()).apply(lambda _: args.primary.bucket_name),
            role=role.arn, rules=rules, region=primary,
            opts=ResourceOptions(parent=self, depends_on=[*reads, role_policy]))

        # -- registry events: IoT rule -> DynamoDB global table ---------------------------------
        # The table's home is the environment's home region, which stays put when traffic fails
        # over (a new home would mean replacing a protected table); `replicas` (never TableReplica
        # resources as well) puts a copy in every other member region. The rule lives in the
        # primary, where the registry is administered, and writes to that region's replica.
        table = aws.dynamodb.Table(
            f"{name}-registry-events", name=f"iot-{args.env}-registry-events",
            billing_mode="PAY_PER_REQUEST", hash_key="eventId",
            attributes=[{"name": "eventId", "type": "S"}],
            stream_enabled=True, stream_view_type="NEW_AND_OLD_IMAGES",
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True},
            replicas=[{"region_name": r, "point_in_time_recovery": True, "propagate_tags": True}
                      for r in args.members if r != args.table_region],
            region=args.table_region, tags=tags, opts=ResourceOptions(parent=self, protect=True))
        iot_trust = account_id.apply(lambda a: policies.dumps(policies.service_trust("iot.amazonaws.com", a)))
        events_role = aws.iam.Role(f"{name}-events-role", assume_role_policy=iot_trust, tags=tags,
                                   opts=child)
        events_policy = aws.iam.RolePolicy(
            f"{name}-events-policy", role=events_role.id,
            # The rule writes to the replica in the primary region: the same table ARN in that region.
            policy=table.arn.apply(lambda arn: policies.dumps(policies.dynamodb_put(
                arn.replace(f":{args.table_region}:", f":{primary}:", 1)))), opts=child)
        aws.iot.TopicRule(
            f"{name}-registry-events-rule", name=f"iot_{args.env}_registry_events".replace("-", "_"),
            description="Registry events to the cross-region registry table",
            enabled=True, sql=REGISTRY_EVENTS_SQL, sql_version=SQL_VERSION,
            dynamodbv2s=[{"role_arn": events_role.arn, "put_item": {"table_name": table.name}}],
            region=primary, tags=tags, opts=ResourceOptions(parent=self, depends_on=[events_policy]))

        # -- registry sync: reruns whenever the set of member regions changes --------------------
        members = region_set(args)
        for lake in args.secondaries:
            command.local.Command(
                f"{name}-registry-sync-{lake.region}", create=sync_command(args, lake.region),
                triggers=members, opts=child)

        self.replication_role_arn = role.arn
        self.registry_table_name = table.name
        self.targets = Output.from_input([_target(s) for s in args.secondaries])
        self.register_outputs(self.exports())

    def exports(self) -> dict[str, Output[Any]]:
        values = [self.replication_role_arn, self.registry_table_name, self.targets]
        return dict(zip(REPLICATION_OUTPUTS, values, strict=True))


def _target(lake: LakeRef) -> dict[str, str]:
    return {"region": lake.region, "bucketName": lake.bucket_name, "bucketArn": lake.bucket_arn}
