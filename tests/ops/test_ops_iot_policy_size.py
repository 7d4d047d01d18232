"""IoT Core's policy document limit in the local AWS world (orchestrator/drill/world/iot_plane.py): moto
takes a policy of any size, AWS refuses one over 2,048 characters, whitespace excluded (CreatePolicy,
CreatePolicyVersion). The platform's device policy must fit, and does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from programs.policies import DEVICE_POLICY_LIMIT, device_policy, iot_policy_size
from tests.ops.conftest import SRC


def _document(size: int) -> str:
    """A valid policy document of exactly `size` characters, whitespace excluded, padded with spaces."""
    head = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": ""}]}
    base = iot_policy_size(head)
    head["Statement"][0]["Resource"] = "arn:aws:iot:*:*:client/" + "x" * (size - base - len("arn:aws:iot:*:*:client/"))
    text = json.dumps(head, indent=2)  # whitespace does not count
    assert iot_policy_size(text) == size
    return text


def test_a_policy_over_the_limit_is_refused_and_nothing_is_created(iot: Any) -> None:
    control = iot(SRC)
    control.create_policy(policyName="fits", policyDocument=_document(DEVICE_POLICY_LIMIT))
    with pytest.raises(ClientError) as refused:
        control.create_policy(policyName="too-big", policyDocument=_document(DEVICE_POLICY_LIMIT + 1))
    assert refused.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "2048" in refused.value.response["Error"]["Message"]
    names = {p["policyName"] for p in control.list_policies()["policies"]}
    assert "fits" in names and "too-big" not in names
    with pytest.raises(ClientError):
        control.create_policy_version(policyName="fits", policyDocument=_document(DEVICE_POLICY_LIMIT + 1))
    assert len(control.list_policy_versions(policyName="fits")["policyVersions"]) == 1


def test_the_platforms_device_policy_is_accepted(iot: Any) -> None:
    text = json.dumps(device_policy())
    assert iot_policy_size(text) <= DEVICE_POLICY_LIMIT
    iot(SRC).create_policy(policyName="iot-dev-device", policyDocument=text)
