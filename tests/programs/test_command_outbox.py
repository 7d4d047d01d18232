"""The command outbox in the replication program (docs/adr/0002-command-outbox.md): the global table
with a replica in every member region and TTL on what `outbox.enqueue` writes, and in every member
region the replay function, its two topic rules and a least-privilege role."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache

import pytest

from orchestrator.errors import InputRejected
from orchestrator.registry import outbox
from orchestrator.topology import parse
from programs import package, policies
from programs.contract import OutboxNames, ReplicationArgs
from programs.mocks import Evaluation, evaluate
from programs.replication import OUTBOX_HANDLER, outbox_rule_sql
from tests.programs.conftest import PRIMARY, SECONDARY, THIRD, policy_attached_to, replication_args

NAME = "iot-dev-replication"
ACCOUNT = "123456789012"
MEMBERS = (PRIMARY, SECONDARY, THIRD)


@cache
def with_outbox(enabled: bool = True) -> Evaluation:
    return evaluate(replace(replication_args(SECONDARY, THIRD), routing="failover", command_outbox=enabled),
                    stack="dev-replication")


def test_without_the_topology_key_nothing_of_the_outbox_is_declared() -> None:
    ev = with_outbox(False)
    assert not [r.name for r in ev.resources if "outbox" in r.name]


def test_the_table_is_global_with_a_replica_in_every_member_region_and_ttl_on_expires_at() -> None:
    table = with_outbox().named(f"{NAME}-command-outbox")
    inputs = table.inputs
    assert inputs["name"] == OutboxNames.of("dev", PRIMARY).table == "iot-dev-command-outbox"
    assert inputs["region"] == PRIMARY  # the table region (home_region, else the primary)
    assert sorted(r["regionName"] for r in inputs["replicas"]) == sorted((SECONDARY, THIRD))
    assert inputs["streamEnabled"] is True  # global tables replicate through the stream
    # the key and the TTL attribute are what outbox.enqueue writes
    assert (inputs["hashKey"], inputs["rangeKey"]) == ("thing", "commandId")
    assert inputs["ttl"] == {"enabled": True, "attributeName": outbox.TTL_ATTRIBUTE}
    assert inputs["billingMode"] == "PAY_PER_REQUEST" and inputs["serverSideEncryption"] == {"enabled": True}


def test_enqueue_writes_the_keys_and_the_ttl_attribute_the_table_declares() -> None:
    class Capture:
        class exceptions:  # noqa: N801 - boto3's shape
            class ConditionalCheckFailedException(Exception):
                pass

        item: dict[str, dict[str, str]] = {}

        def put_item(self, **kwargs: object) -> None:
            Capture.item = kwargs["Item"]  # type: ignore[assignment]

    command_id = "01JE0000000000000000000001"
    outbox.enqueue(Capture(), "t", thing="s-1", command_id=command_id, topic="cmd/s-1",
                   payload=json.dumps({"commandId": command_id}).encode(), origin_region=PRIMARY, now=1000.0)
    assert {"thing", "commandId", outbox.TTL_ATTRIBUTE} <= set(Capture.item)
    assert Capture.item[outbox.TTL_ATTRIBUTE] == {"N": str(1000 + outbox.DEFAULT_EXPIRY_S)}


@pytest.mark.parametrize("region", MEMBERS)
def test_each_member_region_has_the_function_invoked_by_its_two_rules(region: str) -> None:
    ev = with_outbox()
    names = OutboxNames.of("dev", region)
    fn = ev.named(f"{NAME}-outbox-{region}").inputs
    assert fn["region"] == region and fn["name"] == names.function
    assert fn["handler"] == OUTBOX_HANDLER == "orchestrator.registry.outbox_function.handler"
    assert fn["environment"]["variables"] == {"OUTBOX_TABLE": "iot-dev-command-outbox"}
    built = package.build(handler=OUTBOX_HANDLER, stem="outbox")
    assert fn["sourceCodeHash"] == built.sha256_b64 and fn["code"]["fileArchive"] == str(built.path)
    function_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{names.function}"
    for kind, rule_name in (("connected", names.connected_rule), ("ack", names.ack_rule)):
        rule = ev.named(f"{NAME}-outbox-{kind}-rule-{region}").inputs
        assert rule["region"] == region and rule["name"] == rule_name and rule["enabled"] is True
        assert rule["sql"] == outbox_rule_sql()[kind] and rule["sqlVersion"] == "2016-03-23"
        assert rule["lambdas"] == [{"functionArn": function_arn}]
        permission = ev.named(f"{NAME}-outbox-{kind}-permission-{region}").inputs
        # only that rule, in this account, may invoke the function
        assert permission == {"action": "lambda:InvokeFunction", "function": names.function,
                              "principal": "iot.amazonaws.com", "sourceAccount": ACCOUNT, "region": region,
                              "sourceArn": f"arn:aws:iot:{region}:{ACCOUNT}:rule/{rule_name}"}


def test_the_rules_select_what_the_function_reads() -> None:
    sql = outbox_rule_sql()
    # AWS IoT Core developer guide, "Lifecycle events": connects are published to
    # $aws/events/presence/connected/<clientId> with clientId, eventType, timestamp (no sessionPresent)
    assert sql["connected"] == "SELECT clientId, eventType, timestamp FROM '$aws/events/presence/connected/+'"
    # cmd/ack/<thing>: the thing is the topic's third level, not something the payload claims
    assert sql["ack"] == "SELECT topic(3) AS thing, commandIds, replay, 'ack' AS eventType FROM 'cmd/ack/+'"


def test_the_function_role_is_least_privilege_in_its_own_region() -> None:
    ev = with_outbox()
    for region in MEMBERS:
        doc = policy_attached_to(ev, ev.named(f"{NAME}-outbox-role-{region}").name)
        by_sid = {s["Sid"]: s for s in doc["Statement"]}
        assert set(by_sid) == {"OutboxReplica", "PublishCommands", "NeverAcknowledgements", "DataEndpoint", "Logs"}
        assert by_sid["OutboxReplica"] == {
            "Sid": "OutboxReplica", "Effect": "Allow", "Action": ["dynamodb:Query", "dynamodb:UpdateItem"],
            "Resource": f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/iot-dev-command-outbox"}
        assert by_sid["PublishCommands"] == {"Sid": "PublishCommands", "Effect": "Allow", "Action": "iot:Publish",
                                             "Resource": f"arn:aws:iot:{region}:{ACCOUNT}:topic/cmd/*"}
        assert by_sid["NeverAcknowledgements"]["Effect"] == "Deny"
        assert by_sid["NeverAcknowledgements"]["Resource"] == [f"arn:aws:iot:{region}:{ACCOUNT}:topic/cmd/ack",
                                                               f"arn:aws:iot:{region}:{ACCOUNT}:topic/cmd/ack/*"]
        assert by_sid["DataEndpoint"]["Action"] == "iot:DescribeEndpoint"
        assert by_sid["DataEndpoint"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": region}}
        assert by_sid["Logs"]["Resource"] == \
            f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/lambda/{OutboxNames.of('dev', region).function}:*"
        # nothing in another region, no wildcard action, no write beyond UpdateItem
        for statement in doc["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert not any(a.endswith("*") for a in actions)
            assert not any(a in {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"} for a in actions)
            for resource in policies.resources_of({"Statement": [statement]}):
                assert resource == "*" or f":{region}:" in resource, resource
        resources = policies.resources_of(doc)
        assert all(r == "*" or f":{region}:" in r for r in resources)


def test_the_device_policy_lets_a_device_follow_the_contract_and_no_further() -> None:
    """docs/devices.md: a device subscribes to and receives cmd/<itself>, acknowledges on
    cmd/ack/<itself>; it never receives another device's commands or anyone's acknowledgements."""
    from orchestrator.drill.world.iotpolicy import Action, Principal, evaluate, parse

    assert (policies.OUTBOX_COMMANDS, policies.OUTBOX_ACKS) == (outbox.COMMAND_PREFIX, outbox.ACK_PREFIX)
    device = parse(policies.dumps(policies.device_policy()))

    def me(thing: str = "sensor-7") -> Principal:
        return Principal(PRIMARY, ACCOUNT, thing, thing)

    for topic in ("cmd/sensor-7", "cmd/sensor-7/reboot"):
        assert evaluate(device, Action.SUBSCRIBE, topic, me()) and evaluate(device, Action.RECEIVE, topic, me())
        assert not evaluate(device, Action.PUBLISH, topic, me())  # commands are the cloud's to send
    assert evaluate(device, Action.PUBLISH, "cmd/ack/sensor-7", me())
    assert not evaluate(device, Action.PUBLISH, "cmd/ack/sensor-8", me())
    for action in (Action.SUBSCRIBE, Action.RECEIVE):
        assert not evaluate(device, action, "cmd/sensor-8", me())
        assert not evaluate(device, action, "cmd/ack/sensor-7", me())
        # a thing named `ack` would match cmd/ack/* as its own commands: the deny wins
        assert not evaluate(device, action, "cmd/ack/sensor-7", me("ack"))


def test_the_topology_key_is_validated_and_reaches_the_stack_config() -> None:
    base = {"domain": "iot.example.com", "hosted_zone": "example.com", "primary": PRIMARY,
            "secondaries": [SECONDARY], "residency": [PRIMARY, SECONDARY]}
    topology = parse({**base, "registry": {"command_outbox": True}}, env="dev", source="dev.topology.yaml")
    assert topology.registry.command_outbox is True
    assert topology.to_document()["registry"]["command_outbox"] is True
    assert parse(topology.to_document(), env="dev").registry.command_outbox is True
    args = replace(replication_args(SECONDARY), command_outbox=True)
    assert ReplicationArgs.from_config(args.to_config().get).command_outbox is True
    assert "commandOutbox" not in replication_args(SECONDARY).to_config()
    from orchestrator.stacks import wiring

    outputs = {r: wiring.placeholder_outputs(r) for r in topology.regions}
    assert wiring.replication_spec(topology, outputs).config["iot-platform:commandOutbox"] == "true"
    off = parse(base, env="dev")
    assert "iot-platform:commandOutbox" not in wiring.replication_spec(off, outputs).config
    assert off.registry.command_outbox is False and "command_outbox" not in off.to_document()["registry"]
    for bad in ("yes", 1, None):
        with pytest.raises(InputRejected, match="dev.topology.yaml: registry.command_outbox: must be true or false"):
            parse({**base, "registry": {"command_outbox": bad}}, env="dev", source="dev.topology.yaml")


@pytest.mark.parametrize("region", MEMBERS)
def test_each_regions_outbox_function_has_an_alarm_on_its_lambda_errors(region: str) -> None:
    ev = with_outbox()
    names = OutboxNames.of("dev", region)
    alarm = ev.named(f"{NAME}-outbox-errors-alarm-{region}").inputs
    assert alarm["region"] == region and alarm["name"] == names.errors_alarm == f"{names.function}-errors"
    # the function's own Errors metric, in its own region: any failed invocation in a minute alarms
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["dimensions"] == {"FunctionName": names.function}
    assert (alarm["statistic"], alarm["period"], alarm["evaluationPeriods"]) == ("Sum", 60, 1)
    assert (alarm["threshold"], alarm["comparisonOperator"]) == (0, "GreaterThanThreshold")
    assert alarm["treatMissingData"] == "notBreaching"  # no connects, no invocations: nothing wrong
    assert names.function in alarm["alarmDescription"]


def test_no_outbox_alarm_without_the_outbox() -> None:
    assert not [r for r in with_outbox(False).resources if r.type == "aws:cloudwatch/metricAlarm:MetricAlarm"
                and "outbox" in str(dict(r.inputs).get("name"))]
