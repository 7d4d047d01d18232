"""Cross-region wiring (`E-replication`): S3 replication, registry-events table, registry sync, and
continuous replication of registry and device state.

Continuous replication: in every region where devices connect (`ReplicationArgs.routed_regions`),
three topic rules (registry events, classic and named shadow update documents; `rule_sql`), and
one per configured retained-topic prefix (`retained_rule_sql`), write into that region's replica of
the registry-events global table, stamping the origin region, the event time and a TTL. In every
region that applies changes (`function_regions`: each secondary, every member in latency mode) a
Lambda function (`programs.package`: the project's own
`orchestrator.registry`, packaged reproducibly) reads the table's stream there through an event
source mapping that reports batch-item failures and sends what it gives up on to a dead-letter
queue; CloudWatch alarms watch that queue and the `ReplicationLag` metric; a daily schedule runs
the reconciliation (a registry sync from the primary) as the backstop.

Lives in the primary region (resources take `region=primary`); targets every secondary, and only
secondaries inside the environment's residency list.

Versioning: S3 rejects a replication configuration unless both buckets are versioned. The region
stacks own `BucketVersioning` (two owners would fight), so this stack *observes* it: it reads each
bucket's versioning with `aws.s3.BucketVersioning.get` (a read-only resource: never created,
changed or deleted here; pulumi-aws 7.51 has no versioning data source), refuses to continue
unless the status is `Enabled`, and makes the replication configuration depend on those reads.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_command as command
from pulumi import Output, ResourceOptions

from orchestrator.registry import outbox
from orchestrator.registry.events import (
    API_CALL_DETAIL_TYPE,
    API_CALL_SOURCE,
    API_CALLS,
    LAG_METRIC,
    METRIC_NAMESPACE,
    REPLICA_PROPERTY,
)
from orchestrator.registry.reconcile_pass import LEASE_MS, PAGE_ATTEMPTS
from programs import package, policies
from programs.contract import (
    REPLICATION_OUTPUTS,
    RULE_DESCRIPTIONS,
    LakeRef,
    OutboxNames,
    ReplicationArgs,
    ReplicationNames,
    rule_name,
)
from programs.package import Package
from programs.package import build as build_package

TYPE = "iotplatform:replication:CrossRegionReplication"
REPLICA_STORAGE_CLASS = "STANDARD_IA"  # the replica is a DR copy: written always, read rarely
SQL_VERSION = "2016-03-23"
TTL_ATTRIBUTE = "expiresAt"
ITEM_TTL_S = 7 * 24 * 3600  # the stream keeps 24 h; items stay a week (the reference kept 48 h)
RUNTIME = package.RUNTIME
HANDLER = package.HANDLER
# Lambda's maximum: the daily reconciliation runs in the same function (a stream batch ends in
# seconds; every AWS call has a 20 s read timeout and bounded retries)
FUNCTION_TIMEOUT_S = 900
MAX_RETRY_ATTEMPTS = 10
MAX_RECORD_AGE_S = 6 * 3600
LAG_ALARM_MS = 60_000
LAG_ALARM_PERIODS = 5
RECONCILE_SCHEDULE = "rate(1 day)"
# -- the reconciliation's state machine (reconcile_definition) -------------------------------------
# A standard execution's history holds at most 25,000 events (Step Functions developer guide,
# "Service quotas", "Quotas related to state machine executions"). One loop of the definition
# writes 9: the Task's TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited,
# the Choice's entered and exited, the Pass's entered and exited; each retried attempt adds 3
# (TaskFailed, TaskScheduled, TaskStarted). With every slice retried RECONCILE_RETRY_ATTEMPTS times
# for Lambda's transient errors and CRASH_RETRY_ATTEMPTS times for a crash, and 10 events for the
# execution's start and end, MAX_RECONCILE_SLICES loops always fit: an execution cannot run
# forever, and a pass it did not finish is continued by the next day's execution (the progress is
# in the applied table, orchestrator/registry/reconcile_pass.py).
SFN_HISTORY_QUOTA = 25_000
EVENTS_PER_SLICE = 9
EVENTS_PER_RETRY = 3
EXECUTION_EVENTS = 10
RECONCILE_RETRY_ATTEMPTS = 3
# A slice that crashed (the function's error: an exception, Lambda's timeout or memory limit) is
# tried again PAGE_ATTEMPTS times in the same execution: each crash is an attempt of the page it
# was in (or of the pass's end, the plane and the record), counted in the pass's head item, and the
# slice after the last one gives that page up (reconcile_pass `_give_up`; the end without the
# plane, `_finish`), so one poison page costs three retries, not the pass (with one
# attempt a day, the 36 h validity window would discard the pass before it reached three). The
# wait outlasts the pass's lease (`LEASE_MS`, from the slice's start, which is before its crash):
# the retry takes it over instead of finding the pass busy, and learns that way that the slice
# before it was stopped from outside.
CRASH_RETRY_ATTEMPTS = PAGE_ATTEMPTS
CRASH_RETRY_INTERVAL_S = LEASE_MS // 1000 + 40
MAX_RECONCILE_SLICES = (SFN_HISTORY_QUOTA - EXECUTION_EVENTS) // (
    EVENTS_PER_SLICE + EVENTS_PER_RETRY * (RECONCILE_RETRY_ATTEMPTS + CRASH_RETRY_ATTEMPTS))
RECONCILE_INPUT = {"slices": 0}  # the schedule's execution input: the loop's counter
SLICE_TIMEOUT_S = 960  # the Task's own bound: the function's 900 s and Lambda's invoke overhead
# Lambda's transient errors, as the Lambda integration names them (Step Functions developer guide,
# "Handling errors": best practice for Lambda tasks), retried at once; any other error (the
# function's: the slice raised, timed out or ran out of memory) is retried CRASH_RETRY_ATTEMPTS
# times by the last retrier (`States.ALL`, "a wildcard that matches any known error name", alone
# and last: developer guide, "Handling errors in Step Functions workflows"), then the execution
# fails and the next one continues from the stored progress
LAMBDA_TRANSIENT = ("Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                    "Lambda.TooManyRequestsException")
API_CALL_MAX_AGE_S = 6 * 3600  # asynchronous invocations and EventBridge retries give up after this
TRAIL_LOG_DAYS = 90
OUTBOX_HANDLER = "orchestrator.registry.outbox_function.handler"
# a replay sends at most 10 commands a second (outbox.REPLAY_PER_SECOND): 300 s is 3,000 pending commands
OUTBOX_TIMEOUT_S = 300


def _stamp(region: str) -> str:
    """The fields every rule adds: where and when the change happened, and when the item expires."""
    return f"'{region}' AS originRegion, floor(timestamp() / 1000) + {ITEM_TTL_S} AS {TTL_ATTRIBUTE}"


def rule_sql(region: str) -> dict[str, str]:
    """The SQL of the three rules of one region.

    Registry events only: `$aws/events/#` also carries presence and subscription lifecycle events
    (one per device connect), which must not flood the table. Shadow documents: every one is kept,
    whatever its client token (a device chooses its own token, so a token prefix cannot mark the
    function's writes); the function recognises its own replica writes by a client token signed
    with a KMS HMAC key only its role may use (`orchestrator.registry.replicate.ShadowSigner`), and
    `previous` is not needed. A shadow item's key is thing/shadow/version/time: a redelivered message
    rewrites the same item, which DynamoDB streams do not report again.
    """

    def shadow(name_sql: str, topic: str) -> str:
        return ("SELECT current, clientToken, 'SHADOW_EVENT' AS eventType, topic(3) AS thingName, "
                f"{name_sql} AS shadowName, current.version AS version, "
                f"concat('shadow/', topic(3), '/', {name_sql}, '/', cast(current.version AS String), '/', "
                "cast(timestamp AS String)) AS eventId, "
                f"timestamp * 1000 AS eventTimeMs, {_stamp(region)} FROM '{topic}'")

    return {
        "registry-events": (f"SELECT *, topic() AS topic, timestamp AS eventTimeMs, {_stamp(region)} "
                            "FROM '$aws/events/#' WHERE startswith(topic(), '$aws/events/thing')"),
        "shadow-classic": shadow("''", "$aws/things/+/shadow/update/documents"),
        "shadow-named": shadow("topic(6)", "$aws/things/+/shadow/name/+/update/documents"),
    }


def retained_filter(prefix: str) -> str:
    """The topic filter of a retained prefix's rule: its complete levels and `#` (`config/` ->
    `config/#`; `fleet/set` -> `fleet/#`, the WHERE clause narrows it; a prefix without a `/`
    needs `#`, every topic of the account: end prefixes with `/`)."""
    return prefix[:prefix.rfind("/") + 1] + "#"


def retained_key(prefix: str) -> str:
    """A prefix's short stable id (names allow no `/`): not its place in the list."""
    return hashlib.sha256(prefix.encode()).hexdigest()[:10]


