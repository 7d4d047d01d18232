"""IoT policy documents through the strict gate (tests/aws_gate.py -> the local AWS world's
iot_plane.py): moto takes any text as a policy; AWS refuses a malformed one at CreatePolicy and
CreatePolicyVersion with MalformedPolicyException (HTTP 400) and creates nothing. The rules and their
sources are in orchestrator/drill/world/iotpolicy.py (parse_document); every rule has a refusal test
in tests/drill/test_iot_policy_validation.py. The product's own policies are accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.drill import local, plane_demo
from programs import policies
from tests.ops.conftest import SRC

CONNECT: dict[str, Any] = {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/c1"}
GOOD: dict[str, Any] = {"Version": "2012-10-17", "Statement": [CONNECT]}
MALFORMED = {
    "not JSON": '{"Version": "2012-10-17", "Statement": [',
    "no Statement": json.dumps({"Version": "2012-10-17"}),
    "an unknown Version": json.dumps({**GOOD, "Version": "2024-01-01"}),
    "Effect Permit": json.dumps({**GOOD, "Statement": [{**CONNECT, "Effect": "Permit"}]}),
    "a resource that is not an ARN": json.dumps({**GOOD, "Statement": [{**CONNECT, "Resource": "c1"}]}),
    "an unknown condition operator": json.dumps({**GOOD, "Statement": [
        {**CONNECT, "Condition": {"StringEqual": {"iot:ClientId": "c1"}}}]}),
}


def _refused(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    return dict(error["Error"])


def test_a_malformed_policy_is_refused_and_nothing_is_created(iot: Any) -> None:
    control = iot(SRC)
    control.create_policy(policyName="good", policyDocument=json.dumps(GOOD))
    for n, (why, document) in enumerate(MALFORMED.items()):
        error = _refused(control.create_policy, policyName=f"bad-{n}", policyDocument=document)
        assert error["Code"] == "MalformedPolicyException", why
        error = _refused(control.create_policy_version, policyName="good", policyDocument=document, setAsDefault=True)
        assert error["Code"] == "MalformedPolicyException", why
    names = {p["policyName"] for p in control.list_policies()["policies"]}
    assert names == {"good"}
    versions = control.list_policy_versions(policyName="good")["policyVersions"]
    assert [(v["versionId"], v["isDefaultVersion"]) for v in versions] == [("1", True)]


def test_the_products_policies_are_accepted(iot: Any) -> None:
    control = iot(SRC)
    documents = {
        "device": policies.dumps(policies.device_policy()),
        "canary": policies.dumps(policies.canary_thing(partition="aws", region=SRC, account_id="123456789012",
                                                       client_id="canary", topic_prefix="canary/c")),
        "drill-device": local._policy_document(),
        "drill-claim": plane_demo.claim_policy(),
    }
    for name, document in documents.items():
        control.create_policy(policyName=name, policyDocument=document)
        assert control.get_policy(policyName=name)["policyDocument"] == document
