"""The per-API quota table and the adaptive limiter (no AWS, no waiting: clock and sleep injected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import InputRejected
from orchestrator.registry import Caller, RetryPolicy, SyncOptions
from orchestrator.registry.quotas import (
    DEFAULT_QUOTAS,
    MIN_RATE,
    SHADOW_KEY,
    AdaptiveLimiter,
    QuotaTable,
    api_name,
    parse_override,
    resolve_quotas,
)
from orchestrator.topology import parse


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("given", "expected"), [
    ("ListThingPrincipals", "list_thing_principals"),
    ("RegisterCertificateWithoutCA", "register_certificate_without_ca"),
    ("list_things_in_thing_group", "list_things_in_thing_group"),
    ("AttachPolicy", "attach_policy"),
    ("shadow", "shadow"),
])
def test_api_names_from_the_aws_docs_or_boto3(given: str, expected: str) -> None:
    assert api_name(given) == expected


def test_the_default_table_is_the_published_quotas() -> None:
    table = QuotaTable()
    assert table.rate("list_thing_principals") == 10 and table.rate("describe_certificate") == 10
    assert table.rate("attach_policy") == 15 and table.rate("list_things_in_thing_group") == 25
    assert table.rate("create_thing") == 100 and table.rate("describe_thing") == 350
    assert table.rate("get_thing_shadow") == table.rate("update_thing_shadow") == 4000
    assert table.rate("list_policy_versions") == 10  # unlisted: the lowest published quota
    assert DEFAULT_QUOTAS[SHADOW_KEY] == 4000


def test_caps_only_lower_and_apply_to_reads_or_writes_separately() -> None:
    table = QuotaTable().with_overrides(read_cap=5, write_cap=50)
    assert table.rate("list_thing_principals") == 5 and table.rate("describe_thing") == 5
    assert table.rate("create_thing") == 50 and table.rate("register_certificate_without_ca") == 10
    assert table.rate("get_thing_shadow") == 4000  # data plane: its own quota, not the control-plane caps


def test_quotas_resolve_defaults_then_topology_then_file_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "q.yaml"
    f.write_text("quotas:\n  ListThingPrincipals: 30\n  AttachPolicy: 40\n")
    table = resolve_quotas({"list_thing_principals": 20, "DescribeCertificate": 25}, f,
                           ("AttachPolicy=45",))
    assert table.rate("list_thing_principals") == 30
    assert table.rate("describe_certificate") == 25
    assert table.rate("attach_policy") == 45
    assert table.rate("create_thing") == 100


@pytest.mark.parametrize("bad", ["AttachPolicy", "AttachPolicy=fast", "AttachPolicy=0", "=3", "a b=1"])
def test_a_bad_override_is_bad_input(bad: str) -> None:
    with pytest.raises(InputRejected):
        parse_override(bad)


def test_the_topology_takes_a_quotas_section_and_refuses_a_bad_one() -> None:
    doc: dict[str, Any] = {"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
                           "quotas": {"ListThingPrincipals": 50}}
    assert parse(doc, env="dev").quotas == {"list_thing_principals": 50.0}
    assert parse(parse(doc, env="dev").to_document(), env="dev").quotas == {"list_thing_principals": 50.0}
    with pytest.raises(InputRejected):
        parse({**doc, "quotas": {"ListThingPrincipals": -1}}, env="dev")


def test_each_api_has_its_own_bucket_at_its_own_rate() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(QuotaTable(), clock=clock, sleep=clock.sleep)
    for _ in range(10):
        limiter.acquire("list_thing_principals")
    assert clock.now == pytest.approx(0.9)  # 10 calls at 10/s
    start = clock.now
    for _ in range(100):
        limiter.acquire("create_thing")  # another bucket: not slowed by the first one
    assert clock.now - start == pytest.approx(0.99, abs=0.05)


def test_throttling_halves_the_rate_and_successes_bring_it_back_not_above_quota() -> None:
    limiter = AdaptiveLimiter(QuotaTable())
    assert limiter.throttled("attach_policy") == 7.5
    assert limiter.throttled("attach_policy") == 3.75
    assert limiter.rate_for("create_thing") == 100  # other APIs untouched
    for _ in range(100):
        limiter.succeeded("attach_policy")
    assert limiter.rate_for("attach_policy") == 15
    for _ in range(40):
        limiter.throttled("list_things")
    assert limiter.rate_for("list_things") == MIN_RATE
    assert limiter.slowdowns() == {"attach_policy": 2, "list_things": 40}


class _Throttled(Exception):
    response = {"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {"HTTPStatusCode": 400}}


class FlakyClient:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def attach_policy(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            from botocore.exceptions import ClientError

            raise ClientError(_Throttled.response, "AttachPolicy")
        return {}


def test_a_throttled_call_slows_its_api_and_is_retried_at_the_slower_rate() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(QuotaTable(), clock=clock, sleep=clock.sleep)
    client = FlakyClient(failures=3)
    caller = Caller(client, limits=limiter, retry=RetryPolicy(max_attempts=8, sleep=clock.sleep))
    assert caller.call("attach_policy", policyName="p", target="t") == {}
    assert client.calls == 4 and caller.stats.counts().throttled == 3
    assert limiter.slowdowns() == {"attach_policy": 3}
    assert limiter.rate_for("attach_policy") < 15  # recovering, not yet back


def test_sync_options_run_at_the_quotas_unless_given_one_uniform_rate() -> None:
    adaptive = SyncOptions().caller(object(), writes=True)
    assert isinstance(adaptive.limits, AdaptiveLimiter)
    assert adaptive.rate_for("register_certificate_without_ca") == 10 and adaptive.rate_for("create_thing") == 100
    capped = SyncOptions(quotas=QuotaTable(), rate=5, read_rate=2).caller(object(), writes=True)
    assert capped.rate_for("create_thing") == 5 and capped.rate_for("list_things") == 2
    uniform = SyncOptions(rate=500).caller(object(), writes=True)
    assert uniform.limits is None and uniform.rate_for("create_thing") == 500
