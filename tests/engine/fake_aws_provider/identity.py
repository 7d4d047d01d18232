"""Who the stand-in `aws` provider acts as: `aws:assumeRoles` and `aws:allowedAccountIds`.

TEST FIXTURE ONLY. What pulumi-aws 7 (terraform-provider-aws through hashicorp/aws-sdk-go-base)
does when it is configured, before any resource is touched:

- base credentials: `aws:accessKey`/`aws:secretKey`/`aws:token`, else AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (the only sources a hermetic test has);
- `aws:assumeRoles` (a list, each role assumed with the credentials of the one before): STS
  AssumeRole with the role ARN, `sessionName`, `externalId`, `duration`; a refusal fails the
  provider's configuration with aws-sdk-go-base's "Cannot assume IAM Role" diagnostic
  ("IAM Role (<arn>) cannot be assumed. ... Error: operation error STS: AssumeRole, https response
  error StatusCode: 403, ... api error AccessDenied: User: <caller> is not authorized to perform:
  sts:AssumeRole on resource: <arn>"), and every resource the provider would have handled fails;
- the account: STS GetCallerIdentity with the final credentials, unless both
  `aws:skipCredentialsValidation` and `aws:skipRequestingAccountId` are set; then the provider
  knows no account ("") (aws-sdk-go-base `GetAwsAccountIDAndPartition`);
- `aws:allowedAccountIds` / `aws:forbiddenAccountIds`: that account must be listed (must not be),
  else the configuration fails with "AWS account ID not allowed: <account>"
  (`Config.VerifyAccountIDAllowed`): with both skips set and an allow list, every account is refused.

STS is the `sts` entry of `aws:endpoints`, else FAKE_AWS_MOTO_URL. moto (5.2.5) assumes any role
ARN, existing or not ("the role does not need to exist": moto/sts/models.py), and evaluates no
trust policy; AWS refuses both. So before asking moto, this module looks the role up in its own
account and evaluates its trust policy for the caller (`refusal`), and refuses as AWS does
(AccessDenied; AWS does not say whether the role exists). The caller's own IAM policies are not
evaluated (moto's test credentials stand for an administrator).

Nothing here prints credentials: errors name ARNs and accounts only.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ASSUME = "sts:AssumeRole"
_PEEK_SESSION = "fake-aws-trust-check"  # the stand-in's own look at the role's account (not the provider's)
_ROLE_ARN = re.compile(r"^arn:(aws[\w-]*):iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]+)$")
_ASSUMED = re.compile(r"^arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+$")
_DEFAULT_KEY = "testing"


class ConfigureError(Exception):
    """The provider cannot be configured (the engine shows the message as the provider's error)."""


@dataclass(frozen=True)
class Credentials:
    key: str
    secret: str = field(repr=False)
    token: str | None = field(default=None, repr=False)

    def boto(self) -> dict[str, str]:
        out = {"aws_access_key_id": self.key, "aws_secret_access_key": self.secret}
        if self.token:
            out["aws_session_token"] = self.token
        return out


@dataclass(frozen=True)
class Identity:
    """Who the provider acts as after Configure."""

    credentials: Credentials
    account: str
    """The account the credentials act in (what AWS puts in the ARNs it returns)."""
    arn: str
    known_account: str
    """The account the provider determined ("" when both skip settings are set)."""
    assumed: tuple[str, ...] = ()


# -- reading the provider's configuration ----------------------------------------------------------
def _json_value(value: Any) -> Any:
    """A config value: variables arrive as strings (JSON for lists/objects), args as values."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("[", "{"):
            return json.loads(text)
    return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def id_list(config: Mapping[str, Any], key: str) -> list[str]:
    value = _json_value(config.get(key))
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def assume_roles(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`aws:assumeRoles` as a list of {roleArn, sessionName, externalId, duration, ...}; entries
    without a role ARN are ignored, as the provider ignores them."""
    value = _json_value(config.get("assumeRoles"))
    if value in (None, ""):
        return []
    if isinstance(value, dict):
        value = [value]
    return [dict(r) for r in value if isinstance(r, dict) and r.get("roleArn")]


def sts_endpoint(config: Mapping[str, Any]) -> str | None:
    """The `sts` entry of `aws:endpoints` ([{service: url}]), else FAKE_AWS_MOTO_URL."""
    endpoints = _json_value(config.get("endpoints"))
    if isinstance(endpoints, dict):
        endpoints = [endpoints]
    for entry in endpoints or []:
        if isinstance(entry, dict) and entry.get("sts"):
            return str(entry["sts"])
    return os.environ.get("FAKE_AWS_MOTO_URL") or None


def base_credentials(config: Mapping[str, Any]) -> Credentials:
    key = config.get("accessKey") or os.environ.get("AWS_ACCESS_KEY_ID") or _DEFAULT_KEY
    secret = config.get("secretKey") or os.environ.get("AWS_SECRET_ACCESS_KEY") or _DEFAULT_KEY
    token = config.get("token") or os.environ.get("AWS_SESSION_TOKEN") or None
    return Credentials(str(key), str(secret), str(token) if token else None)


# -- AWS's rules for AssumeRole that moto does not apply -------------------------------------------
def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _action_matches(statement: Mapping[str, Any]) -> bool:
    if "Action" not in statement:
        return False  # NotAction: never read as a grant here (strict)
    return any(str(a).lower() in ("*", "sts:*", ASSUME.lower()) for a in _listed(statement["Action"]))


def _caller_names(caller_arn: str, caller_account: str) -> set[str]:
    """What a trust policy's `Principal.AWS` may say to name this caller."""
    names = {caller_account, f"arn:aws:iam::{caller_account}:root", caller_arn}
    assumed = _ASSUMED.match(caller_arn)
    if assumed:  # a role session is named by its role (paths aside)
        names.add(f"role:{assumed.group(2)}:{assumed.group(3)}")
    return names


def _principal_matches(principal: Any, names: set[str]) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for entry in _listed(principal.get("AWS")):
        entry = str(entry)
        if entry == "*" or entry in names:
            return True
        role = _ROLE_ARN.match(entry)
        if role and f"role:{role.group(2)}:{role.group(3)}" in names:
            return True
    return False


def _conditions_hold(condition: Any, external_id: str | None) -> bool:
    """Only `sts:ExternalId` under StringEquals/StringLike is evaluated; any other condition cannot
    be shown to hold, so it does not (strict)."""
    if not condition:
        return True
    for operator, tests in dict(condition).items():
        for key, wanted in dict(tests).items():
            if key.lower() != "sts:externalid" or operator not in ("StringEquals", "StringLike"):
                return False
            if external_id is None:
                return False
            values = [str(v) for v in _listed(wanted)]
            if operator == "StringEquals" and external_id not in values:
                return False
            if operator == "StringLike" and not any(re.fullmatch(re.escape(v).replace(r"\*", ".*")
                                                                 .replace(r"\?", "."), external_id)
                                                    for v in values):
                return False
    return True


def trusts(policy: Mapping[str, Any], caller_arn: str, caller_account: str, external_id: str | None) -> bool:
    """Does the role's trust policy let this caller AssumeRole? An explicit Deny wins; else an Allow
    that names the caller (its account, its root, its ARN, or the role of its session)."""
    names = _caller_names(caller_arn, caller_account)
    allowed = False
    for statement in _listed(policy.get("Statement")):
        if not isinstance(statement, dict) or not _action_matches(statement):
            continue
        if not _principal_matches(statement.get("Principal"), names):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow" and _conditions_hold(statement.get("Condition"), external_id):
            allowed = True
    return allowed


def _policy_document(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    from urllib.parse import unquote

    return json.loads(unquote(str(value)))


# -- talking to STS/IAM (moto) ---------------------------------------------------------------------
class Sts:
    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, service: str, creds: Credentials) -> Any:
        # deferred: only a provider that assumes a role or checks accounts pays for boto3; retries as
        # terraform-provider-aws's (25, standard mode) on the tier's time scale (retries.py)
        from tests.engine.fake_aws_provider import retries

        return retries.client(service, "us-east-1", self.url, creds.boto())

    def caller(self, creds: Credentials) -> tuple[str, str]:
        found = self.client("sts", creds).get_caller_identity()
        return str(found["Account"]), str(found["Arn"])

    def refusal(self, creds: Credentials, role_arn: str, external_id: str | None) -> str | None:
        """Why AWS would refuse this AssumeRole (AccessDenied's message), or None."""
        caller_account, caller_arn = self.caller(creds)
        denied = (f"User: {caller_arn} is not authorized to perform: {ASSUME} on resource: {role_arn}")
        match = _ROLE_ARN.match(role_arn)
        if not match:
            return f"ValidationError: {role_arn} is not a valid role ARN"
        # the role lives in its own account: look at it there (moto lets any ARN be assumed)
        peek = self.client("sts", creds).assume_role(RoleArn=role_arn, RoleSessionName=_PEEK_SESSION)["Credentials"]
        iam = self.client("iam", Credentials(peek["AccessKeyId"], peek["SecretAccessKey"], peek["SessionToken"]))
        try:
            role = iam.get_role(RoleName=match.group(3))["Role"]
        except iam.exceptions.NoSuchEntityException:
            return denied  # AWS does not tell a missing role from an untrusting one
        if role.get("Arn") != role_arn:
            return denied  # another path: not this role
        if not trusts(_policy_document(role.get("AssumeRolePolicyDocument") or {}), caller_arn,
                      caller_account, external_id):
            return denied
        return None

    def assume(self, creds: Credentials, role: Mapping[str, Any]) -> Credentials:
        role_arn = str(role["roleArn"])
        external_id = role.get("externalId") or None
        reason = self.refusal(creds, role_arn, external_id)
        if reason is not None:
            raise ConfigureError(cannot_assume(role_arn, f"api error AccessDenied: {reason}"))
        request: dict[str, Any] = {"RoleArn": role_arn,
                                   "RoleSessionName": str(role.get("sessionName") or "aws-go-sdk-fake")}
        if external_id:
            request["ExternalId"] = str(external_id)
        if role.get("duration"):
            request["DurationSeconds"] = duration_seconds(str(role["duration"]))
        try:
            found = self.client("sts", creds).assume_role(**request)["Credentials"]
        except Exception as exc:  # noqa: BLE001 - botocore's error, shown as the provider shows it
            raise ConfigureError(cannot_assume(role_arn, str(exc))) from None
        return Credentials(found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"])


def duration_seconds(text: str) -> int:
    """A Go duration ("1h", "15m", "900s", "1h30m") in seconds; 15 minutes to 12 hours."""
    parts = re.findall(r"(\d+)(h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigureError(f"assume_role.duration: invalid duration {text!r}")
    seconds = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if not 900 <= seconds <= 43200:
        raise ConfigureError(f"assume_role.duration: {text} is not between 15 minutes and 12 hours")
    return seconds


def cannot_assume(role_arn: str, error: str) -> str:
    """aws-sdk-go-base's cannotAssumeRoleError (summary, then detail)."""
    request_id = uuid.uuid4()
    return (f"Cannot assume IAM Role: IAM Role ({role_arn}) cannot be assumed.\n\n"
            "There are a number of possible causes of this - the most common are:\n"
            "  * The credentials used in order to assume the role are invalid\n"
            "  * The credentials do not have appropriate permission to assume the role\n"
            "  * The role ARN is not valid\n\n"
            f"Error: operation error STS: AssumeRole, https response error StatusCode: 403, "
            f"RequestID: {request_id}, {error}\n")


def verify_account_allowed(account: str, allowed: list[str], forbidden: list[str]) -> None:
    """aws-sdk-go-base `Config.VerifyAccountIDAllowed`."""
    if account in forbidden or (allowed and account not in allowed):
        raise ConfigureError(f"AWS account ID not allowed: {account}")


def resolve(config: Mapping[str, Any], default_account: str) -> Identity:
    """The provider's identity for `config` (keys without the `aws:` prefix); `ConfigureError` when
    the provider would refuse to start. Without roles or account lists nothing is asked: the
    credentials act in `default_account` (the fixture's account, moto's for its test keys)."""
    creds = base_credentials(config)
    roles = assume_roles(config)
    allowed, forbidden = id_list(config, "allowedAccountIds"), id_list(config, "forbiddenAccountIds")
    if not roles and not allowed and not forbidden:
        return Identity(creds, default_account, f"arn:aws:iam::{default_account}:user/orchestrate-test",
                        default_account)
    url = sts_endpoint(config)
    if url is None:
        raise ConfigureError("the stand-in aws provider has no STS to ask (set FAKE_AWS_MOTO_URL, or an sts "
                             "entry in aws:endpoints) for aws:assumeRoles / aws:allowedAccountIds")
    sts = Sts(url)
    for role in roles:
        creds = sts.assume(creds, role)
    account, arn = sts.caller(creds)
    skip = _truthy(config.get("skipCredentialsValidation")) and _truthy(config.get("skipRequestingAccountId"))
    known = "" if skip else account
    verify_account_allowed(known, allowed, forbidden)
    return Identity(creds, account, arn, known, tuple(str(r["roleArn"]) for r in roles))
