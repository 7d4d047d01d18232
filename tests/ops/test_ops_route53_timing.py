"""Route 53 is not instant (issue 21, item 5): an accepted change is PENDING, then INSYNC
(GetChange); a batch touching a record set whose change is still PENDING is refused with
PriorRequestNotComplete; the provider stand-ins (and the drill's engine) wait for INSYNC before
they report an apply done."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from orchestrator.aws import AwsContext
from orchestrator.drill.world.mirror import wait_insync
from tests.aws_gate import Gate


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def _r53(gate: Gate) -> Any:
    """No retries: botocore retries PriorRequestNotComplete as throttling; here we see the answer."""
    return boto3.client("route53", region_name="us-east-1", endpoint_url=gate.url, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))


def _a(name: str, ip: str) -> dict[str, Any]:
    return {"Name": name, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": ip}]}


def _change(r53: Any, zone: str, rr: dict[str, Any], action: str = "UPSERT") -> dict[str, Any]:
    return r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={
        "Changes": [{"Action": action, "ResourceRecordSet": rr}]})["ChangeInfo"]  # type: ignore[no-any-return]


def test_a_change_is_pending_then_insync_and_blocks_its_record_meanwhile(gate: Gate) -> None:
    clock = ManualClock()
    gate.clock, gate.propagation_s = clock, 30.0
    r53 = _r53(gate)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"]["Id"].split("/")[-1]
    info = _change(r53, zone, _a("iot.example.com", "192.0.2.1"))
    assert info["Status"] == "PENDING"
    assert r53.get_change(Id=info["Id"])["ChangeInfo"]["Status"] == "PENDING"
    with pytest.raises(ClientError, match="PriorRequestNotComplete") as refused:
        _change(r53, zone, _a("iot.example.com", "192.0.2.2"))
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    _change(r53, zone, _a("other.example.com", "192.0.2.3"))  # another record set is not held up
    clock.now += 30.0
    assert r53.get_change(Id=info["Id"])["ChangeInfo"]["Status"] == "INSYNC"
    _change(r53, zone, _a("iot.example.com", "192.0.2.2"))


def test_wait_insync_polls_getchange_as_terraform_does_until_insync(gate: Gate) -> None:
    """terraform-provider-aws (change_info.go, waitChangeInsync): the first GetChange 15 s after the
    change, then every 15 s: four reads for Route 53's 60 s, far inside its 10 requests per second
    (the old wait read every 0.1 s: 600 reads)."""
    from orchestrator.drill.world.mirror import InsyncWait

    clock = ManualClock()
    gate.clock, gate.propagation_s = clock, 60.0
    r53 = _r53(gate)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"]["Id"].split("/")[-1]
    info = _change(r53, zone, _a("iot.example.com", "192.0.2.1"))
    wait_insync(r53, info, sleep=clock.sleep, clock=clock)
    change_id = info["Id"].split("/")[-1]
    reads = [status for cid, status in gate.change_reads if cid == change_id]
    assert reads == ["PENDING"] * 3 + ["INSYNC"] and clock.pauses == [15.0] * 4
    stuck = _change(r53, zone, _a("other.example.com", "192.0.2.1"))
    gate.propagation_s = 1e9
    late = _change(r53, zone, _a("third.example.com", "192.0.2.1"))
    wait_insync(r53, stuck, sleep=clock.sleep, clock=clock)  # made before the long propagation
    with pytest.raises(TimeoutError, match="still PENDING after 60 s"):
        wait_insync(r53, late, timing=InsyncWait(timeout_s=60.0), sleep=clock.sleep, clock=clock)


def test_route53_throttles_over_its_rate_and_wait_insync_backs_off(gate: Gate) -> None:
    """Route 53 Developer Guide, "Throttling for Amazon Route 53 API requests": 50 requests at once,
    then 10 per second per account; over it HTTP 400, Code Throttling, Message "Rate exceeded". A
    GetChange refused so (the client has no retries left) is retried after the SDKs' backoff."""
    from orchestrator.drill.world.mirror import InsyncWait

    clock = ManualClock()
    gate.clock = clock
    r53 = _r53(gate)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"]["Id"].split("/")[-1]
    info = _change(r53, zone, _a("iot.example.com", "192.0.2.1"))
    for _ in range(48):
        r53.get_change(Id=info["Id"])
    with pytest.raises(ClientError) as refused:
        r53.list_hosted_zones()
    error = refused.value.response
    assert (error["Error"]["Code"], error["Error"]["Message"]) == ("Throttling", "Rate exceeded")
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert gate.route53_rate.throttled == ["ListHostedZones"]
    # the bucket is empty: the wait's GetChange is throttled until the backoff has let a token in
    wait_insync(r53, {"Id": info["Id"], "Status": "PENDING"}, timing=InsyncWait(delay_s=0.0),
                sleep=clock.sleep, clock=clock, jitter=lambda: 0.06)
    assert gate.route53_rate.throttled == ["ListHostedZones", "GetChange"]
    assert clock.pauses == [0.0, 0.06 * 2] and gate.change_reads[-1][1] == "INSYNC"


