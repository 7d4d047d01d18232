"""What AWS IoT refuses at CreatePolicy / CreatePolicyVersion (MalformedPolicyException), as the local
AWS world checks it (orchestrator/drill/world/iotpolicy.py `parse_document`, used by iot_plane.py's
CreatePolicy / CreatePolicyVersion and by the brokers' authoriser): one refusal per rule, what the
rules leave alone, and every IoT policy the product writes, as written and as the registry sync
rewrites it for another region, passes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.drill import local, plane_demo
from orchestrator.drill.world.iotpolicy import MalformedPolicy, PolicyError, parse, parse_document, validate
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.verify import policy_for
from programs import policies

V = "2012-10-17"
OK_STATEMENT = {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/c1"}


def _with(**changes: Any) -> dict[str, Any]:
    statement = {**OK_STATEMENT, **changes}
    return {"Version": V, "Statement": [{k: v for k, v in statement.items() if v is not None}]}


# (why, document, a fragment of the refusal's message)
REFUSED: list[tuple[str, Any, str]] = [
    ("not JSON", '{"Version": "2012-10-17", "Statement": [', "not JSON"),
    ("not an object", json.dumps([OK_STATEMENT]), "JSON object"),
    ("no Statement", {"Version": V}, "no Statement"),
    ("an empty Statement list", {"Version": V, "Statement": []}, "non-empty list"),
    ("a Statement that is a string", {"Version": V, "Statement": "allow"}, "non-empty list"),
    ("a statement that is not an object", {"Version": V, "Statement": ["x"]}, "not a JSON object"),
    ("an unknown Version", {"Version": "2012-10-18", "Statement": [OK_STATEMENT]}, "only allowed values"),
    ("a Version that is a date of another form", {"Version": "17/10/2012", "Statement": [OK_STATEMENT]},
     "only allowed values"),
    ("an unknown top-level element", {"Version": V, "Statement": [OK_STATEMENT], "Statements": []},
     "unknown policy element"),
    ("an unknown statement element", _with(Effects="Allow"), "unknown element"),
    ("no Effect", _with(Effect=None), "Effect must be Allow or Deny"),
    ("Effect in lower case", _with(Effect="allow"), "Effect must be Allow or Deny"),
    ("Effect other than Allow/Deny", _with(Effect="Permit"), "Effect must be Allow or Deny"),
    ("no Action", _with(Action=None), "no Action or NotAction"),
    ("Action and NotAction", _with(NotAction="iot:Publish"), "Action and NotAction"),
    ("an empty Action list", _with(Action=[]), "non-empty"),
    ("an Action that is not service:action", _with(Action="Connect"), "is not an action"),
    ("an Action that is a number", _with(Action=[1]), "non-empty"),
    ("no Resource", _with(Resource=None), "no Resource or NotResource"),
    ("Resource and NotResource", _with(NotResource="*"), "Resource and NotResource"),
    ("a Resource that is not an ARN", _with(Resource="client/c1"), "not an ARN or *"),
    ("a Resource ARN with too few fields", _with(Resource="arn:aws:iot:client/c1"), "not an ARN or *"),
    ("an empty Resource string", _with(Resource=""), "non-empty"),
    ("Principal and NotPrincipal", _with(Principal="*", NotPrincipal="*"), "Principal and NotPrincipal"),
    ("a Sid that is not a string", _with(Sid=7), "Sid must be a string"),
    ("an unknown condition operator", _with(Condition={"StringEqual": {"iot:ClientId": "c1"}}),
     "not a condition operator"),
    ("a Condition that is a list", _with(Condition=[{"Bool": {"k": "true"}}]), "Condition must be a JSON object"),
    ("an operator without keys", _with(Condition={"Bool": {}}), "must map condition keys"),
    ("a condition value that is an object", _with(Condition={"StringEquals": {"iot:ClientId": {"a": 1}}}),
     "strings, numbers or Booleans"),
]


@pytest.mark.parametrize(("why", "document", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_malformed_document_is_refused(why: str, document: Any, message: str) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(MalformedPolicy, match=message):
        validate(text)
    with pytest.raises(MalformedPolicy):  # the authoriser reads with the same parser
        parse(text)


ACCEPTED: list[tuple[str, Any]] = [
    ("one statement as an object", {"Version": V, "Statement": OK_STATEMENT}),
    ("no Version (2008-10-17)", {"Statement": [OK_STATEMENT]}),
    ("Version 2008-10-17", {"Version": "2008-10-17", "Statement": [OK_STATEMENT]}),
    ("an Id and a Sid", {"Version": V, "Id": "p1", "Statement": [{**OK_STATEMENT, "Sid": "S1"}]}),
    ("NotAction", _with(Action=None, NotAction="iot:Publish")),
    ("NotResource", _with(Resource=None, NotResource="arn:aws:iot:*:*:client/other")),
    ("action wildcards", _with(Action=["iot:*", "iot:Get?hingShadow", "*"])),
    ("resource *", _with(Resource="*")),
    ("a resource with colons in its name", _with(Resource="arn:aws:iot:*:*:topic/a:b")),
    # not settled by AWS's pages, so not refused (docs/field-notes-iot.md, "Policy documents")
    ("an iot: action the pages do not list", _with(Action="iot:NoSuchAction")),
    ("another service's ARN", _with(Action="greengrass:*", Resource="arn:aws:greengrass:*:*:/greengrass/groups/*")),
    ("an unknown policy variable", _with(Resource="arn:aws:iot:*:*:client/${iot:No.Such}")),
    ("operators with IfExists and set prefixes",
     _with(Condition={"StringLikeIfExists": {"iot:ClientId": "c*"}, "ForAnyValue:StringEquals": {"k": ["a", "b"]},
                      "Bool": {"iot:Connection.Thing.IsAttached": True}, "NumericLessThan": {"n": 3}})),
]


@pytest.mark.parametrize(("why", "document"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_a_valid_document_is_accepted(why: str, document: Any) -> None:
    validate(json.dumps(document))


def test_the_authoriser_still_refuses_what_it_does_not_model_in_a_valid_document() -> None:
    principal = _with(Principal="*")
    validate(principal)  # AWS's pages do not refuse it
    with pytest.raises(PolicyError, match="Principal") as refused:
        parse(principal)
    assert not isinstance(refused.value, MalformedPolicy)


def _product_policies() -> dict[str, str]:
    """Every IoT policy document the product creates (programs/ and the drill's own world)."""
    docs = {f"device_policy[{p}]": policies.dumps(policies.device_policy(p)) for p in ("aws", "aws-cn", "aws-us-gov")}
    docs["canary_thing"] = policies.dumps(policies.canary_thing(
        partition="aws", region="eu-west-1", account_id="123456789012", client_id="iot-dev-canary-eu-west-1",
        topic_prefix="canary/iot-dev-canary-eu-west-1"))
    docs["drill device policy"] = local._policy_document()
    docs["drill claim policy"] = plane_demo.claim_policy()
    return docs


@pytest.mark.parametrize("name", sorted(_product_policies()))
def test_every_policy_the_product_writes_is_valid_as_written_and_as_the_sync_rewrites_it(name: str) -> None:
    document = _product_policies()[name]
    parse(document)  # valid, and evaluable by the brokers' authoriser
    assert json.loads(document)["Version"] == "2012-10-17"  # its policy variables are variables
    for mode in RegionRewrite:
        rewritten = policy_for(document, "eu-west-1", "eu-central-1", mode)
        parse(rewritten)


def test_the_canary_policy_is_rewritten_and_stays_valid() -> None:
    """The one product policy with a literal region: the sync's rewrite must keep it a valid ARN."""
    document = _product_policies()["canary_thing"]
    for mode, region in ((RegionRewrite.DESTINATION, "eu-central-1"), (RegionRewrite.WILDCARD, "*")):
        rewritten = policy_for(document, "eu-west-1", "eu-central-1", mode)
        assert f"arn:aws:iot:{region}:123456789012:client/" in rewritten
        assert parse_document(rewritten)
