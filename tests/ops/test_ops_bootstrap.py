"""`orchestrate bootstrap` against moto: what it creates reads back as asked, a second run writes
nothing, `--print` writes nothing at all, and a state bucket without Object Lock is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.operations import bootstrap as op

STATE_REGION = "eu-central-1"  # the dev topology's primary is eu-west-1
REPO = "acme/iot-platform"
ARGS = ("bootstrap", "--repo", REPO, "--state-region", STATE_REGION)
_WRITE_PREFIXES = ("Create", "Put", "Update", "Add", "Enable", "Delete", "Tag", "Untag", "Disable", "Schedule",
                   "Attach", "Detach", "Remove", "Set", "Upload", "Tag")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every AWS operation the bootstrap's clients make, by name (`before-call` on each client)."""
    seen: list[str] = []
    real = op.make_clients

    def counted(ctx: Any, region: str) -> op.Clients:
        clients = real(ctx, region)
        for c in (clients.s3, clients.kms, clients.iam):
            c.meta.events.register("before-call.*.*",
                                   lambda model, **_: seen.append(f"{model.service_model.service_name}:{model.name}"))
        return clients

    monkeypatch.setattr(op, "make_clients", counted)
    return seen


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Callable[..., Any]:
    from click.testing import CliRunner

    from orchestrator.cli.app import Deps
    from orchestrator.cli.main import cli
    from tests.doubles import project_copy

    project_copy(tmp_path, monkeypatch)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli, [*args, "--endpoint-url", moto_endpoint], obj=Deps(),
                                  catch_exceptions=False)

    return invoke


def _writes(calls: list[str]) -> list[str]:
    return [c for c in calls if c.split(":", 1)[1].startswith(_WRITE_PREFIXES)]


def _account(ctx: AwsContext) -> str:
    return str(client(ctx, "sts", "us-east-1").get_caller_identity()["Account"])


