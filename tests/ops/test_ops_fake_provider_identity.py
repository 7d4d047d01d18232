"""The engine tier's stand-in `aws` provider decides who it acts as the way pulumi-aws 7 does
(tests/engine/fake_aws_provider/identity.py), against a real moto server: AssumeRole with the
role's trust policy applied (moto applies none), the account from STS, `allowedAccountIds` with the
provider's message, and the mirror writing with the assumed credentials into the role's account."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "engine" / "fake_aws_provider"
HOME = "123456789012"
B = "222222222222"
ROLE = f"arn:aws:iam::{B}:role/orchestrate-dns"


@pytest.fixture(scope="module")
def identity() -> Iterator[Any]:
    sys.path.insert(0, str(PLUGIN))
    try:
        yield importlib.import_module("identity")
    finally:
        sys.path.remove(str(PLUGIN))


def _in(url: str, role: str | None = None) -> dict[str, str]:
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    if role is not None:
        sts = boto3.client("sts", region_name="us-east-1", endpoint_url=url, **creds)
        found = sts.assume_role(RoleArn=role, RoleSessionName="setup")["Credentials"]
        creds = {"aws_access_key_id": found["AccessKeyId"], "aws_secret_access_key": found["SecretAccessKey"],
                 "aws_session_token": found["SessionToken"]}
    return creds


def _role(url: str, statement: dict[str, Any], name: str = "orchestrate-dns", path: str = "/") -> None:
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=url, **_in(url, f"arn:aws:iam::{B}:role/setup"))
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", **statement}]}
    iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(doc))


def _config(url: str, **extra: Any) -> dict[str, Any]:
    return {"region": "eu-west-1", "endpoints": json.dumps([{"sts": url, "iam": url}]), **extra}


def _assume(role: str = ROLE, **more: Any) -> str:
    return json.dumps([{"roleArn": role, "sessionName": "orchestrate-dev", **more}])


def test_a_trusted_role_is_assumed_and_the_provider_acts_in_its_account(identity: Any, moto_endpoint: str) -> None:
    _role(moto_endpoint, {"Principal": {"AWS": f"arn:aws:iam::{HOME}:root"}})
    found = identity.resolve(_config(moto_endpoint, assumeRoles=_assume()), HOME)
    assert (found.account, found.known_account, found.assumed) == (B, B, (ROLE,))
    assert found.arn == f"arn:aws:sts::{B}:assumed-role/orchestrate-dns/orchestrate-dev"
    assert found.credentials.key != "testing" and found.credentials.token
    assert "secret" not in repr(found.credentials)  # never printed
    # without roles or account lists nothing is asked: the fixture's own account
    plain = identity.resolve({"region": "eu-west-1"}, HOME)
    assert (plain.account, plain.assumed) == (HOME, ())


@pytest.mark.parametrize("principal", [None, {"AWS": "arn:aws:iam::333333333333:root"},
                                       {"AWS": f"arn:aws:iam::{HOME}:user/someone-else"},
                                       {"Service": "lambda.amazonaws.com"}],
                         ids=["missing", "other-account", "other-user", "a-service"])
def test_a_role_aws_would_not_let_the_caller_assume_is_refused_as_the_provider_says(
        identity: Any, moto_endpoint: str, principal: dict[str, Any] | None) -> None:
    if principal is not None:
        _role(moto_endpoint, {"Principal": principal})
    with pytest.raises(identity.ConfigureError) as info:
        identity.resolve(_config(moto_endpoint, assumeRoles=_assume()), HOME)
    text = str(info.value)
    assert text.startswith(f"Cannot assume IAM Role: IAM Role ({ROLE}) cannot be assumed.")
    assert "Error: operation error STS: AssumeRole, https response error StatusCode: 403" in text
    assert (f"api error AccessDenied: User: arn:aws:sts::{HOME}:user/moto is not authorized to perform: "
            f"sts:AssumeRole on resource: {ROLE}") in text


def test_trust_by_the_callers_arn_an_external_id_and_an_explicit_deny(identity: Any, moto_endpoint: str) -> None:
    _role(moto_endpoint, {"Principal": {"AWS": f"arn:aws:sts::{HOME}:user/moto"},
                          "Condition": {"StringEquals": {"sts:ExternalId": "ticket-42"}}})
    with pytest.raises(identity.ConfigureError):
        identity.resolve(_config(moto_endpoint, assumeRoles=_assume()), HOME)  # no external id
    with pytest.raises(identity.ConfigureError):
        identity.resolve(_config(moto_endpoint, assumeRoles=_assume(externalId="wrong")), HOME)
    assert identity.resolve(_config(moto_endpoint, assumeRoles=_assume(externalId="ticket-42")), HOME).account == B
    deny = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": HOME}},
                          {"Effect": "Deny", "Action": "sts:*", "Principal": "*"}]}
    assert not identity.trusts(deny, f"arn:aws:sts::{HOME}:user/moto", HOME, None)


def test_a_role_under_a_path_is_found_and_another_path_is_not_that_role(identity: Any, moto_endpoint: str) -> None:
    _role(moto_endpoint, {"Principal": {"AWS": HOME}}, name="deployer", path="/platform/")
    good = f"arn:aws:iam::{B}:role/platform/deployer"
    assert identity.resolve(_config(moto_endpoint, assumeRoles=_assume(good)), HOME).account == B
    with pytest.raises(identity.ConfigureError, match="cannot be assumed"):
        identity.resolve(_config(moto_endpoint, assumeRoles=_assume(f"arn:aws:iam::{B}:role/deployer")), HOME)


def test_roles_chain_each_assumed_with_the_credentials_of_the_one_before(identity: Any, moto_endpoint: str) -> None:
    _role(moto_endpoint, {"Principal": {"AWS": HOME}}, name="hop")
    target = "arn:aws:iam::444444444444:role/target"
    iam_c = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint,
                         **_in(moto_endpoint, "arn:aws:iam::444444444444:role/setup"))
    iam_c.create_role(RoleName="target", AssumeRolePolicyDocument=json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{B}:role/hop"}}]}))
    chain = json.dumps([{"roleArn": f"arn:aws:iam::{B}:role/hop", "sessionName": "one"},
                        {"roleArn": target, "sessionName": "two"}])
    assert identity.resolve(_config(moto_endpoint, assumeRoles=chain), HOME).account == "444444444444"
    # the target trusts the hop only: straight from the home account it is refused
    with pytest.raises(identity.ConfigureError, match="cannot be assumed"):
        identity.resolve(_config(moto_endpoint, assumeRoles=_assume(target)), HOME)


def test_allowed_account_ids_refuse_with_the_providers_message(identity: Any, moto_endpoint: str) -> None:
    _role(moto_endpoint, {"Principal": {"AWS": HOME}})
    assert identity.resolve(_config(moto_endpoint, allowedAccountIds=json.dumps([HOME])), HOME).known_account == HOME
    with pytest.raises(identity.ConfigureError, match=f"^AWS account ID not allowed: {HOME}$"):
        identity.resolve(_config(moto_endpoint, allowedAccountIds=json.dumps([B])), HOME)
    # after the role: the role's account is the one checked
    both = _config(moto_endpoint, assumeRoles=_assume(), allowedAccountIds=json.dumps([B]))
    assert identity.resolve(both, HOME).account == B
    with pytest.raises(identity.ConfigureError, match=f"^AWS account ID not allowed: {B}$"):
        identity.resolve({**both, "allowedAccountIds": [HOME]}, HOME)  # a list, as explicit providers send it
    with pytest.raises(identity.ConfigureError, match=f"^AWS account ID not allowed: {HOME}$"):
        identity.resolve(_config(moto_endpoint, forbiddenAccountIds=json.dumps([HOME])), HOME)
    # both checks skipped: the provider knows no account, and an allow list refuses every one
    skipped = _config(moto_endpoint, allowedAccountIds=json.dumps([HOME]), skipCredentialsValidation="true",
                      skipRequestingAccountId="true")
    with pytest.raises(identity.ConfigureError, match="^AWS account ID not allowed: $"):
        identity.resolve(skipped, HOME)
    assert identity.resolve({**skipped, "skipRequestingAccountId": "false"}, HOME).known_account == HOME


def test_the_mirror_writes_with_the_assumed_credentials_into_the_roles_account(identity: Any,
                                                                              moto_endpoint: str) -> None:
    from tests.engine.fake_aws_provider.moto_mirror import MotoMirror

    _role(moto_endpoint, {"Principal": {"AWS": HOME}})
    found = identity.resolve(_config(moto_endpoint, assumeRoles=_assume()), HOME)
    MotoMirror(moto_endpoint, found.credentials.boto()).created(
        "aws:s3/bucket:Bucket", "eu-west-1", "lake-in-b", {"bucket": "lake-in-b"})

    def buckets(creds: dict[str, str]) -> set[str]:
        s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=moto_endpoint, **creds)
        return {b["Name"] for b in s3.list_buckets().get("Buckets", [])}

    assert buckets(_in(moto_endpoint, f"arn:aws:iam::{B}:role/reader")) == {"lake-in-b"}
    assert buckets(_in(moto_endpoint)) == set()


def test_no_sts_to_ask_is_a_configuration_error_not_a_silent_default(identity: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_AWS_MOTO_URL", raising=False)
    with pytest.raises(identity.ConfigureError, match="no STS to ask"):
        identity.resolve({"region": "eu-west-1", "assumeRoles": _assume()}, HOME)
    assert identity.duration_seconds("1h30m") == 5400
    with pytest.raises(identity.ConfigureError):
        identity.duration_seconds("5m")
