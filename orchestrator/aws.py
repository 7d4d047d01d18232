"""The one place boto3 clients are made, and botocore errors become the orchestrator's errors.

`--endpoint-url` (LocalStack, moto) is honoured here for every client. Dummy credentials are used
only when an endpoint URL is set *and* no credentials are configured, so a real profile is never
shadowed. boto3 is imported lazily: `orchestrate --help` must not pay for it.

Retries: the registry code retries itself (it counts retries and needs its own backoff, rate
limits and idempotency checks), so its clients are made with `own_retries=True`, which turns
botocore's retries off. Every other client uses botocore's adaptive mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputRejected, OperationFailed, OrchestrateError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import boto3

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30
ADAPTIVE_MAX_ATTEMPTS = 5
_DUMMY_KEY = "testing"  # moto and LocalStack accept any key; never used against real AWS


@dataclass(frozen=True)
class AwsContext:
    """Where AWS calls go: a named profile (None: the default chain) and an optional endpoint."""

    endpoint_url: str | None = None
    profile: str | None = None
    # The role to assume first (the topology's `accounts:` for a target in another account); the
    # profile's (or the default chain's) credentials are the ones that assume it.
    role_arn: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise InputRejected(f"--endpoint-url {self.endpoint_url!r} must start with http:// or https://")

    def assuming(self, role_arn: str | None) -> AwsContext:
        """The same context acting through `role_arn` (None: the caller's own account)."""
        return replace(self, role_arn=role_arn)


# Hooks for the clients made for one endpoint URL: a local world (the drill, `drill/world/engine.py`)
# puts the AWS rules moto does not have on every client the product makes for its endpoint (Route
# 53's per-account request rate). Empty outside a local world; nothing registers for AWS itself.
ClientHook = Callable[[Any, str, str], None]  # (client, service, region)
_ENDPOINT_HOOKS: dict[str, list[ClientHook]] = {}


def on_clients_for(endpoint_url: str, hook: ClientHook) -> Callable[[], None]:
    """Call `hook(client, service, region)` on every client `client()` makes for `endpoint_url`
    from now on; returns what removes it again."""
    _ENDPOINT_HOOKS.setdefault(endpoint_url, []).append(hook)

    def remove() -> None:
        hooks = _ENDPOINT_HOOKS.get(endpoint_url, [])
        if hook in hooks:
            hooks.remove(hook)
        if not hooks:
            _ENDPOINT_HOOKS.pop(endpoint_url, None)

    return remove


SESSION_NAME = "orchestrate"
_ASSUMED: dict[tuple[str | None, str | None, str], tuple[dict[str, Any], float]] = {}
_REFRESH_BEFORE_S = 300  # assumed credentials are renewed five minutes before they expire


def session(ctx: AwsContext) -> boto3.session.Session:
    """A boto3 session for `ctx` (sessions are not thread-safe: make clients, then share those).
    With `role_arn`: a session on that role's temporary credentials (cached until near expiry)."""
    import boto3  # deferred: keeps `orchestrate --help` fast
    from botocore.exceptions import ProfileNotFound

    try:
        base = boto3.session.Session(profile_name=ctx.profile)
    except ProfileNotFound as exc:
        raise _profile_not_found(exc) from None
    if ctx.role_arn is None:
        return base
    return boto3.session.Session(**_assumed(ctx, base))


def _assumed(ctx: AwsContext, base: boto3.session.Session) -> dict[str, Any]:
    import time

    assert ctx.role_arn is not None
    key = (ctx.profile, ctx.endpoint_url, ctx.role_arn)
    cached = _ASSUMED.get(key)
    if cached is not None and cached[1] - _REFRESH_BEFORE_S > time.time():
        return cached[0]
    kwargs: dict[str, Any] = {"region_name": base.region_name or "us-east-1"}
    if ctx.endpoint_url:
        kwargs["endpoint_url"] = ctx.endpoint_url
        if base.get_credentials() is None:
            kwargs["aws_access_key_id"] = _DUMMY_KEY
            kwargs["aws_secret_access_key"] = _DUMMY_KEY
    with aws_errors(f"assuming role {ctx.role_arn}"):
        answer = base.client("sts", **kwargs).assume_role(RoleArn=ctx.role_arn, RoleSessionName=SESSION_NAME)
    creds = answer["Credentials"]
    found = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
             "aws_session_token": creds["SessionToken"]}
    _ASSUMED[key] = (found, creds["Expiration"].timestamp())
    return found


def account_id(ctx: AwsContext) -> str:
    """The account `ctx` acts in (STS GetCallerIdentity)."""
    with aws_errors("GetCallerIdentity"):
        return str(client(ctx, "sts", "us-east-1").get_caller_identity()["Account"])


def require_allowed_account(ctx: AwsContext, allowed: tuple[str, ...], what: str) -> str:
    """The account `ctx` acts in, refused (exit 2, nothing touched) when it is not in `allowed`
    (the topology's allowed_account_ids; empty: any)."""
    account = account_id(ctx)
    if allowed and account not in allowed:
        raise InputRejected(f"{what}: the credentials act in account {account}, which is not in "
                            f"allowed_account_ids {list(allowed)}",
                            hint="use the environment's credentials (AWS_PROFILE), or fix the topology")
    return account


