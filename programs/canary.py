"""One region's MQTT canary: a dedicated thing, a scheduled function doing a real MQTT round trip
through the custom domain, and the alarm the DNS stack's health check watches.

A TCP health check calls a region healthy when port 443 answers; a region whose port answers but
whose MQTT refuses (expired domain certificate, broken domain configuration, policy or authoriser
failure) looks healthy to it. Every minute the function (`orchestrator.drill.canary_handler`, its
zip built from its own import closure by `programs.package`) connects as the canary thing to this
region's ATS endpoint with the custom domain as SNI, subscribes to, publishes and receives its own
message, and puts `IotPlatform/Canary MqttRoundTrip` (1 or 0, dimensions Env and Region). The alarm
(`contract.CanaryNames.alarm`) goes to ALARM after ALARM_PERIODS failed or missing minutes: missing
data is breaching, so a canary that cannot run or report never reads as healthy.

Least privilege: the thing's IoT policy allows connecting as its own client id and publish,
subscribe and receive under `canary/<region>/` only; the function's role reads its one secret,
writes its one log group and puts metrics only in its namespace. The certificate's private key is a
Pulumi secret, stored in one Secrets Manager secret the function alone may read.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from orchestrator.drill.canary import METRIC_NAME, METRIC_NAMESPACE
from programs import policies
from programs.contract import CanaryNames, RegionArgs
from programs.package import RUNTIME, Package
from programs.package import build as build_package

HANDLER = "orchestrator.drill.canary_handler.handler"
SCHEDULE = "rate(1 minute)"
MQTT_PORT = 8883
TIMEOUT_S = 5  # per MQTT step (canary.probe)
FUNCTION_TIMEOUT_S = 30
ALARM_PERIODS = 2  # two failed (or missing) minutes in a row: one lost run never fails a region over
LOG_RETENTION_DAYS = 14


def package() -> Package:
    return build_package(handler=HANDLER, stem="canary")


def declare(parent: pulumi.Resource, name: str, args: RegionArgs, *, endpoint: Output[str],
            account_id: Output[str], partition: Output[str], tags: dict[str, str],
            depends_on: list[pulumi.Resource]) -> aws.cloudwatch.MetricAlarm:
    """The canary's resources under `parent`, named `f"{name}-canary-…"`; returns the alarm."""
    region = args.region
    names = CanaryNames.of(args.env, region)
    child = ResourceOptions(parent=parent)

    thing = aws.iot.Thing(f"{name}-canary-thing", name=names.thing, region=region, opts=child)
    cert = aws.iot.Certificate(f"{name}-canary-cert", active=True, region=region, opts=child)
    policy = aws.iot.Policy(
        f"{name}-canary-policy", name=names.thing,
        policy=Output.all(partition, account_id).apply(lambda a: policies.dumps(policies.canary_thing(
            partition=a[0], region=region, account_id=a[1], client_id=names.thing,
            topic_prefix=names.topic_prefix))),
        region=region, tags=tags, opts=child)
    attached = aws.iot.PolicyAttachment(f"{name}-canary-policy-attachment", policy=policy.name,
                                        target=cert.arn, region=region, opts=child)
    principal = aws.iot.ThingPrincipalAttachment(f"{name}-canary-principal", thing=thing.name,
                                                 principal=cert.arn, region=region, opts=child)
    secret = aws.secretsmanager.Secret(
        f"{name}-canary-credentials", name=f"{names.thing}-credentials",
        description=f"certificate and private key of the MQTT canary thing {names.thing}",
        recovery_window_in_days=0,  # re-creatable from the stack: a replacement must not wait 7 days
        region=region, tags=tags, opts=child)
    credentials: Output[str] = Output.all(cert.certificate_pem, cert.private_key).apply(
        lambda a: json.dumps({"certificatePem": a[0], "privateKey": a[1]}))
    version = aws.secretsmanager.SecretVersion(
        f"{name}-canary-credentials-version", secret_id=secret.arn,
        # secret in state whatever the provider marks (the SDK types `secret` with an unsolvable TypeVar)
        secret_string=Output.secret(credentials),  # type: ignore[arg-type]
        region=region, opts=child)

    logs = aws.cloudwatch.LogGroup(f"{name}-canary-logs", name=f"/aws/lambda/{names.function}",
                                   retention_in_days=LOG_RETENTION_DAYS, region=region, tags=tags, opts=child)
    role = aws.iam.Role(f"{name}-canary-role", path=args.iam.path, permissions_boundary=args.iam.boundary,
                        assume_role_policy=policies.dumps(policies.lambda_trust()), tags=tags, opts=child)
    role_policy = aws.iam.RolePolicy(
        f"{name}-canary-role-policy", role=role.id,
        policy=Output.all(secret.arn, logs.arn).apply(lambda a: policies.dumps(policies.canary_function(
            secret_arn=a[0], log_group_arn=a[1], metric_namespace=METRIC_NAMESPACE, region=region))),
        opts=child)
    code = package()
    function = aws.lambda_.Function(
        f"{name}-canary", name=names.function, role=role.arn, runtime=RUNTIME, handler=HANDLER,
        code=pulumi.FileArchive(str(code.path)), source_code_hash=code.sha256_b64,
        timeout=FUNCTION_TIMEOUT_S, memory_size=128,
        environment={"variables": {
            "CANARY_ENV": args.env, "CANARY_REGION": region, "CANARY_DOMAIN": args.domain,
            "CANARY_ENDPOINT": endpoint, "CANARY_PORT": str(MQTT_PORT), "CANARY_TIMEOUT_S": str(TIMEOUT_S),
            "CANARY_CLIENT_ID": names.thing, "CANARY_TOPIC_PREFIX": names.topic_prefix,
            "CANARY_SECRET_ARN": secret.arn}},
        region=region, tags=tags,
        opts=ResourceOptions(parent=parent, depends_on=[role_policy, logs, version, attached, principal,
                                                        *depends_on]))
    schedule = aws.cloudwatch.EventRule(
        f"{name}-canary-schedule", name=names.function, description=f"MQTT canary of {region}, every minute",
        schedule_expression=SCHEDULE, region=region, tags=tags, opts=child)
    permission = aws.lambda_.Permission(
        f"{name}-canary-permission", action="lambda:InvokeFunction", function=function.name,
        principal="events.amazonaws.com", source_arn=schedule.arn, region=region, opts=child)
    aws.cloudwatch.EventTarget(f"{name}-canary-target", rule=schedule.name, arn=function.arn, region=region,
                               opts=ResourceOptions(parent=parent, depends_on=[permission]))
    return aws.cloudwatch.MetricAlarm(
        f"{name}-canary-alarm", name=names.alarm,
        alarm_description=f"MQTT round trip through {args.domain} fails in {region} (or the canary does not "
                          "report); the DNS stack's health check for the region follows this alarm",
        namespace=METRIC_NAMESPACE, metric_name=METRIC_NAME, dimensions={"Env": args.env, "Region": region},
        statistic="Minimum", period=60, evaluation_periods=ALARM_PERIODS, datapoints_to_alarm=ALARM_PERIODS,
        threshold=1, comparison_operator="LessThanThreshold", treat_missing_data="breaching",
        region=region, tags=tags, opts=child)