def test_bootstrap_creates_every_setting_and_a_second_run_changes_nothing(
        run: Callable[..., Any], calls: list[str], moto_endpoint: str) -> None:
    first = run(*ARGS, "--yes")
    assert first.exit_code == 0, first.output
    assert "created bucket" in first.output and "created role iot-dev-sync" in first.output
    ctx = AwsContext(endpoint_url=moto_endpoint)
    account = _account(ctx)
    bucket = f"iot-dev-state-{account}"
    s3, kms, iam = client(ctx, "s3", STATE_REGION), client(ctx, "kms", STATE_REGION), client(ctx, "iam", "us-east-1")
    # the bucket, read back setting by setting
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == STATE_REGION
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    key = kms.describe_key(KeyId="alias/iot-dev-state")["KeyMetadata"]
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    (deny,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # the key
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    # the OIDC provider
    oidc_arn = f"arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com"
    assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=oidc_arn)["ClientIDList"] == ["sts.amazonaws.com"]
    # the roles: each trusted for one environment of the repository, with its policy
    environments = {"preview": "preview-dev", "apply": "dev", "backup": "backup-dev", "sync": "sync-dev"}
    for key_name, environment in environments.items():
        role = iam.get_role(RoleName=f"iot-dev-{key_name}")["Role"]
        (stmt,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert stmt["Principal"] == {"Federated": oidc_arn}
        assert stmt["Condition"]["StringEquals"] == {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": f"repo:{REPO}:environment:{environment}"}
        assert role["MaxSessionDuration"] == (21600 if key_name == "sync" else 3600)
        policy = iam.get_role_policy(RoleName=f"iot-dev-{key_name}", PolicyName="orchestrate-ci")["PolicyDocument"]
        actions = {a for s in policy["Statement"] if s["Effect"] == "Allow"
                   for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        assert "*" not in actions and "iam:*" not in actions
        if key_name == "preview":  # read-only: no write outside Pulumi's lock files
            locks = [s for s in policy["Statement"] if s.get("Sid") == "PulumiLocks"]
            assert locks and all(r.endswith(".pulumi/locks/*") for r in locks[0]["Resource"])
            others = {a for s in policy["Statement"] if s["Effect"] == "Allow" and s.get("Sid") != "PulumiLocks"
                      for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
            assert not any(a.split(":")[1].startswith(("Create", "Delete", "Update", "Put")) for a in others)
    # a second run: nothing written, and it says so
    calls.clear()
    second = run(*ARGS, "--yes")
    assert second.exit_code == 0, second.output
    assert "nothing to change: env dev is bootstrapped" in second.output
    assert calls and _writes(calls) == []


def test_a_changed_setting_is_put_back(run: Callable[..., Any], moto_endpoint: str) -> None:
    assert run(*ARGS, "--yes").exit_code == 0
    ctx = AwsContext(endpoint_url=moto_endpoint)
    iam = client(ctx, "iam", "us-east-1")
    iam.update_assume_role_policy(RoleName="iot-dev-backup", PolicyDocument=json.dumps(
        op.trust_policy(op.BootstrapSpec("dev", "someone/else", STATE_REGION, _account(ctx)), "backup-dev")))
    client(ctx, "s3", STATE_REGION).delete_public_access_block(Bucket=f"iot-dev-state-{_account(ctx)}")
    again = run(*ARGS, "--yes", "--json")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["ok"] and sorted(doc["changes"]) == sorted([
        f"set public access block on iot-dev-state-{_account(ctx)}", "set the trust policy of iot-dev-backup"])
    assert all(c["ok"] for c in doc["checks"])


def test_print_shows_the_policies_and_writes_nothing(run: Callable[..., Any], calls: list[str],
                                                     moto_endpoint: str) -> None:
    result = run(*ARGS, "--print")
    assert result.exit_code == 0, result.output
    assert f"repo:{REPO}:environment:backup-dev" in result.output
    assert "role iot-dev-apply policy orchestrate-ci:" in result.output and "aws:SecureTransport" in result.output
    assert "printed only: nothing was created" in result.output
    assert calls and _writes(calls) == []
    ctx = AwsContext(endpoint_url=moto_endpoint)
    assert client(ctx, "s3", STATE_REGION).list_buckets()["Buckets"] == []
    assert client(ctx, "iam", "us-east-1").list_roles()["Roles"] == []


def test_an_existing_bucket_without_object_lock_is_refused(run: Callable[..., Any], calls: list[str],
                                                          moto_endpoint: str) -> None:
    ctx = AwsContext(endpoint_url=moto_endpoint)
    bucket = f"iot-dev-state-{_account(ctx)}"
    client(ctx, "s3", STATE_REGION).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": STATE_REGION})
    result = run(*ARGS, "--yes")
    assert result.exit_code == 2, result.output
    assert f"state bucket {bucket} exists without Object Lock, which cannot be added later" in result.output
    assert _writes(calls) == []
    assert client(ctx, "iam", "us-east-1").list_roles()["Roles"] == []


def test_the_primary_region_and_a_bad_repo_are_refused_before_any_call(run: Callable[..., Any],
                                                                       calls: list[str]) -> None:
    primary = run("bootstrap", "--repo", REPO, "--state-region", "eu-west-1", "--yes")
    assert primary.exit_code == 2 and "is the primary region of env dev" in primary.output
    repo = run("bootstrap", "--repo", "not a repo", "--state-region", STATE_REGION, "--yes")
    assert repo.exit_code == 2 and "expected OWNER/NAME" in repo.output
    assert calls == []


def test_without_a_terminal_or_yes_nothing_is_created(run: Callable[..., Any], calls: list[str]) -> None:
    result = run(*ARGS)
    assert result.exit_code == 4, result.output
    assert _writes(calls) == []


def test_policies_fit_iam_limits_with_an_org_path_and_boundary() -> None:
    """IAM refuses an inline policy over 10,240 characters and a trust policy over 2,048 (whitespace not
    counted); moto accepts both, so the sizes are checked here with the longest realistic settings."""
    import re

    spec = op.BootstrapSpec("production-eu", "a-long-organisation-name/a-long-repository-name", STATE_REGION,
                            "123456789012", iam_path="/org/platform/iot/",
                            permissions_boundary="arn:aws:iam::123456789012:policy/org/platform-boundary")
    for role in op.role_specs(spec, f"arn:aws:kms:{STATE_REGION}:123456789012:key/{'0' * 36}"):
        assert len(re.sub(r"\s", "", json.dumps(role.policy))) <= 10240, role.name
        assert len(re.sub(r"\s", "", json.dumps(role.trust))) <= 2048, role.name
        for statement in role.policy["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9*]+", a) for a in actions), (role.name, actions)
    apply = next(r for r in op.role_specs(spec, "k") if r.key == "apply").policy
    (creating,) = [s for s in apply["Statement"] if s["Sid"] == "ProgramRolesPermissions"]
    assert creating["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": spec.permissions_boundary}}
    (deny_ci,) = [s for s in apply["Statement"] if s["Sid"] == "CiRolesStay"]
    assert deny_ci["Effect"] == "Deny" and "arn:aws:iam::123456789012:role/org/platform/iot/iot-production-eu-apply" \
        in deny_ci["Resource"]


def test_an_existing_oidc_provider_is_kept_and_roles_get_the_org_path_and_boundary(
        run: Callable[..., Any], moto_endpoint: str, tmp_path: Path) -> None:
    import yaml

    ctx = AwsContext(endpoint_url=moto_endpoint)
    account = _account(ctx)
    iam = client(ctx, "iam", "us-east-1")
    iam.create_open_id_connect_provider(Url="https://token.actions.githubusercontent.com",
                                        ClientIDList=["something-else", "sts.amazonaws.com"],
                                        ThumbprintList=["a" * 40])
    boundary = iam.create_policy(PolicyName="platform-boundary", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    path = tmp_path / "stacks" / "dev.topology.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["iam"] = {"path": "/platform/", "permissions_boundary": boundary}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run(*ARGS, "--yes")
    assert result.exit_code == 0, result.output
    assert "OIDC provider" not in "".join(line for line in result.stdout.splitlines() if "created" in line)
    oidc_arn = f"arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com"
    assert sorted(iam.get_open_id_connect_provider(OpenIDConnectProviderArn=oidc_arn)["ClientIDList"]) == [
        "something-else", "sts.amazonaws.com"]
    role = iam.get_role(RoleName="iot-dev-apply")["Role"]
    assert role["Path"] == "/platform/"
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
    assert "nothing to change" in run(*ARGS, "--yes").output


def test_a_bucket_of_that_name_in_another_region_is_refused(run: Callable[..., Any], calls: list[str],
                                                            moto_endpoint: str) -> None:
    ctx = AwsContext(endpoint_url=moto_endpoint)
    bucket = f"iot-dev-state-{_account(ctx)}"
    client(ctx, "s3", "eu-west-2").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True,
                                                 CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    result = run(*ARGS, "--yes")
    assert _writes(calls) == []
    assert result.exit_code == 2, result.output
    assert f"state bucket {bucket} exists but is not usable here" in result.output


def test_an_existing_oidc_provider_without_the_sts_audience_gets_it_added(
        run: Callable[..., Any], calls: list[str], moto_endpoint: str) -> None:
    """The local world answers AddClientIDToOpenIDConnectProvider as IAM documents it
    (orchestrator/drill/world/iam_strict.py): the audience is added once, other audiences kept, and the
    second run has nothing to write."""
    ctx = AwsContext(endpoint_url=moto_endpoint)
    iam = client(ctx, "iam", "us-east-1")
    arn = iam.create_open_id_connect_provider(Url="https://token.actions.githubusercontent.com",
                                              ClientIDList=["something-else"],
                                              ThumbprintList=["a" * 40])["OpenIDConnectProviderArn"]
    result = run(*ARGS, "--yes")
    assert result.exit_code == 0, result.output
    assert "iam:AddClientIDToOpenIDConnectProvider" in calls
    assert "iam:CreateOpenIDConnectProvider" not in calls
    assert sorted(iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["ClientIDList"]) == [
        "something-else", "sts.amazonaws.com"]
    calls.clear()
    again = run(*ARGS, "--yes")
    assert again.exit_code == 0 and "nothing to change" in again.output
    assert _writes(calls) == []


def test_the_local_iam_keeps_the_documented_client_id_rules(moto_endpoint: str) -> None:
    from botocore.exceptions import ClientError

    from orchestrator.drill.world.iam_strict import MAX_CLIENT_IDS

    iam = client(AwsContext(endpoint_url=moto_endpoint), "iam", "us-east-1")
    arn = iam.create_open_id_connect_provider(Url="https://issuer.example.com", ClientIDList=["a"],
                                              ThumbprintList=["b" * 40])["OpenIDConnectProviderArn"]
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="a")  # idempotent
    assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["ClientIDList"] == ["a"]
    for i in range(MAX_CLIENT_IDS - 1):
        iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID=f"c{i}")
    with pytest.raises(ClientError) as full:
        iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="one-too-many")
    assert full.value.response["Error"]["Code"] == "LimitExceeded"
    with pytest.raises(ClientError) as long_id:
        iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="x" * 256)
    assert long_id.value.response["Error"]["Code"] == "InvalidInput"
    with pytest.raises(ClientError) as unknown:
        iam.add_client_id_to_open_id_connect_provider(
            OpenIDConnectProviderArn=arn.replace("issuer", "nobody"), ClientID="a")
    assert unknown.value.response["Error"]["Code"] == "NoSuchEntity"
    iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="a")
    iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="a")  # idempotent
    assert "a" not in iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["ClientIDList"]
