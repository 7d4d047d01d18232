"""The MQTT canary in the programs: per region a thing, a least-privilege IoT policy, a scheduled
function packaged from its own import closure, its role, and the alarm the DNS health check follows."""

from __future__ import annotations

import json
import zipfile

import pytest

from orchestrator.drill.canary import METRIC_NAME, METRIC_NAMESPACE
from programs import canary, package, policies
from programs.contract import CanaryNames
from programs.mocks import Evaluation, ats_endpoint
from tests.programs.conftest import (
    DOMAIN,
    PRIMARY,
    SECONDARY,
    dns_eval,
    policy_attached_to,
    policy_of,
    region_eval,
)

ACCOUNT = "123456789012"
CHECK = "aws:route53/healthCheck:HealthCheck"


def _component(ev: Evaluation) -> str:
    return ev.one("iotplatform:region:IotRegion").name


@pytest.mark.parametrize("region, owner", [(PRIMARY, True), (SECONDARY, False)])
def test_every_region_has_its_canary_thing_function_schedule_and_alarm(region: str, owner: bool) -> None:
    ev, names = region_eval(region, owner), CanaryNames.of("dev", region)
    base = _component(ev)
    thing = ev.named(f"{base}-canary-thing").inputs
    assert (thing["name"], thing["region"]) == (names.thing, region)
    cert = ev.named(f"{base}-canary-cert").inputs
    assert cert["active"] is True and cert["region"] == region
    # the certificate carries the canary's policy and belongs to the canary thing
    attachment = ev.named(f"{base}-canary-policy-attachment")
    assert {f"{base}-canary-policy", f"{base}-canary-cert"} <= set(attachment.depends_on)
    principal = ev.named(f"{base}-canary-principal")
    assert principal.inputs["thing"] == names.thing and f"{base}-canary-cert" in principal.depends_on

    function = ev.named(f"{base}-canary").inputs
    assert (function["name"], function["runtime"], function["handler"], function["region"]) == (
        names.function, "python3.12", canary.HANDLER, region)
    env = function["environment"]["variables"]
    # its own region's endpoint, the custom domain as SNI, its own client id and topic
    assert env["CANARY_ENDPOINT"] == ats_endpoint(region) and env["CANARY_DOMAIN"] == DOMAIN
    assert (env["CANARY_CLIENT_ID"], env["CANARY_TOPIC_PREFIX"]) == (names.thing, f"canary/{region}")
    assert (env["CANARY_ENV"], env["CANARY_REGION"]) == ("dev", region)
    assert env["CANARY_SECRET_ARN"].startswith(f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:")
    assert "privateKey" not in json.dumps(function)  # the key reaches it through the secret only

    schedule = ev.named(f"{base}-canary-schedule").inputs
    assert schedule["scheduleExpression"] == "rate(1 minute)" and schedule["region"] == region
    target = ev.named(f"{base}-canary-target")
    assert target.inputs["arn"].endswith(f":function:{names.function}")
    assert f"{base}-canary-permission" in target.depends_on
    permission = ev.named(f"{base}-canary-permission").inputs
    assert (permission["principal"], permission["action"]) == ("events.amazonaws.com", "lambda:InvokeFunction")
    assert permission["sourceArn"].endswith(f":rule/{names.function}")


def test_the_alarm_fires_on_failed_or_missing_round_trips() -> None:
    ev = region_eval(PRIMARY, True)
    alarm = ev.named(f"{_component(ev)}-canary-alarm").inputs
    names = CanaryNames.of("dev", PRIMARY)
    assert alarm["name"] == names.alarm and alarm["region"] == PRIMARY
    assert (alarm["namespace"], alarm["metricName"]) == (METRIC_NAMESPACE, METRIC_NAME)
    assert alarm["dimensions"] == {"Env": "dev", "Region": PRIMARY}  # what the handler puts
    assert alarm["treatMissingData"] == "breaching"  # a canary that cannot report is never healthy
    assert (alarm["statistic"], alarm["comparisonOperator"], alarm["threshold"]) == (
        "Minimum", "LessThanThreshold", 1)
    assert alarm["period"] == 60 and alarm["evaluationPeriods"] == alarm["datapointsToAlarm"] == canary.ALARM_PERIODS


def test_the_canary_thing_may_only_be_itself_on_its_own_topic() -> None:
    ev = region_eval(PRIMARY, True)
    names = CanaryNames.of("dev", PRIMARY)
    policy = ev.named(f"{_component(ev)}-canary-policy")
    doc = policy_of(policy)
    assert policy.inputs["name"] == names.thing
    iot = f"arn:aws:iot:{PRIMARY}:{ACCOUNT}"
    allowed = {(a, r) for s in doc["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
               for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    assert allowed == {
        ("iot:Connect", f"{iot}:client/{names.thing}"),
        ("iot:Publish", f"{iot}:topic/canary/{PRIMARY}/*"),
        ("iot:Receive", f"{iot}:topic/canary/{PRIMARY}/*"),
        ("iot:Subscribe", f"{iot}:topicfilter/canary/{PRIMARY}/*"),
    }
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])
    assert "*" not in policies.resources_of(doc) and not any(r.endswith(":*") for r in policies.resources_of(doc))


def test_the_function_role_reads_one_secret_writes_one_log_group_and_one_metric_namespace() -> None:
    ev = region_eval(PRIMARY, True)
    base = _component(ev)
    role = ev.named(f"{base}-canary-role")
    assert json.loads(role.inputs["assumeRolePolicy"]) == policies.lambda_trust()
    doc = policy_attached_to(ev, role.name)
    statements = {s["Sid"]: s for s in doc["Statement"]}
    assert set(statements) == {"Credentials", "Logs", "Metric"}
    secret = statements["Credentials"]
    assert secret["Action"] == "secretsmanager:GetSecretValue"
    assert secret["Resource"].startswith(f"arn:aws:secretsmanager:{PRIMARY}:{ACCOUNT}:secret:")
    assert statements["Logs"]["Resource"] == (
        f"arn:aws:logs:{PRIMARY}:{ACCOUNT}:log-group:/aws/lambda/{CanaryNames.of('dev', PRIMARY).function}:*")
    metric = statements["Metric"]
    assert metric["Action"] == "cloudwatch:PutMetricData" and metric["Resource"] == "*"  # no resource-level form
    assert metric["Condition"] == {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE,
                                                    "aws:RequestedRegion": PRIMARY}}
    assert not any(a.startswith("iot:") for a in policies.actions_of(doc))


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value on the wire