def retained_rule_name(env: str, prefix: str, region: str) -> str:
    return rule_name(env, f"retained-{retained_key(prefix)}", region)


def retained_rule_sql(region: str, prefix: str) -> str:
    """The SQL of one retained prefix's rule in `region`.

    It fires on every publish under the prefix: the rules engine cannot tell whether a message had
    the RETAIN flag, so the function reads the origin's retained message (GetRetainedMessage) and
    makes its region equal to it; the item carries the payload (base64: any bytes, `encode(*,
    'base64')`; empty for a clear) for the function's checks (size, the echo's signature), and the
    publish's `orchestrate-replica` user property: the function's own republish carries a token
    signed over topic and payload, which the functions of the other regions verify (a device can set
    any property, so the rule keeps every publish, as the shadow rules keep every update document).
    The event time is the rules engine's (`timestamp()`, ms); the event id is unique per publish."""
    quoted = prefix.replace("'", "''")
    return ("SELECT encode(*, 'base64') AS payload, topic() AS topic, 'RETAINED_EVENT' AS eventType, "
            f"get_user_property('{REPLICA_PROPERTY}') AS replicaToken, "
            "concat('retained/', topic(), '/', cast(timestamp() AS String), '/', newuuid()) AS eventId, "
            f"timestamp() AS eventTimeMs, {_stamp(region)} FROM '{retained_filter(prefix)}' "
            f"WHERE startswith(topic(), '{quoted}')")


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
            path=args.iam.path, permissions_boundary=args.iam.boundary,
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
            ttl={"attribute_name": TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True},
            replicas=[{"region_name": r, "point_in_time_recovery": True, "propagate_tags": True}
                      for r in args.members if r != args.table_region],
            region=args.table_region, tags=tags, opts=ResourceOptions(parent=self, protect=True))
        iot_trust = account_id.apply(lambda a: policies.dumps(policies.service_trust("iot.amazonaws.com", a)))

        def replica_arn(region: str) -> Output[str]:
            """The table's ARN in `region` (a replica has the same ARN, in its own region)."""
            return table.arn.apply(lambda arn: arn.replace(f":{args.table_region}:", f":{region}:", 1))

        # -- topic rules in every region where changes happen: registry events and shadow documents
        for region in args.routed_regions:
            events_role = aws.iam.Role(f"{name}-events-role-{region}",
                                       path=args.iam.path, permissions_boundary=args.iam.boundary,
                                       assume_role_policy=iot_trust, tags=tags,
                                       opts=child)
            events_policy = aws.iam.RolePolicy(
                f"{name}-events-policy-{region}", role=events_role.id,
                # each region's rules write to that region's replica only
                policy=replica_arn(region).apply(lambda arn: policies.dumps(policies.dynamodb_put(arn))),
                opts=child)
            for kind, sql in rule_sql(region).items():
                aws.iot.TopicRule(
                    f"{name}-{kind}-rule-{region}", name=rule_name(args.env, kind, region),
                    description=f"{RULE_DESCRIPTIONS[kind]} to the cross-region registry table",
                    enabled=True, sql=sql, sql_version=SQL_VERSION,
                    dynamodbv2s=[{"role_arn": events_role.arn, "put_item": {"table_name": table.name}}],
                    region=region, tags=tags, opts=ResourceOptions(parent=self, depends_on=[events_policy]))
            for prefix in args.retained_topics:  # the configured retained-message prefixes
                aws.iot.TopicRule(
                    f"{name}-retained-rule-{region}-{retained_key(prefix)}",
                    name=retained_rule_name(args.env, prefix, region),
                    description=f"Publishes under {prefix} (retained messages) to the cross-region registry table",
                    enabled=True, sql=retained_rule_sql(region, prefix), sql_version=SQL_VERSION,
                    dynamodbv2s=[{"role_arn": events_role.arn, "put_item": {"table_name": table.name}}],
                    region=region, tags=tags, opts=ResourceOptions(parent=self, depends_on=[events_policy]))

        # -- the key that signs the functions' shadow writes: multi-Region HMAC, a replica per region
        # (the functions' roles first: the key policy lets only them compute MACs)
        roles = {region: aws.iam.Role(f"{name}-replicator-role-{region}",
                                      path=args.iam.path, permissions_boundary=args.iam.boundary,
                                      assume_role_policy=policies.dumps(policies.lambda_trust()), tags=tags,
                                      opts=child)
                 for region in args.function_regions}
        key_policy = Output.all(account_id, *(r.arn for r in roles.values())).apply(
            lambda v: policies.dumps(policies.shadow_key_policy(v[0], v[1:])))
        shadow_key = aws.kms.Key(
            f"{name}-shadow-key", description=f"iot-{args.env}: signs replica shadow writes (client tokens)",
            customer_master_key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC", multi_region=True,
            policy=key_policy, deletion_window_in_days=30, region=args.table_region, tags=tags, opts=child)
        key_arns: dict[str, Output[str]] = {args.table_region: shadow_key.arn}
        for region in args.function_regions:
            if region != args.table_region:
                key_arns[region] = aws.kms.ReplicaKey(
                    f"{name}-shadow-key-{region}", primary_key_arn=shadow_key.arn, deletion_window_in_days=30,
                    description=f"iot-{args.env}: signs replica shadow writes (client tokens)", policy=key_policy,
                    region=region, tags=tags, opts=child).arn

        # -- the replication function in every region that applies changes ------------------------
        package = build_package()
        functions: dict[str, tuple[aws.lambda_.Function, aws.sqs.Queue]] = {}
        for region in args.function_regions:
            functions[region] = self._replicator(name, args, region, table, package, account_id, tags,
                                                 key_arns[region], roles[region])

        # -- what registry events do not carry: IoT API calls, CloudTrail -> EventBridge -> function
        self._api_calls(name, args, functions, account_id, tags)

        # -- the command outbox (optional): a global table and a replay function per member region --
        if args.command_outbox:
            self._command_outbox(name, args, account_id, tags)

        # -- the scheduled readiness check, in a region that is not the primary ---------------------
        if args.readiness:
            from programs.readiness import ScheduledReadiness

            ScheduledReadiness(f"{name}-readiness", args, account_id, tags, opts=ResourceOptions(parent=self))

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

    def _api_calls(self, name: str, args: ReplicationArgs,
                   functions: dict[str, tuple[aws.lambda_.Function, aws.sqs.Queue]],
                   account_id: Output[str], tags: dict[str, str]) -> None:
        """Certificate status, policy attachments and policy versions have no registry events.
        CloudTrail records the API calls (a trail with logging enabled is what makes EventBridge
        receive "AWS API Call via CloudTrail" events: one multi-Region trail, management write events
        only); in each region where such calls change what a function replicates, a rule forwards
        them to the default bus of those function regions (only the region's own calls: a forwarded
        event is never forwarded again); in each function region a rule invokes the function, which
        re-reads the named object in the call's region (`replicate.Replicator.handle_api_event`)."""
        child = ResourceOptions(parent=self)
        home = args.table_region
        trail_name = f"iot-{args.env}-registry-changes"
        trail_arn = account_id.apply(lambda a: f"arn:aws:cloudtrail:{home}:{a}:trail/{trail_name}")
        bucket = aws.s3.Bucket(f"{name}-trail-logs", bucket_prefix=f"iot-{args.env}-trail-", region=home,
                               tags=tags, opts=child)
        aws.s3.BucketPublicAccessBlock(
            f"{name}-trail-logs-public", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, region=home, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-trail-logs-sse", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], region=home, opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-trail-logs-expiry", bucket=bucket.id,
            rules=[{"id": "expire", "status": "Enabled", "filter": {"prefix": ""},
                    "expiration": {"days": TRAIL_LOG_DAYS}}], region=home, opts=child)
        bucket_policy = aws.s3.BucketPolicy(
            f"{name}-trail-logs-policy", bucket=bucket.id,
            policy=Output.all(bucket.arn, trail_arn, account_id).apply(
                lambda v: policies.dumps(policies.cloudtrail_bucket(v[0], v[1], v[2]))),
            region=home, opts=child)
        aws.cloudtrail.Trail(
            f"{name}-trail", name=trail_name, s3_bucket_name=bucket.id, is_multi_region_trail=True,
            include_global_service_events=True, enable_logging=True, enable_log_file_validation=True,
            event_selectors=[{"read_write_type": "WriteOnly", "include_management_events": True}],
            region=home, tags=tags, opts=ResourceOptions(parent=self, depends_on=[bucket_policy]))

        detail: dict[str, Any] = {"eventSource": ["iot.amazonaws.com"], "eventName": list(API_CALLS)}
        for region, (function, dlq) in functions.items():
            pattern = {"source": [API_CALL_SOURCE], "detail-type": [API_CALL_DETAIL_TYPE], "detail": detail}
            rule = aws.cloudwatch.EventRule(
                f"{name}-api-calls-{region}", name=f"iot-{args.env}-api-calls-{region}",
                description=f"IoT API calls recorded by CloudTrail -> the replication function in {region}",
                event_pattern=json.dumps(pattern, sort_keys=True), region=region, tags=tags, opts=child)
            permission = aws.lambda_.Permission(
                f"{name}-api-calls-permission-{region}", action="lambda:InvokeFunction", function=function.name,
                principal="events.amazonaws.com", source_arn=rule.arn, region=region, opts=child)
            queue_policy = aws.sqs.QueuePolicy(
                f"{name}-dlq-policy-{region}", queue_url=dlq.url,
                policy=Output.all(dlq.arn, rule.arn).apply(
                    lambda v: policies.dumps(policies.dead_letters_from_rule(v[0], v[1]))),
                region=region, opts=child)
            aws.cloudwatch.EventTarget(
                f"{name}-api-calls-target-{region}", rule=rule.name, arn=function.arn,
                retry_policy={"maximum_event_age_in_seconds": API_CALL_MAX_AGE_S, "maximum_retry_attempts": 20},
                dead_letter_config={"arn": dlq.arn}, region=region,
                opts=ResourceOptions(parent=self, depends_on=[permission, queue_policy]))
            aws.lambda_.FunctionEventInvokeConfig(
                f"{name}-api-calls-invoke-{region}", function_name=function.name, maximum_retry_attempts=2,
                maximum_event_age_in_seconds=API_CALL_MAX_AGE_S,
                destination_config={"on_failure": {"destination": dlq.arn}}, region=region, opts=child)

        # forwarding: calls made in a source region reach the functions that apply them
        targets: dict[str, list[str]] = {}
        for region in functions:
            for source in args.source_regions(region):
                targets.setdefault(source, []).append(region)
        if not targets:
            return
        buses = {r: account_id.apply(_bus_arn(r)) for r in functions}
        role = aws.iam.Role(
            f"{name}-api-calls-forward-role",
            path=args.iam.path, permissions_boundary=args.iam.boundary,
            assume_role_policy=account_id.apply(lambda a: policies.dumps(
                policies.service_trust("events.amazonaws.com", a))), tags=tags, opts=child)
        role_policy = aws.iam.RolePolicy(
            f"{name}-api-calls-forward-policy", role=role.id,
            policy=Output.all(*buses.values()).apply(lambda arns: policies.dumps(policies.events_forward(arns))),
            opts=child)
        for source, regions in sorted(targets.items()):
            # the source's own calls only: an event forwarded into this bus is never forwarded again
            pattern = {"source": [API_CALL_SOURCE], "detail-type": [API_CALL_DETAIL_TYPE],
                       "detail": {**detail, "awsRegion": [source]}}
            rule = aws.cloudwatch.EventRule(
                f"{name}-api-calls-forward-{source}", name=f"iot-{args.env}-api-calls-forward-{source}",
                description=f"IoT API calls made in {source} -> the replication functions of {', '.join(regions)}",
                event_pattern=json.dumps(pattern, sort_keys=True), region=source, tags=tags, opts=child)
            for region in regions:
                aws.cloudwatch.EventTarget(
                    f"{name}-api-calls-forward-{source}-to-{region}", rule=rule.name, arn=buses[region],
                    role_arn=role.arn, region=source, opts=ResourceOptions(parent=self, depends_on=[role_policy]))

    def _command_outbox(self, name: str, args: ReplicationArgs, account_id: Output[str], tags: dict[str, str]) -> None:
        """The command outbox (docs/adr/0002-command-outbox.md): a DynamoDB global table (home in the
        table region, a replica in every other member region, TTL on the `expiresAt` that
        `outbox.enqueue` writes) and, in every member region (a device may fail over to any), the
        function `outbox_function.handler` invoked by two topic rules there: presence `connected`
        events (replay) and the devices' acknowledgements (`cmd/ack/<thing>`). Each function's role
        reads and updates its own region's replica and publishes under the command prefix there."""
        child = ResourceOptions(parent=self)
        outbox_table = OutboxNames.of(args.env, args.table_region).table
        table = aws.dynamodb.Table(
            f"{name}-command-outbox", name=outbox_table, billing_mode="PAY_PER_REQUEST",
            hash_key="thing", range_key="commandId",
            attributes=[{"name": "thing", "type": "S"}, {"name": "commandId", "type": "S"}],
            # global tables (version 2019.11.21) replicate through the table's stream: it must be on
            stream_enabled=True, stream_view_type="NEW_AND_OLD_IMAGES",
            ttl={"attribute_name": outbox.TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": True}, server_side_encryption={"enabled": True},
            replicas=[{"region_name": r, "point_in_time_recovery": True, "propagate_tags": True}
                      for r in args.members if r != args.table_region],
            region=args.table_region, tags=tags, opts=ResourceOptions(parent=self, protect=True))
        code = build_package(handler=OUTBOX_HANDLER, stem="outbox")
        for region in args.members:
            names = OutboxNames.of(args.env, region)
            logs = aws.cloudwatch.LogGroup(f"{name}-outbox-logs-{region}", name=f"/aws/lambda/{names.function}",
                                           retention_in_days=30, region=region, tags=tags, opts=child)
            role = aws.iam.Role(f"{name}-outbox-role-{region}", path=args.iam.path,
                                permissions_boundary=args.iam.boundary,
                                assume_role_policy=policies.dumps(policies.lambda_trust()), tags=tags, opts=child)
            role_policy = aws.iam.RolePolicy(
                f"{name}-outbox-policy-{region}", role=role.id,
                policy=Output.all(account_id, table.name, logs.arn).apply(_outbox_policy(region)),
                opts=child)
            function = aws.lambda_.Function(
                f"{name}-outbox-{region}", name=names.function, role=role.arn, runtime=RUNTIME,
                handler=OUTBOX_HANDLER, code=pulumi.FileArchive(str(code.path)), source_code_hash=code.sha256_b64,
                timeout=OUTBOX_TIMEOUT_S, memory_size=128,
                environment={"variables": {"OUTBOX_TABLE": outbox_table}},
                region=region, tags=tags,
                opts=ResourceOptions(parent=self, depends_on=[role_policy, logs, table]))
            # AWS/Lambda `Errors`: "the number of invocations that result in a function error", thrown by
            # the code or the runtime (Lambda developer guide, "Types of metrics for Lambda functions");
            # a refused event or a failed DynamoDB call. No invocation, no datum: not breaching.
            aws.cloudwatch.MetricAlarm(
                f"{name}-outbox-errors-alarm-{region}", name=names.errors_alarm,
                alarm_description=(f"the command outbox function in {region} failed (a malformed event or a "
                                   f"DynamoDB error): commands may stay undelivered until the device's next "
                                   f"connect; read its log group /aws/lambda/{names.function}"),
                namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": function.name},
                statistic="Sum", period=60, evaluation_periods=1, threshold=0,
                comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
                region=region, tags=tags, opts=child)
            for kind, rule, sql in (("connected", names.connected_rule, outbox_rule_sql()["connected"]),
                                    ("ack", names.ack_rule, outbox_rule_sql()["ack"])):
                topic_rule = aws.iot.TopicRule(
                    f"{name}-outbox-{kind}-rule-{region}", name=rule,
                    description=f"command outbox: {kind} events -> {names.function}",
                    enabled=True, sql=sql, sql_version=SQL_VERSION, lambdas=[{"function_arn": function.arn}],
                    region=region, tags=tags, opts=child)
                # only this rule may invoke the function (its ARN, in this account)
                aws.lambda_.Permission(
                    f"{name}-outbox-{kind}-permission-{region}", action="lambda:InvokeFunction",
                    function=function.name, principal="iot.amazonaws.com", source_arn=topic_rule.arn,
                    source_account=account_id, region=region, opts=child)

    def _replicator(self, name: str, args: ReplicationArgs, region: str, table: aws.dynamodb.Table,
                    package: Package, account_id: Output[str], tags: dict[str, str],
                    shadow_key_arn: Output[str], role: aws.iam.Role) -> tuple[aws.lambda_.Function, aws.sqs.Queue]:
        """One region's function: stream -> function (-> dead-letter queue), watermarks, alarms, schedule."""
        names = ReplicationNames.of(args.env, region)
        child = ResourceOptions(parent=self)
        sources = args.source_regions(region)
        stream_arn = _stream_arn(table, region, args.table_region)
        dlq = aws.sqs.Queue(f"{name}-dlq-{region}", name=names.dead_letter_queue, region=region,
                            message_retention_seconds=14 * 24 * 3600, sqs_managed_sse_enabled=True,
                            tags=tags, opts=child)
        applied = aws.dynamodb.Table(
            f"{name}-applied-{region}", name=names.applied_table, billing_mode="PAY_PER_REQUEST",
            hash_key="objectKey", attributes=[{"name": "objectKey", "type": "S"}],
            ttl={"attribute_name": TTL_ATTRIBUTE, "enabled": True}, server_side_encryption={"enabled": True},
            region=region, tags=tags, opts=child)
        logs = aws.cloudwatch.LogGroup(f"{name}-replicator-logs-{region}", name=f"/aws/lambda/{names.function}",
                                       retention_in_days=30, region=region, tags=tags, opts=child)
        role_policy = aws.iam.RolePolicy(
            f"{name}-replicator-policy-{region}", role=role.id,
            policy=Output.all(account_id, table.name, applied.arn, dlq.arn, logs.arn, shadow_key_arn).apply(
                lambda v: policies.dumps(policies.replicator(
                    account_id=v[0], region=region, sources=sources,
                    stream_arn_prefix=f"arn:aws:dynamodb:{region}:{v[0]}:table/{v[1]}",
                    applied_table_arn=v[2], dead_letter_queue_arn=v[3], log_group_arn=v[4],
                    metric_namespace=METRIC_NAMESPACE, shadow_key_arn=v[5],
                    retained_prefixes=args.retained_topics))),
            opts=child)
        function = aws.lambda_.Function(
            f"{name}-replicator-{region}", name=names.function, role=role.arn, runtime=RUNTIME, handler=HANDLER,
            code=pulumi.FileArchive(str(package.path)), source_code_hash=package.sha256_b64,
            timeout=FUNCTION_TIMEOUT_S, memory_size=256,
            # MEMBER_REGIONS: the only origins the function accepts; refused records go to the queue
            environment={"variables": {"REPLICATION_ENV": args.env, "APPLIED_TABLE": names.applied_table,
                                       "METRIC_NAMESPACE": METRIC_NAMESPACE,
                                       "MEMBER_REGIONS": ",".join(args.members),
                                       "DEAD_LETTER_QUEUE_URL": dlq.url, "SHADOW_TOKEN_KEY": shadow_key_arn,
                                       **({"RETAINED_TOPICS": json.dumps(list(args.retained_topics))}
                                          if args.retained_topics else {})}},
            region=region, tags=tags, opts=ResourceOptions(parent=self, depends_on=[role_policy, logs]))
        aws.lambda_.EventSourceMapping(
            f"{name}-replicator-stream-{region}", event_source_arn=stream_arn, function_name=function.arn,
            starting_position="TRIM_HORIZON", batch_size=100, maximum_batching_window_in_seconds=1,
            function_response_types=["ReportBatchItemFailures"], bisect_batch_on_function_error=True,
            maximum_retry_attempts=MAX_RETRY_ATTEMPTS, maximum_record_age_in_seconds=MAX_RECORD_AGE_S,
            destination_config={"on_failure": {"destination_arn": dlq.arn}},
            # TTL expiries (REMOVE) carry nothing to replicate: they never invoke the function
            filter_criteria={"filters": [{"pattern": json.dumps({"eventName": ["INSERT", "MODIFY"]})}]},
            region=region, opts=ResourceOptions(parent=self, depends_on=[role_policy]))
        aws.cloudwatch.MetricAlarm(
            f"{name}-dlq-alarm-{region}", name=f"{names.dead_letter_queue}-not-empty",
            alarm_description=f"replication to {region} gave up on changes: run `orchestrate registry replay "
                              f"--from-dlq --region {region}`",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dlq.name}, statistic="Maximum", period=60, evaluation_periods=1,
            threshold=0, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            region=region, tags=tags, opts=child)
        aws.cloudwatch.MetricAlarm(
            f"{name}-lag-alarm-{region}", name=f"iot-{args.env}-replication-lag-{region}",
            alarm_description=f"changes take more than {LAG_ALARM_MS // 1000} s to reach {region}",
            namespace=METRIC_NAMESPACE, metric_name=LAG_METRIC,
            dimensions={"Env": args.env, "Region": region}, statistic="Maximum", period=60,
            evaluation_periods=LAG_ALARM_PERIODS, threshold=LAG_ALARM_MS,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            region=region, tags=tags, opts=child)
        if region == args.primary.region:
            return function, dlq  # the primary is the reconciliation's source, never its target
        self._reconciliation(name, args, region, function, account_id, tags)
        return function, dlq

    def _reconciliation(self, name: str, args: ReplicationArgs, region: str, function: aws.lambda_.Function,
                        account_id: Output[str], tags: dict[str, str]) -> None:
        """The daily full reconciliation into one secondary: a STANDARD state machine looping over the
        function's bounded slices (`reconcile_definition`), started by EventBridge Scheduler. Each
        role may do one thing: the machine's invoke this function, the schedule's start this machine."""
        names = ReplicationNames.of(args.env, region)
        child = ResourceOptions(parent=self)
        machine_role = aws.iam.Role(
            f"{name}-reconcile-machine-role-{region}", path=args.iam.path, permissions_boundary=args.iam.boundary,
            assume_role_policy=account_id.apply(lambda a: policies.dumps(
                policies.service_trust("states.amazonaws.com", a))), tags=tags, opts=child)
        machine_policy = aws.iam.RolePolicy(
            f"{name}-reconcile-machine-policy-{region}", role=machine_role.id,
            policy=function.arn.apply(lambda arn: policies.dumps(policies.invoke_function(arn))), opts=child)
        machine = aws.sfn.StateMachine(
            f"{name}-reconcile-{region}", name=names.reconcile_state_machine, type="STANDARD",
            role_arn=machine_role.arn,
            definition=function.arn.apply(lambda arn: json.dumps(
                reconcile_definition(arn, args.primary.region), sort_keys=True)),
            region=region, tags=tags, opts=ResourceOptions(parent=self, depends_on=[machine_policy]))
        schedule_role = aws.iam.Role(
            f"{name}-reconcile-schedule-role-{region}", path=args.iam.path, permissions_boundary=args.iam.boundary,
            assume_role_policy=account_id.apply(lambda a: policies.dumps(
                policies.service_trust("scheduler.amazonaws.com", a))), tags=tags, opts=child)
        schedule_policy = aws.iam.RolePolicy(
            f"{name}-reconcile-schedule-policy-{region}", role=schedule_role.id,
            policy=machine.arn.apply(lambda arn: policies.dumps(policies.start_execution(arn))), opts=child)
        aws.scheduler.Schedule(
            f"{name}-reconcile-schedule-{region}", name=names.reconcile_schedule,
            description=f"daily registry reconciliation {args.primary.region} -> {region}",
            schedule_expression=RECONCILE_SCHEDULE, flexible_time_window={"mode": "OFF"},
            target={"arn": machine.arn, "role_arn": schedule_role.arn,
                    "input": json.dumps(RECONCILE_INPUT, sort_keys=True)},
            region=region, opts=ResourceOptions(parent=self, depends_on=[schedule_policy]))

    def exports(self) -> dict[str, Output[Any]]:
        values = [self.replication_role_arn, self.registry_table_name, self.targets]
        return dict(zip(REPLICATION_OUTPUTS, values, strict=True))