def _profile_name() -> str:
    """The profile the SDK uses when none is given: AWS_PROFILE (AWS_DEFAULT_PROFILE), else default."""
    import os

    return os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"


def _profile_not_found(exc: BaseException) -> InputRejected:
    name = getattr(exc, "kwargs", {}).get("profile") or _profile_name()
    return InputRejected(f"AWS profile {name!r} is not configured",
                         hint="set AWS_PROFILE to a profile of ~/.aws/config (`aws configure list-profiles`), "
                              "or unset it to use the default credential chain")


def client(ctx: AwsContext, service: str, region: str, *, own_retries: bool = False,
           max_pool_connections: int = 10, s3_path_style: bool = False, sess: Any = None) -> Any:
    """A boto3 client for `service` in `region`, honouring the endpoint URL and the timeouts.

    `own_retries=True` disables botocore's retries (the caller retries and counts them);
    `s3_path_style=True` addresses buckets in the path (S3-compatible stores such as MinIO).
    `sess`: a session to make it from (its service models loaded once for many clients; a session
    is not thread-safe, so the caller serialises client creation).
    """
    from botocore.config import Config

    retries: dict[str, Any] = (
        {"mode": "standard", "total_max_attempts": 1} if own_retries
        else {"mode": "adaptive", "total_max_attempts": ADAPTIVE_MAX_ATTEMPTS}
    )
    config = Config(
        region_name=region,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries=retries,
        max_pool_connections=max(10, max_pool_connections),
        s3={"addressing_style": "path"} if s3_path_style else None,
    )
    sess = sess or session(ctx)
    kwargs: dict[str, Any] = {"region_name": region, "config": config}
    if ctx.endpoint_url:
        kwargs["endpoint_url"] = ctx.endpoint_url
        if ctx.role_arn is None and sess.get_credentials() is None:
            kwargs["aws_access_key_id"] = _DUMMY_KEY
            kwargs["aws_secret_access_key"] = _DUMMY_KEY
    with aws_errors(f"{service} in {region}"):
        made = sess.client(service, **kwargs)
    for hook in list(_ENDPOINT_HOOKS.get(ctx.endpoint_url or "", ())):
        hook(made, service, region)
    return made


def bucket_region(ctx: AwsContext, bucket: str, *, via: str = "us-east-1", own_retries: bool = False) -> str:
    """The region an S3 bucket lives in (GetBucketLocation, asked of the endpoint in `via`).

    S3 answers no constraint for us-east-1, and "EU" for buckets made in eu-west-1 under the legacy
    name (S3 API reference, GetBucketLocation)."""
    with aws_errors(f"locating bucket {bucket}"):
        answer = client(ctx, "s3", via, own_retries=own_retries).get_bucket_location(Bucket=bucket)
    constraint = answer.get("LocationConstraint") or "us-east-1"
    return "eu-west-1" if constraint == "EU" else str(constraint)


def translate(exc: BaseException, what: str = "AWS call") -> OrchestrateError | None:
    """The orchestrator error for a botocore exception, or None if it is not one we map.

    Messages name the operation and the endpoint, never credentials.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
        SSOError,
        TokenRetrievalError,
    )

    if isinstance(exc, ProfileNotFound):
        return _profile_not_found(exc)
    if isinstance(exc, (SSOError, TokenRetrievalError)):  # SSOTokenLoadError, UnauthorizedSSOTokenError
        name = _profile_name()
        return InputRejected(
            f"the AWS SSO session of profile {name!r} is not logged in or has expired ({what})",
            hint=f"run `aws sso login --profile {name}` (AWS_PROFILE names the profile), then re-run")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return InputRejected(
            f"no AWS credentials for {what}",
            hint="configure a profile (AWS_PROFILE) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; "
                 "with --endpoint-url dummy credentials are used when none are configured",
        )
    if isinstance(exc, NoRegionError):
        return InputRejected(f"no AWS region for {what}", hint="pass --region")
    if isinstance(exc, EndpointConnectionError):
        url = exc.kwargs.get("endpoint_url", "?")
        return OperationFailed(f"cannot reach {url} for {what}",
                               hint="check --endpoint-url and the network")
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        url = exc.kwargs.get("endpoint_url", "?")
        return OperationFailed(f"timed out talking to {url} for {what}")
    if isinstance(exc, ConnectionClosedError):
        url = exc.kwargs.get("endpoint_url", "?")
        return OperationFailed(f"{url} closed the connection without an answer for {what}",
                               hint="check --endpoint-url and the network")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Unknown")
        message = err.get("Message", "")
        op = getattr(exc, "operation_name", "") or what
        if code in {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken",
                    "ExpiredTokenException", "AccessDeniedException", "AccessDenied",
                    "UnauthorizedException"}:
            return InputRejected(f"{op} refused by AWS: {code}: {message}",
                                 hint="check the credentials and their permissions")
        return OperationFailed(f"{op} failed: {code}: {message}")
    return None


@contextmanager
def aws_errors(what: str = "AWS call") -> Iterator[None]:
    """Re-raise botocore exceptions raised inside the block as orchestrator errors."""
    try:
        yield
    except OrchestrateError:
        raise
    except Exception as exc:
        mapped = translate(exc, what)
        if mapped is None:
            raise
        raise mapped from exc