def test_the_certificate_and_key_reach_the_function_only_as_a_pulumi_secret_in_its_secret() -> None:
    ev = region_eval(PRIMARY, True)
    base = _component(ev)
    version = ev.named(f"{base}-canary-credentials-version")
    assert {f"{base}-canary-cert", f"{base}-canary-credentials"} <= set(version.depends_on)
    wrapped = version.inputs["secretString"]
    assert isinstance(wrapped, dict) and SECRET_SIG in wrapped  # encrypted in the stack's state
    assert set(json.loads(wrapped["value"])) == {"certificatePem", "privateKey"}
    secret = ev.named(f"{base}-canary-credentials").inputs
    assert secret["name"] == f"{CanaryNames.of('dev', PRIMARY).thing}-credentials"


@pytest.mark.parametrize("routing, regions", [("failover", (PRIMARY, SECONDARY)),
                                              ("latency", (PRIMARY, SECONDARY))])
def test_dns_health_follows_each_regions_canary_alarm_and_its_tcp_check(routing: str,
                                                                         regions: tuple[str, ...]) -> None:
    ev = dns_eval(routing, regions)
    ids = ev.outputs["healthCheckIds"]
    for region in regions:
        mqtt = ev.named(f"iot-dev-dns-canary-check-{region}").inputs
        assert mqtt["type"] == "CLOUDWATCH_METRIC"
        assert (mqtt["cloudwatchAlarmName"], mqtt["cloudwatchAlarmRegion"]) == (
            CanaryNames.of("dev", region).alarm, region)
        assert mqtt["insufficientDataHealthStatus"] == "Unhealthy"
        gate = ev.named(f"iot-dev-dns-mqtt-gate-{region}")
        assert gate.inputs["type"] == "CALCULATED" and gate.inputs["childHealthThreshold"] == 2
        assert len(gate.inputs["childHealthchecks"]) == 2
        assert {f"iot-dev-dns-canary-check-{region}", f"iot-dev-dns-health-{region}"} == set(gate.depends_on)
        # the record (and the exported id) is the combined check, not the bare TCP one
        record = next(r for r in ev.of_type("aws:route53/record:Record")
                      if r.inputs["records"] == [ats_endpoint(region)])
        assert f"iot-dev-dns-mqtt-gate-{region}" in record.depends_on
        assert record.inputs["healthCheckId"] == ids[region]


def test_dns_alarm_name_is_the_one_the_region_stack_creates() -> None:
    """No output crosses stacks for the alarm: both sides derive it from (env, region)."""
    for region in (PRIMARY, SECONDARY):
        ev = region_eval(region, region == PRIMARY)
        alarm = ev.named(f"{_component(ev)}-canary-alarm").inputs["name"]
        check = dns_eval("failover", (PRIMARY, SECONDARY)).named(f"iot-dev-dns-canary-check-{region}")
        assert check.inputs["cloudwatchAlarmName"] == alarm


def test_single_routing_has_no_canary_check() -> None:
    assert not dns_eval("single", (PRIMARY,)).of_type(CHECK)


# -- the canary's package -----------------------------------------------------------------------

def test_canary_zip_holds_exactly_its_handlers_import_closure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    built = package.build(out_dir=tmp_path, handler=canary.HANDLER, stem="canary")
    with zipfile.ZipFile(built.path) as archive:
        names = sorted(archive.namelist())
    # orchestrator/drill has no __init__.py (a namespace package): nothing to pack for it
    assert names == ["orchestrator/__init__.py", "orchestrator/drill/canary.py",
                     "orchestrator/drill/canary_handler.py"]
    assert list(built.files) == names and built.lazy_unavailable == ()
    assert not any(n.startswith(("click", "pulumi", "yaml", "programs")) for n in names)
    assert built.path.name.startswith("canary-")
    # the function deploys exactly this zip
    ev = region_eval(PRIMARY, True)
    function = ev.named(f"{_component(ev)}-canary").inputs
    assert function["sourceCodeHash"] == built.sha256_b64


def test_canary_closure_refuses_a_module_level_import_lambda_lacks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path
    (root / "orchestrator" / "drill").mkdir(parents=True)
    (root / "orchestrator" / "__init__.py").write_text("")
    (root / "orchestrator" / "drill" / "canary_handler.py").write_text("import yaml\n\ndef handler(e, c):\n    pass\n")
    with pytest.raises(package.PackageError, match="imports yaml at module level"):
        package.closure(root, canary.HANDLER)