def outbox_rule_sql() -> dict[str, str]:
    """The command outbox's two rules (`orchestrator.registry.outbox_function`): a client's connect
    (IoT Core's presence lifecycle event; the client id is the thing name) and a device's
    acknowledgement under `cmd/ack/<thing>` (the thing taken from the topic, not the payload)."""
    ack = outbox.ACK_PREFIX
    return {
        "connected": "SELECT clientId, eventType, timestamp FROM '$aws/events/presence/connected/+'",
        "ack": f"SELECT topic({ack.count('/') + 1}) AS thing, commandIds, replay, 'ack' AS eventType FROM '{ack}+'",
    }


def reconcile_definition(function_arn: str, source: str, *, slice_limits: dict[str, Any] | None = None,
                         max_slices: int = MAX_RECONCILE_SLICES,
                         crash_attempts: int = CRASH_RETRY_ATTEMPTS) -> dict[str, Any]:
    """The Amazon States Language definition of one secondary's reconciliation: invoke the function
    for a slice, stop when it says `done`, else count the slice and go again, at most `max_slices`
    times; a slice that crashed is tried again `crash_attempts` times (0: none, the execution fails
    at once). `slice_limits` (tests): the slice request's limits (`reconcile_pass.SliceLimits`)."""
    return {
        "Comment": f"registry reconciliation from {source}: bounded slices until the pass is done",
        "StartAt": "Slice",
        "States": {
            "Slice": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn,
                               "Payload": {"reconcile": {"from": source, "slice": dict(slice_limits or {})}}},
                "ResultSelector": {"done.$": "$.Payload.done", "progress.$": "$.Payload.progress"},
                "ResultPath": "$.result",
                "TimeoutSeconds": SLICE_TIMEOUT_S,
                "Retry": [{"ErrorEquals": list(LAMBDA_TRANSIENT), "IntervalSeconds": 2,
                           "MaxAttempts": RECONCILE_RETRY_ATTEMPTS, "BackoffRate": 2.0},
                          *([{"ErrorEquals": ["States.ALL"], "IntervalSeconds": CRASH_RETRY_INTERVAL_S,
                              "MaxAttempts": crash_attempts, "BackoffRate": 1.0}] if crash_attempts else [])],
                "Next": "Done?",
            },
            "Done?": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.result.done", "BooleanEquals": True, "Next": "Reconciled"},
                    {"Variable": "$.slices", "NumericGreaterThanEquals": max_slices - 1, "Next": "OutOfSlices"},
                ],
                "Default": "Count",
            },
            "Count": {"Type": "Pass", "Parameters": {"slices.$": "States.MathAdd($.slices, 1)"}, "Next": "Slice"},
            "Reconciled": {"Type": "Succeed"},
            "OutOfSlices": {"Type": "Fail", "Error": "Reconcile.OutOfSlices",
                            "Cause": f"{max_slices} slices without finishing the pass: "
                                     "the next execution continues it"},
        },
    }


