"""tests/ops: every boto3 operation against a REAL moto server on 127.0.0.1.

One moto server process per test session (`python -m moto.server`, bounded startup wait,
stopped at teardown), reset before every test through `POST /moto-api/reset`. boto3 sees dummy
credentials through a monkeypatched environment, and never a real profile or proxy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from tests.aws_gate import Gate
from tests.doubles import InMemoryEngine
from tests.moto_server import MotoUnavailable, post
from tests.moto_server import moto_server as run_moto
from tests.ops.provider_sim import ProviderSimulation

SRC = "eu-west-1"
DST = "eu-central-1"
THIRD = "eu-west-2"


def _post(url: str, timeout: float = 5.0) -> int:
    return post(url, timeout)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("moto") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with ExitStack() as stack:
        try:
            url = stack.enter_context(run_moto(log, env))
        except MotoUnavailable as exc:
            pytest.fail(str(exc))
        yield url


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials only; no profile, config file, metadata service or proxy."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key.lower() in {"http_proxy", "https_proxy", "all_proxy"}:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def gate_server(moto_server: str) -> Iterator[Gate]:
    with Gate(moto_server).serve() as gate:
        yield gate


@pytest.fixture
def moto_endpoint(moto_server: str) -> str:
    """The moto server itself, reset (no strict layer in front)."""
    assert _post(f"{moto_server}/moto-api/reset") == 200
    return moto_server


@pytest.fixture
def gate(gate_server: Gate, moto_endpoint: str) -> Gate:
    """The strict Route 53 gate in front of the (reset) moto server: no outage, nothing counted yet."""
    gate_server.reset()
    return gate_server


@pytest.fixture
def endpoint(gate: Gate) -> str:
    """Where every AWS call of a test goes: moto, reset, behind the strict Route 53 gate (so a
    change batch real Route 53 refuses is refused here too)."""
    return gate.url


@pytest.fixture
def ctx(endpoint: str) -> AwsContext:
    return AwsContext(endpoint_url=endpoint)


@pytest.fixture
def iot(ctx: AwsContext) -> Callable[[str], Any]:
    """iot(region): a registry client (our retries, not botocore's) on the moto server."""
    return lambda region: client(ctx, "iot", region, own_retries=True, max_pool_connections=16)


@pytest.fixture
def s3(ctx: AwsContext) -> Callable[[str], Any]:
    return lambda region: client(ctx, "s3", region)


@pytest.fixture
def signing_key(ctx: AwsContext, monkeypatch: pytest.MonkeyPatch) -> str:
    """A KMS SIGN_VERIFY key on the moto server, configured as the backup signing key."""
    kms = client(ctx, "kms", SRC)
    arn = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["Arn"]
    spec = f"awskms:{arn}"
    monkeypatch.setenv("ORCHESTRATE_BACKUP_SIGNING_KEY", spec)
    return spec


@pytest.fixture
def signer(ctx: AwsContext, signing_key: str) -> Any:
    """The `Signer` of `signing_key` (for tests that write backups with `registry.backup`)."""
    from orchestrator.registry.signing import signer_from_spec

    return signer_from_spec(signing_key, kms=client(ctx, "kms", SRC))


@pytest.fixture
def sim(ctx: AwsContext) -> ProviderSimulation:
    """What the region, DNS and replication programs would create, applied to moto after each `up`."""
    return ProviderSimulation(ctx)


@pytest.fixture
def engine(sim: ProviderSimulation) -> InMemoryEngine:
    """An in-memory engine whose `up` is followed by the provider simulation (a file may override it)."""
    e = InMemoryEngine()
    e.after_up.append(sim)
    return e