def test_the_provider_stand_in_reports_a_record_change_done_only_once_insync(
        gate: Gate, ctx: AwsContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/ops/provider_sim.py stands in for terraform-provider-aws, which waits for INSYNC after
    every ChangeResourceRecordSets; two changes of one record in a row then never meet
    PriorRequestNotComplete."""
    from orchestrator.drill.world import mirror
    from tests.ops.provider_sim import ProviderSimulation

    clock = ManualClock()
    gate.clock, gate.propagation_s = clock, 1.0
    monkeypatch.setattr(mirror, "time", SimpleNamespace(sleep=clock.sleep, monotonic=clock))
    sim = ProviderSimulation(ctx)
    sim.r53 = _r53(gate)  # no retries: a PriorRequestNotComplete would fail the apply
    zone = sim.zone_id.split("/")[-1]
    sim.mirror.change(zone, [("CREATE", _a("iot.example.com", "192.0.2.1"))])
    sim.mirror.change(zone, [("UPSERT", _a("iot.example.com", "192.0.2.2"))])
    statuses = [status for _, status in gate.change_reads]
    assert statuses.count("INSYNC") == 2 and "PENDING" in statuses
    assert [b[0][0] for b in sim.batches] == ["CREATE", "UPSERT"]


def test_the_products_route53_reads_survive_throttling(gate: Gate, ctx: AwsContext,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The product's Route 53 clients (orchestrator.aws.client: botocore's adaptive retry mode, which
    retries Throttling with backoff) get through once the account's bucket is empty: the read that
    Route 53 throttles is retried, not reported as a failure. The gate's clock stands still, except
    that a refusal lets 0.1 s pass (the client's backoff): one token comes back per refusal."""
    from orchestrator.operations import verify

    clock = ManualClock()
    gate.clock = clock
    r53 = _r53(gate)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"]["Id"].split("/")[-1]
    while not gate.route53_rate.throttled:  # another client of the account spends the bucket
        try:
            r53.list_hosted_zones()
        except ClientError:
            pass
    take = gate.route53_rate.take

    def backed_off(operation: str) -> None:
        try:
            take(operation)
        except Exception:
            clock.now += 0.1
            raise

    monkeypatch.setattr(gate.route53_rate, "take", backed_off)
    assert verify.hosted_zone_id(ctx, "example.com") == zone
    assert verify.dns_records(ctx, zone, "iot.example.com") == []
    # the first try of each read was throttled (the bucket was empty), the retry went through
    assert gate.route53_rate.throttled == ["ListHostedZones", "ListHostedZonesByName", "ListResourceRecordSets"]


def test_the_engine_tiers_provider_retries_a_throttled_call_as_terraform_provider_aws_does(gate: Gate) -> None:
    """terraform-provider-aws retries a throttled call up to `max_retries` (default 25) times with
    exponential backoff (its provider documentation); the engine tier's stand-in provider
    (tests/engine/fake_aws_provider/retries.py) does the same on the tier's time scale, so a
    throttled CreateHealthCheck is retried until the account's bucket lets it through instead of
    failing the `up` (it had 2 retries)."""
    from tests.engine.fake_aws_provider import retries
    from tests.engine.fake_aws_provider.moto_mirror import MotoMirror

    class Stepping:  # every Route 53 request reads the gate's clock once: each is 0.025 s later
        def __init__(self) -> None:
            self.now = 1000.0

        def __call__(self) -> float:
            self.now += 0.025
            return self.now

    clock = Stepping()
    gate.clock = clock
    rate = gate.route53_rate
    rate.take("ListHostedZones")
    account = rate._buckets[""]
    account.level(clock())
    account.tokens = 0.0  # the account's bucket is empty: 0.25 tokens come back per request
    mirror = MotoMirror(gate.url)
    found = mirror.created("aws:route53/healthCheck:HealthCheck", "us-east-1", "hc",
                           {"type": "TCP", "fqdn": "a-ats.iot.eu-west-1.amazonaws.com", "port": 443})
    assert found and found in gate.health_checks
    throttled = [op for op in rate.throttled if op == "CreateHealthCheck"]
    assert len(throttled) >= 3  # more than the 2 retries the stand-in had, fewer than the provider's 25
    assert retries.MAX_RETRIES == 25 and retries.config().retries["max_attempts"] == 25