def _stream_arn(table: aws.dynamodb.Table, region: str, home: str) -> Output[str]:
    """The table's stream in `region`: the home table's own, or that replica's."""
    if region == home:
        return table.stream_arn

    def pick(replicas: Any) -> str:
        for replica in replicas or []:
            if _field(replica, "region_name", "regionName") == region:
                arn = _field(replica, "stream_arn", "streamArn")
                if arn:
                    return str(arn)
        raise ValueError(f"the registry-events table has no stream in {region}")

    return table.replicas.apply(pick)


def _field(value: Any, attr: str, key: str) -> Any:
    """A field of an output type (attribute access) or of a plain dict (either spelling)."""
    found = getattr(value, attr, None)
    if found is None and isinstance(value, dict):
        found = value.get(attr, value.get(key))
    return found


def _outbox_policy(region: str) -> Callable[[list[Any]], str]:
    """The outbox function's role policy in `region`, from (account id, table name, log group ARN)."""
    return lambda v: policies.dumps(policies.outbox_function(
        account_id=v[0], region=region, table_name=v[1], log_group_arn=v[2],
        command_prefix=outbox.COMMAND_PREFIX, ack_prefix=outbox.ACK_PREFIX))


def _target(lake: LakeRef) -> dict[str, str]:
    return {"region": lake.region, "bucketName": lake.bucket_name, "bucketArn": lake.bucket_arn}


def _bus_arn(region: str) -> Callable[[str], str]:
    """The default event bus of `region` in the account the ARN is built for."""
    return lambda account: f"arn:aws:events:{region}:{account}:event-bus/default"
