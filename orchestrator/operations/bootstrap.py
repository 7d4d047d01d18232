"""`orchestrate bootstrap`: what an environment needs before its first `up` from CI.

Creates, in the state region (never the primary: the state must outlive the region it describes):
  - the KMS key of the state (rotation on) with the alias `alias/iot-<env>-state`;
  - the state bucket: Object Lock enabled at creation (it cannot be added later), versioning,
    SSE-KMS with that key, public access blocked, a bucket policy refusing anything but TLS;
  - the GitHub OIDC provider (token.actions.githubusercontent.com, audience sts.amazonaws.com);
  - the four CI roles the workflows assume, each trusted only for OIDC tokens of one repository and
    one GitHub environment (`sub` = repo:<owner>/<repo>:environment:<name>, `aud` = sts.amazonaws.com),
    each with one inline policy generated here (`role_policies`: what each workflow calls).

Idempotent: every setting is read first and only what differs is written; a second run writes
nothing and says so. `ok` only when every setting reads back as asked. `--print` renders the plan and
every policy document and makes no AWS write call (reads only: who am I, what exists).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import InputRejected, OperationFailed

Document = dict[str, Any]

OIDC_HOST = "token.actions.githubusercontent.com"
OIDC_AUDIENCE = "sts.amazonaws.com"
# The thumbprints of GitHub's OIDC certificate chain (AWS no longer checks them for this provider,
# but CreateOpenIDConnectProvider still takes one in older partitions).
OIDC_THUMBPRINTS = ("6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd")
SYNC_SESSION_S = 21600  # registry-sync.yml's role-duration-seconds (timeout-minutes 360)
DEFAULT_SESSION_S = 3600
POLICY_NAME = "orchestrate-ci"


@dataclass(frozen=True)
class RoleSpec:
    """A CI role: who may assume it (one GitHub environment) and what it may do."""

    key: str  # preview | apply | backup | sync
    name: str
    environment: str  # the GitHub environment whose tokens it trusts
    workflows: str  # which workflows assume it (and through which variable)
    covers: str  # what its policy allows, in a sentence
    max_session_s: int
    trust: Document
    policy: Document


@dataclass(frozen=True)
class BootstrapSpec:
    env: str
    repo: str  # owner/name
    state_region: str
    account: str
    partition: str = "aws"
    bucket: str = ""
    iam_path: str = "/"
    permissions_boundary: str = ""
    # the topology's `accounts:` (a member region, dns or backups -> the role ARN to assume there)
    account_roles: tuple[tuple[str, str], ...] = ()

    @property
    def bucket_name(self) -> str:
        return self.bucket or f"iot-{self.env}-state-{self.account}"

    @property
    def alias(self) -> str:
        return f"alias/iot-{self.env}-state"

    @property
    def oidc_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:oidc-provider/{OIDC_HOST}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket_name}"

    @property
    def backend_url(self) -> str:
        return f"s3://{self.bucket_name}?region={self.state_region}"


def validate(spec: BootstrapSpec, primary: str) -> None:
    """Bad input (exit 2, nothing touched)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}", spec.repo):
        raise InputRejected(f"--repo {spec.repo[:60]!r}: expected OWNER/NAME of the GitHub repository")
    if spec.state_region == primary:
        raise InputRejected(f"--state-region {spec.state_region} is the primary region of env {spec.env}: "
                            "the state must outlive the region it describes",
                            hint="pick a region outside the environment's primary (e.g. its backup region)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", spec.bucket_name) or ".." in spec.bucket_name:
        raise InputRejected(f"--bucket {spec.bucket_name[:70]!r} is not a valid S3 bucket name")


# -- documents ------------------------------------------------------------------------------------
def _doc(*statements: Document) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def trust_policy(spec: BootstrapSpec, environment: str) -> Document:
    """Only OIDC tokens of this repository's GitHub environment `environment`, for STS."""
    return _doc({
        "Sid": "GitHubEnvironment",
        "Effect": "Allow",
        "Principal": {"Federated": spec.oidc_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            f"{OIDC_HOST}:aud": OIDC_AUDIENCE,
            f"{OIDC_HOST}:sub": f"repo:{spec.repo}:environment:{environment}",
        }},
    })


