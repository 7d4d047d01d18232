"""The scheduled readiness check, declared by the replication stack: `orchestrate readiness` every
5 minutes as a Lambda function in a region that is not the primary (`ReplicationArgs.readiness_region`,
the first secondary), so it still reports while the primary is down.

- the function runs `orchestrator.readiness.scheduled.handler`: the rules of the CLI, packaged from
  the handler's import closure (`programs.package.build_readiness`), configured by READINESS_CONFIG
  (`orchestrator.readiness.deploy`: the topology, the stack outputs the rules read, the backup vault
  and signing key; no secret);
- an EventBridge rule `rate(5 minutes)` invokes it; a missed run is not retried (the next one is five
  minutes away, and a stale evaluation proves nothing);
- its role may make the read-only calls the rules make, on what they read, and put metrics in one
  namespace in its own region (`policies.readiness`);
- it publishes `RuleReady` per rule and region, `RegionReady` and `Ready` (`scheduled.metric_data`);
  one alarm watches `Ready`, and missing data is breaching: a check that stopped running proves nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from orchestrator.readiness.scheduled import NAMESPACE, pack
from programs import policies
from programs.contract import ReadinessNames, ReplicationArgs
from programs.package import READINESS_HANDLER, RUNTIME, build_readiness

TYPE = "iotplatform:readiness:ScheduledReadiness"
SCHEDULE = "rate(5 minutes)"
TIMEOUT_S = 240  # under the schedule's period: two evaluations never overlap
MEMORY_MB = 512
LOG_DAYS = 30
ALARM_PERIOD_S = 300
ALARM_EVALUATION_PERIODS = 3
ALARM_DATAPOINTS = 2  # NOT READY (or no evaluation) in 2 of the last 3 five-minute periods
MAX_ENVIRONMENT_BYTES = 4096  # Lambda's limit for all of a function's environment variables
CONFIG_VAR = "READINESS_CONFIG"


def _bucket_of(url: str | None) -> str | None:
    """The bucket of an `s3://bucket/...` URL (None for anything else)."""
    if not url or not url.startswith("s3://"):
        return None
    return urlsplit(url).netloc or None


def _vault(dest: str | None) -> tuple[str, str] | None:
    if not dest or not dest.startswith("s3://"):
        return None
    parts = urlsplit(dest)
    return parts.netloc, parts.path.strip("/")


def check_environment(variables: dict[str, str]) -> None:
    """Lambda refuses a function whose environment exceeds 4 KB: refuse it here, by name, first."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in variables.items())
    if size > MAX_ENVIRONMENT_BYTES:
        raise ValueError(f"the readiness function's environment is {size} bytes; Lambda allows "
                         f"{MAX_ENVIRONMENT_BYTES} (the topology or the stack outputs it carries are too large)")


class ScheduledReadiness(pulumi.ComponentResource):
    function_arn: Output[str]
    alarm_name: Output[str]

    def __init__(self, name: str, args: ReplicationArgs, account_id: Output[str], tags: dict[str, str],
                 opts: ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        config: dict[str, Any] = json.loads(args.readiness)
        if config.get("env") != args.env:
            raise ValueError(f"the readiness configuration is for env {config.get('env')!r}, not {args.env!r}")
        region = args.readiness_region
        names = ReadinessNames.of(args.env)
        child = ResourceOptions(parent=self)
        outputs: dict[str, dict[str, Any]] = config.get("outputs") or {}
        regions = list(args.members)
        streams = {r: str((outputs.get(f"{args.env}-region-{r}") or {}).get("streamName")
                          or f"iot-{args.env}-{r}-telemetry") for r in regions}
        checks = (outputs.get(f"{args.env}-dns") or {}).get("healthCheckIds") or {}
        topology = config.get("topology") or {}
        backend = config.get("backend_url")
        variables = {CONFIG_VAR: pack(args.readiness)}  # compressed when large: Lambda allows 4 KB
        check_environment(variables)

        role = aws.iam.Role(f"{name}-role", path=args.iam.path, permissions_boundary=args.iam.boundary,
                            assume_role_policy=policies.dumps(policies.lambda_trust()), tags=tags, opts=child)
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{names.function}",
                                       retention_in_days=LOG_DAYS, region=region, tags=tags, opts=child)
        policy = aws.iam.RolePolicy(
            f"{name}-policy", role=role.id,
            policy=Output.all(account_id, logs.arn).apply(lambda v: policies.dumps(policies.readiness(
                account_id=v[0], env=args.env, regions=regions, function_regions=args.function_regions,
                table_regions=sorted({args.table_region, *regions}),
                lake_bucket_arns=[lake.bucket_arn for lake in (args.primary, *args.secondaries)],
                primary_lake_arn=args.primary.bucket_arn, stream_names=streams, log_group_arn=v[1],
                metric_namespace=NAMESPACE, metric_region=region,
                health_check_ids=[str(i) for i in checks.values()] if isinstance(checks, dict) else [],
                vault=_vault(config.get("backup_dest")), signing_key=config.get("signing_key"),
                key_region=args.table_region, backend_bucket=_bucket_of(backend),
                arc=topology.get("failover_control") == "arc"))),
            opts=child)
        package = build_readiness()
        function = aws.lambda_.Function(
            f"{name}-function", name=names.function, role=role.arn, runtime=RUNTIME, handler=READINESS_HANDLER,
            code=pulumi.FileArchive(str(package.path)), source_code_hash=package.sha256_b64,
            timeout=TIMEOUT_S, memory_size=MEMORY_MB, environment={"variables": variables},
            region=region, tags=tags, opts=ResourceOptions(parent=self, depends_on=[policy, logs]))
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-invoke", function_name=function.name, maximum_retry_attempts=0,
            maximum_event_age_in_seconds=ALARM_PERIOD_S, region=region, opts=child)
        schedule = aws.cloudwatch.EventRule(
            f"{name}-schedule", name=names.schedule,
            description=f"orchestrate readiness for env {args.env}, every 5 minutes",
            schedule_expression=SCHEDULE, region=region, tags=tags, opts=child)
        permission = aws.lambda_.Permission(
            f"{name}-permission", action="lambda:InvokeFunction", function=function.name,
            principal="events.amazonaws.com", source_arn=schedule.arn, region=region, opts=child)
        aws.cloudwatch.EventTarget(
            f"{name}-target", rule=schedule.name, arn=function.arn,
            retry_policy={"maximum_event_age_in_seconds": ALARM_PERIOD_S, "maximum_retry_attempts": 0},
            region=region, opts=ResourceOptions(parent=self, depends_on=[permission]))
        alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-alarm", name=names.alarm,
            alarm_description=(f"env {args.env} is NOT READY to fail over, or its readiness check stopped "
                               f"running: run `orchestrate readiness --env {args.env}`"),
            namespace=NAMESPACE, metric_name="Ready", dimensions={"Env": args.env}, statistic="Minimum",
            period=ALARM_PERIOD_S, evaluation_periods=ALARM_EVALUATION_PERIODS,
            datapoints_to_alarm=ALARM_DATAPOINTS, threshold=1, comparison_operator="LessThanThreshold",
            treat_missing_data="breaching", region=region, tags=tags, opts=child)
        self.function_arn = function.arn
        self.alarm_name = alarm.name
        self.register_outputs({"functionArn": function.arn, "alarmName": alarm.name})