def bucket_policy(spec: BootstrapSpec) -> Document:
    return _doc({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [spec.bucket_arn, f"{spec.bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })


# Read-only actions over every service the programs declare (programs/*.py), for `pulumi preview`
# and refresh. No object or item reads: the lake's objects, table items and secrets stay unreadable.
_READ = [
    "acm:DescribeCertificate", "acm:ListCertificates", "acm:ListTagsForCertificate",
    "cloudtrail:DescribeTrails", "cloudtrail:GetEventSelectors", "cloudtrail:GetTrail", "cloudtrail:GetTrailStatus",
    "cloudtrail:ListTags",
    "cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource",
    "dynamodb:DescribeContinuousBackups", "dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive",
    "dynamodb:ListTagsOfResource",
    "events:DescribeRule", "events:ListTagsForResource", "events:ListTargetsByRule",
    "firehose:DescribeDeliveryStream", "firehose:ListTagsForDeliveryStream",
    "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies",
    "iot:Describe*", "iot:GetIndexingConfiguration", "iot:GetLoggingOptions", "iot:GetPolicy", "iot:GetPolicyVersion",
    "iot:GetTopicRule", "iot:GetV2LoggingOptions", "iot:List*",  # not iot:Get*: that reads device shadows
    "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:ListTagsForStream",
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListAliases", "kms:ListResourceTags",
    "logs:DescribeLogGroups", "logs:ListTagsForResource",
    "route53:GetChange", "route53:GetHealthCheck", "route53:GetHostedZone", "route53:ListHostedZones",
    "route53:ListResourceRecordSets", "route53:ListTagsForResource",
    "route53-recovery-control-config:Describe*", "route53-recovery-control-config:List*",
    "route53-recovery-cluster:GetRoutingControlState", "route53-recovery-cluster:ListRoutingControls",
    "s3:GetAccelerateConfiguration", "s3:GetBucket*", "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration", "s3:ListAllMyBuckets",
    "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ListQueueTags",
    "sts:GetCallerIdentity",
]
# What `up`/`destroy` and the transitions manage: these services' resources, nothing else.
_MANAGE = [
    "acm:*", "cloudtrail:*", "cloudwatch:DeleteAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:TagResource",
    "cloudwatch:UntagResource", "dynamodb:*", "events:*", "firehose:*", "iot:*", "kinesis:*", "lambda:*",
    "logs:*", "route53:*", "route53-recovery-cluster:*", "route53-recovery-control-config:*", "s3:*", "sqs:*",
    "kms:CreateAlias", "kms:CreateKey", "kms:DeleteAlias", "kms:EnableKeyRotation", "kms:PutKeyPolicy",
    "kms:ReplicateKey", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
]
# The registry and device state, read (backup, sync) and written (sync, in the secondaries): the calls
# orchestrator/registry makes. Deleting things, certificates, groups, types, policies or templates is
# `--prune` only, which no workflow passes: those stay out, except the old versions a policy or template
# must shed to take a new one (AWS keeps five).
_REGISTRY_READ = ["iot:Describe*", "iot:List*", "iot:GetIndexingConfiguration", "iot:GetPolicy",
                  "iot:GetPolicyVersion", "iot:SearchIndex", "sts:GetCallerIdentity"]
_SHADOW_READ = ["iot:GetThingShadow"]
_REGISTRY_WRITE = [
    "iot:AddThingToThingGroup", "iot:AttachPolicy", "iot:AttachThingPrincipal", "iot:CreateAuthorizer",
    "iot:CreateJobTemplate", "iot:CreatePolicy", "iot:CreatePolicyVersion", "iot:CreateProvisioningTemplate",
    "iot:CreateProvisioningTemplateVersion", "iot:CreateRoleAlias", "iot:CreateThing", "iot:CreateThingGroup",
    "iot:CreateThingType", "iot:DeletePolicyVersion", "iot:DeleteProvisioningTemplateVersion",
    "iot:DeleteThingShadow", "iot:DeprecateThingType", "iot:DetachPolicy", "iot:DetachThingPrincipal",
    "iot:RegisterCACertificate", "iot:RegisterCertificateWithoutCA", "iot:RemoveThingFromThingGroup",
    "iot:SetDefaultPolicyVersion", "iot:TagResource", "iot:UpdateAuthorizer", "iot:UpdateCACertificate",
    "iot:UpdateCertificate", "iot:UpdateEventConfigurations", "iot:UpdateIndexingConfiguration",
    "iot:UpdateProvisioningTemplate", "iot:UpdateRoleAlias", "iot:UpdateThing", "iot:UpdateThingGroup",
    "iot:UpdateThingShadow",
]


def _state_read(spec: BootstrapSpec, key_arn: str) -> list[Document]:
    return [
        {"Sid": "StateList", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": spec.bucket_arn},
        {"Sid": "StateRead", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": f"{spec.bucket_arn}/*"},
        {"Sid": "StateKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
         "Resource": key_arn},
    ]


def _state_write(spec: BootstrapSpec, sid: str, prefixes: tuple[str, ...]) -> Document:
    """Put/Delete under `prefixes` (at the bucket's root and under one backend path)."""
    resources = sorted({f"{spec.bucket_arn}/{p}" for prefix in prefixes for p in (prefix, f"*/{prefix}")})
    return {"Sid": sid, "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"], "Resource": resources}


def role_specs(spec: BootstrapSpec, key_arn: str) -> list[RoleSpec]:
    """The four CI roles and their policies (generated; `--print` shows them)."""
    env, arn = spec.env, spec.bucket_arn
    ci_roles = [f"arn:{spec.partition}:iam::{spec.account}:role{spec.iam_path}iot-{env}-{k}"
                for k in ("preview", "apply", "backup", "sync")]
    preview = _doc(
        {"Sid": "ReadDeclaredServices", "Effect": "Allow", "Action": _READ, "Resource": "*"},
        *_state_read(spec, key_arn),
        _state_write(spec, "PulumiLocks", (".pulumi/locks/*",)),
    )
    protect_state = {"Sid": "StateBucketSettingsStay", "Effect": "Deny",
                     "Action": ["s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketPolicy",
                                "s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning",
                                "s3:PutEncryptionConfiguration", "s3:PutBucketPublicAccessBlock",
                                "s3:BypassGovernanceRetention", "s3:DeleteObjectVersion"],
                     "Resource": [arn, f"{arn}/*"]}
    protect_key = {"Sid": "StateKeyStays", "Effect": "Deny",
                   "Action": ["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy",
                              "kms:DisableKeyRotation", "kms:DeleteAlias", "kms:UpdateAlias"],
                   "Resource": [key_arn, f"arn:{spec.partition}:kms:{spec.state_region}:{spec.account}:{spec.alias}"]}
    protect_ci = {"Sid": "CiRolesStay", "Effect": "Deny", "Action": "iam:*", "Resource": ci_roles}
    iam_roles = f"arn:{spec.partition}:iam::{spec.account}:role{spec.iam_path}*"
    # Creating a role or changing its permissions carries the org's boundary when the topology names one.
    iam_manage: Document = {
        "Sid": "ProgramRolesPermissions", "Effect": "Allow",
        "Action": ["iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy"], "Resource": iam_roles}
    if spec.permissions_boundary:
        iam_manage["Condition"] = {"StringEquals": {"iam:PermissionsBoundary": spec.permissions_boundary}}
    apply = _doc(
        {"Sid": "ManageDeclaredServices", "Effect": "Allow", "Action": _MANAGE + _READ, "Resource": "*"},
        iam_manage,
        {"Sid": "ProgramRoles", "Effect": "Allow",
         "Action": ["iam:DeleteRole", "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
                    "iam:ListInstanceProfilesForRole", "iam:ListRolePolicies", "iam:TagRole", "iam:UntagRole",
                    "iam:UpdateAssumeRolePolicy", "iam:UpdateRole"],
         "Resource": iam_roles},
        {"Sid": "PassProgramRoles", "Effect": "Allow", "Action": "iam:PassRole", "Resource": iam_roles,
         "Condition": {"StringEquals": {"iam:PassedToService": [
             "iot.amazonaws.com", "firehose.amazonaws.com", "events.amazonaws.com", "s3.amazonaws.com",
             "lambda.amazonaws.com"]}}},
        {"Sid": "StateKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
         "Resource": key_arn},
        protect_state, protect_key, protect_ci,
    )
    backup = _doc(
        {"Sid": "ReadRegistry", "Effect": "Allow", "Action": _REGISTRY_READ, "Resource": "*"},
        {"Sid": "FindVault", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": f"arn:{spec.partition}:s3:::iot-{env}-backups-*"},
        {"Sid": "WriteVault", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": f"arn:{spec.partition}:s3:::iot-{env}-backups-*/*"},
        *_state_read(spec, key_arn),
        _state_write(spec, "RunState", (".orchestrate/*",)),
    )
    sync = _doc(
        {"Sid": "ReadRegistry", "Effect": "Allow", "Action": _REGISTRY_READ + _SHADOW_READ, "Resource": "*"},
        {"Sid": "WriteRegistry", "Effect": "Allow", "Action": _REGISTRY_WRITE, "Resource": "*"},
        # a role alias or provisioning template copied to a secondary names an IAM role IoT assumes
        {"Sid": "PassRegistryRoles", "Effect": "Allow", "Action": "iam:PassRole", "Resource": iam_roles,
         "Condition": {"StringEquals": {"iam:PassedToService": ["credentials.iot.amazonaws.com",
                                                                "iot.amazonaws.com"]}}},
        # `registry reconcile --start` (the weekly --full): each secondary's reconciliation machine,
        # its executions, and the fleet size from the applied table's reconciliation item
        {"Sid": "ReconcileMachines", "Effect": "Allow",
         "Action": ["states:DescribeStateMachine", "states:ListExecutions", "states:StartExecution"],
         "Resource": f"arn:{spec.partition}:states:*:{spec.account}:stateMachine:iot-{env}-reconcile-*"},
        {"Sid": "ReconcileExecutions", "Effect": "Allow", "Action": "states:DescribeExecution",
         "Resource": f"arn:{spec.partition}:states:*:{spec.account}:execution:iot-{env}-reconcile-*:*"},
        {"Sid": "ReconcileFleetSize", "Effect": "Allow", "Action": "dynamodb:GetItem",
         "Resource": f"arn:{spec.partition}:dynamodb:*:{spec.account}:table/iot-{env}-replication-applied-*"},
        *_state_read(spec, key_arn),
        _state_write(spec, "RunState", (".orchestrate/*",)),
    )

    # Across accounts the caller's own policy must allow sts:AssumeRole on the role it assumes (the
    # role's trust policy alone is not enough). Each CI role gets the roles of the accounts it acts in:
    # preview and apply every stack's, backup the regions' and the backups account's, sync the regions'.
    targets = dict(spec.account_roles)
    acts_in = {"preview": set(targets), "apply": set(targets), "backup": set(targets) - {"dns"},
               "sync": set(targets) - {"dns", "backups"}}
    for key, policy in (("preview", preview), ("apply", apply), ("backup", backup), ("sync", sync)):
        roles = sorted({targets[t] for t in acts_in[key]})
        if roles:
            policy["Statement"].append({"Sid": "AssumeAccountRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
                                        "Resource": roles})

    def role(key: str, environment: str, workflows: str, covers: str, policy: Document,
             session: int = DEFAULT_SESSION_S) -> RoleSpec:
        return RoleSpec(key, f"iot-{env}-{key}", environment, workflows, covers, session,
                        trust_policy(spec, environment), policy)

    return [
        role("preview", f"preview-{env}", "preview.yml, drift.yml (AWS_PREVIEW_ROLE_ARN)",
             "read-only Describe/Get/List on the services the programs declare (no object, item or secret "
             "reads); the state read and Pulumi's lock files written; the state key", preview),
        role("apply", env, "apply.yml (AWS_ROLE_ARN), failover.yml (AWS_LIFECYCLE_ROLE_ARN)",
             "manage the services the programs declare; IAM only for roles under the topology's path"
             + (" carrying its permissions boundary" if spec.permissions_boundary else "")
             + ", PassRole only to IoT/Firehose/EventBridge/S3/Lambda; denied: changing the state bucket's settings, "
             "the state key and the CI roles", apply),
        role("backup", f"backup-{env}", "backup.yml (AWS_BACKUP_ROLE_ARN)",
             "read the registry and the state; write objects only into the env's backup vault "
             f"(iot-{env}-backups-*) and the run state; signs through the signing key's own policy", backup),
        role("sync", f"sync-{env}", "registry-sync.yml (AWS_SYNC_ROLE_ARN)",
             "read the registry and shadows, write registry objects and shadows (no deletes of things, "
             "certificates, groups or policies), PassRole to IoT for role aliases and templates, the run state; "
             "start and read the reconciliation state machines (registry reconcile --start)",
             sync, SYNC_SESSION_S),
    ]


# -- the plan -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    changes: tuple[str, ...]
    checks: tuple[tuple[str, bool], ...]
    spec: BootstrapSpec
    key_arn: str
    roles: tuple[RoleSpec, ...]
    printed: bool = False

    @property
    def ok(self) -> bool:
        return all(good for _, good in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.spec.env, "account": self.spec.account, "state_region": self.spec.state_region,
            "bucket": self.spec.bucket_name, "backend_url": self.spec.backend_url, "key_alias": self.spec.alias,
            "key_arn": self.key_arn, "oidc_provider": self.spec.oidc_arn, "printed": self.printed,
            "changes": list(self.changes),
            "checks": [{"setting": name, "ok": good} for name, good in self.checks],
            "roles": [{"name": r.name, "environment": r.environment, "workflows": r.workflows, "covers": r.covers,
                       "max_session_seconds": r.max_session_s, "trust": r.trust, "policy": r.policy}
                      for r in self.roles],
            "bucket_policy": bucket_policy(self.spec),
        }


@dataclass
class Clients:
    s3: Any
    kms: Any
    iam: Any


@dataclass
class _Found:
    """What exists, read before anything is written."""

    bucket: bool = False
    key_arn: str = ""
    oidc_audiences: list[str] | None = None
    roles: dict[str, Any] = field(default_factory=dict)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _survey(spec: BootstrapSpec, c: Clients) -> _Found:
    found = _Found()
    try:
        c.s3.head_bucket(Bucket=spec.bucket_name)
        found.bucket = True
    except Exception as exc:
        code = _code(exc)
        if code in ("403", "AccessDenied", "301", "PermanentRedirect"):
            raise InputRejected(f"state bucket {spec.bucket_name} exists but is not usable here (HTTP {code}: another "
                                f"account's, or in another region than {spec.state_region})",
                                hint="pass --bucket with another name") from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise OperationFailed(f"state bucket {spec.bucket_name}: {code or exc}") from None
    if found.bucket:
        where = c.s3.get_bucket_location(Bucket=spec.bucket_name).get("LocationConstraint") or "us-east-1"
        where = "eu-west-1" if where == "EU" else where
        if where != spec.state_region:
            raise InputRejected(f"state bucket {spec.bucket_name} exists but is not usable here (it is in {where}, "
                                f"not {spec.state_region})", hint="pass --state-region " + where +
                                " or --bucket with another name")
        try:
            lock = c.s3.get_object_lock_configuration(Bucket=spec.bucket_name)["ObjectLockConfiguration"]
        except Exception as exc:
            if _code(exc) != "ObjectLockConfigurationNotFoundError":
                raise
            lock = {}
        if lock.get("ObjectLockEnabled") != "Enabled":
            raise InputRejected(f"state bucket {spec.bucket_name} exists without Object Lock, which cannot be added "
                                "later: pass --bucket with a new name (and move the state there)")
    for page in c.kms.get_paginator("list_aliases").paginate():
        for alias in page["Aliases"]:
            if alias["AliasName"] == spec.alias and alias.get("TargetKeyId"):
                found.key_arn = c.kms.describe_key(KeyId=alias["TargetKeyId"])["KeyMetadata"]["Arn"]
    try:
        found.oidc_audiences = list(c.iam.get_open_id_connect_provider(
            OpenIDConnectProviderArn=spec.oidc_arn).get("ClientIDList", []))
    except Exception as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    for name in (f"iot-{spec.env}-{k}" for k in ("preview", "apply", "backup", "sync")):
        try:
            found.roles[name] = c.iam.get_role(RoleName=name)["Role"]
        except Exception as exc:
            if _code(exc) != "NoSuchEntity":
                raise
    return found


def _same(a: Any, b: Any) -> bool:
    def norm(value: Any) -> Any:
        if isinstance(value, str):
            from urllib.parse import unquote

            try:
                return norm(json.loads(unquote(value)))
            except ValueError:
                return value
        if isinstance(value, Mapping):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            items = [norm(v) for v in value]
            return items[0] if len(items) == 1 and not isinstance(items[0], (dict, list)) else sorted(
                items, key=lambda v: json.dumps(v, sort_keys=True))
        return value

    return bool(norm(a) == norm(b))


PLACEHOLDER_KEY = "<the key created by this run>"


def plan_lines(outcome: Outcome, found_bucket: bool) -> list[str]:
    s = outcome.spec
    lines = [f"bootstrap env {s.env} in account {s.account}, state region {s.state_region}:",
             f"  KMS key {s.alias} (rotation on): {outcome.key_arn}",
             f"  state bucket {s.bucket_name}: Object Lock, versioning, SSE-KMS with that key, public access "
             f"blocked, TLS only{' (exists)' if found_bucket else ''}",
             f"  OIDC provider {OIDC_HOST} (audience {OIDC_AUDIENCE})"]
    for r in outcome.roles:
        lines.append(f"  role {r.name}: trusted for repo:{s.repo}:environment:{r.environment}; "
                     f"{r.workflows}; {r.covers}")
    lines.append(f"  backend: {s.backend_url}")
    return lines


def bootstrap(spec: BootstrapSpec, c: Clients, *, print_only: bool,
              confirm: Callable[[str, str], None], notify: Callable[[str], None]) -> Outcome:
    found = _survey(spec, c)  # reads only; refuses an unusable bucket before anything is written
    key_arn = found.key_arn or PLACEHOLDER_KEY
    roles = tuple(role_specs(spec, key_arn))
    preview = Outcome((), (), spec, key_arn, roles, printed=True)
    if print_only:
        return preview
    for line in plan_lines(preview, found.bucket):
        notify(line)
    confirm(f"create or correct the bootstrap resources of env {spec.env} in account {spec.account}", spec.env)
    changes: list[str] = []
    # -- the key
    if not found.key_arn:
        key_arn = c.kms.create_key(Description=f"orchestrate state of env {spec.env}",
                                   KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]["Arn"]
        c.kms.create_alias(AliasName=spec.alias, TargetKeyId=key_arn)
        changes.append(f"created KMS key {spec.alias}")
        roles = tuple(role_specs(spec, key_arn))
    if not c.kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"]:
        c.kms.enable_key_rotation(KeyId=key_arn)
        changes.append(f"turned key rotation on for {spec.alias}")
    # -- the bucket
    b = spec.bucket_name
    if not found.bucket:
        kwargs: dict[str, Any] = {"Bucket": b, "ObjectLockEnabledForBucket": True}
        if spec.state_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": spec.state_region}
        c.s3.create_bucket(**kwargs)
        changes.append(f"created bucket {b} with Object Lock")
    for name, wanted, read, write in _bucket_settings(spec, key_arn, c):
        if not _same(read(), wanted):
            write()
            changes.append(f"set {name} on {b}")
    # -- the OIDC provider
    if found.oidc_audiences is None:
        c.iam.create_open_id_connect_provider(Url=f"https://{OIDC_HOST}", ClientIDList=[OIDC_AUDIENCE],
                                              ThumbprintList=list(OIDC_THUMBPRINTS))
        changes.append(f"created OIDC provider {OIDC_HOST}")
    elif OIDC_AUDIENCE not in found.oidc_audiences:
        c.iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=spec.oidc_arn, ClientID=OIDC_AUDIENCE)
        changes.append(f"added audience {OIDC_AUDIENCE} to the OIDC provider")
    # -- the roles
    for r in roles:
        current = found.roles.get(r.name)
        if current is None:
            kw: dict[str, Any] = {"RoleName": r.name, "Path": spec.iam_path, "MaxSessionDuration": r.max_session_s,
                                  "AssumeRolePolicyDocument": json.dumps(r.trust),
                                  "Description": f"orchestrate CI: {r.workflows}"[:1000]}
            if spec.permissions_boundary:
                kw["PermissionsBoundary"] = spec.permissions_boundary
            c.iam.create_role(**kw)
            changes.append(f"created role {r.name}")
        else:
            if not _same(current["AssumeRolePolicyDocument"], r.trust):
                c.iam.update_assume_role_policy(RoleName=r.name, PolicyDocument=json.dumps(r.trust))
                changes.append(f"set the trust policy of {r.name}")
            if current.get("MaxSessionDuration") != r.max_session_s:
                c.iam.update_role(RoleName=r.name, MaxSessionDuration=r.max_session_s)
                changes.append(f"set the session duration of {r.name}")
            if spec.permissions_boundary and current.get("PermissionsBoundary", {}).get(
                    "PermissionsBoundaryArn") != spec.permissions_boundary:
                c.iam.put_role_permissions_boundary(RoleName=r.name, PermissionsBoundary=spec.permissions_boundary)
                changes.append(f"set the permissions boundary of {r.name}")
        if not _same(_role_policy(c, r.name), r.policy):
            c.iam.put_role_policy(RoleName=r.name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(r.policy))
            changes.append(f"set the policy of {r.name}")
    return Outcome(tuple(changes), tuple(read_back(spec, key_arn, roles, c)), spec, key_arn, roles)


def _role(c: Clients, name: str) -> Any:
    return c.iam.get_role(RoleName=name)["Role"]


def _role_policy(c: Clients, role: str) -> Any:
    try:
        return c.iam.get_role_policy(RoleName=role, PolicyName=POLICY_NAME)["PolicyDocument"]
    except Exception as exc:
        if _code(exc) != "NoSuchEntity":
            raise
        return None


def _read(call: Callable[[], Any], missing: tuple[str, ...]) -> Any:
    try:
        return call()
    except Exception as exc:
        if _code(exc) in missing:
            return None
        raise


def _bucket_settings(spec: BootstrapSpec, key_arn: str, c: Clients) -> list[tuple[str, Any, Any, Any]]:
    b = spec.bucket_name
    encryption = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                                    "KMSMasterKeyID": key_arn},
                             "BucketKeyEnabled": True}]}
    block = {k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")}
    policy = bucket_policy(spec)
    return [
        ("versioning", "Enabled", lambda: c.s3.get_bucket_versioning(Bucket=b).get("Status"),
         lambda: c.s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})),
        ("SSE-KMS", encryption,
         lambda: _read(lambda: {"Rules": [
             {k: v for k, v in rule.items() if k in ("ApplyServerSideEncryptionByDefault", "BucketKeyEnabled")}
             for rule in c.s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"]]},
             ("ServerSideEncryptionConfigurationNotFoundError",)),
         lambda: c.s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration=encryption)),
        ("public access block", block,
         lambda: _read(lambda: c.s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"],
                       ("NoSuchPublicAccessBlockConfiguration",)),
         lambda: c.s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=block)),
        ("TLS-only bucket policy", policy,
         lambda: _read(lambda: json.loads(c.s3.get_bucket_policy(Bucket=b)["Policy"]), ("NoSuchBucketPolicy",)),
         lambda: c.s3.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))),
    ]


def read_back(spec: BootstrapSpec, key_arn: str, roles: tuple[RoleSpec, ...], c: Clients) -> list[tuple[str, bool]]:
    """Every setting, read again after the writes: (what, equal to what was asked)."""
    checks: list[tuple[str, bool]] = []
    meta = c.kms.describe_key(KeyId=spec.alias)["KeyMetadata"]
    checks.append((f"key {spec.alias} enabled", meta["Arn"] == key_arn and meta.get("KeyState") == "Enabled"))
    checks.append((f"key {spec.alias} rotation", bool(c.kms.get_key_rotation_status(KeyId=key_arn)
                                                      ["KeyRotationEnabled"])))
    lock = _read(lambda: c.s3.get_object_lock_configuration(Bucket=spec.bucket_name)["ObjectLockConfiguration"],
                 ("ObjectLockConfigurationNotFoundError",)) or {}
    checks.append((f"bucket {spec.bucket_name} Object Lock", lock.get("ObjectLockEnabled") == "Enabled"))
    for name, wanted, read, _ in _bucket_settings(spec, key_arn, c):
        checks.append((f"bucket {spec.bucket_name} {name}", _same(read(), wanted)))
    audiences = _read(lambda: c.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=spec.oidc_arn)
                      ["ClientIDList"], ("NoSuchEntity",)) or []
    checks.append((f"OIDC provider audience {OIDC_AUDIENCE}", OIDC_AUDIENCE in audiences))
    for r in roles:
        role = _read(functools.partial(_role, c, r.name), ("NoSuchEntity",)) or {}
        checks.append((f"role {r.name} trust", _same(role.get("AssumeRolePolicyDocument"), r.trust)))
        checks.append((f"role {r.name} session", role.get("MaxSessionDuration") == r.max_session_s))
        if spec.permissions_boundary:
            checks.append((f"role {r.name} boundary", role.get("PermissionsBoundary", {}).get(
                "PermissionsBoundaryArn") == spec.permissions_boundary))
        checks.append((f"role {r.name} policy", _same(_role_policy(c, r.name), r.policy)))
    return checks


def make_clients(ctx: Any, region: str) -> Clients:
    from orchestrator.aws import client

    return Clients(s3=client(ctx, "s3", region), kms=client(ctx, "kms", region), iam=client(ctx, "iam", "us-east-1"))
