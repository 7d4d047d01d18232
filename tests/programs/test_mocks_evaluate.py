"""`programs.mocks.evaluate`, the offline evaluation behind `orchestrate plan`."""

from __future__ import annotations

import threading

import pulumi
import pytest

from programs.mocks import ACCOUNT_ID, EvaluationFailed, PlatformMocks, ats_endpoint, evaluate
from tests.programs.conftest import (
    PRIMARY,
    SECONDARY,
    dns_args,
    region_args,
    region_eval,
    replication_args,
)


def _snapshot(ev):
    return [(r.type, r.name, r.inputs, r.protect, r.parent, r.depends_on) for r in ev.resources], ev.outputs


@pytest.mark.slow
def test_evaluations_run_one_after_another_and_are_deterministic() -> None:
    first = evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    dns = evaluate(dns_args("single", PRIMARY), stack="dev-dns")
    second = evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    assert _snapshot(first) == _snapshot(second)
    # nothing of one evaluation leaks into the next
    assert {r.type for r in dns.resources} == {"iotplatform:dns:GlobalDns", "aws:route53/record:Record"}
    assert dns.stack == "dev-dns" and all("dev-dns" in r.urn for r in dns.resources)


def test_a_failing_program_raises_cleanly_and_the_next_evaluation_still_works() -> None:
    with pytest.raises(EvaluationFailed) as info:
        evaluate(replication_args("us-east-1", residency=(PRIMARY, SECONDARY)), stack="dev-replication")
    assert str(info.value).startswith("dev-replication: replication to us-east-1 refused")
    assert "While processing" not in str(info.value) and "has risen" not in str(info.value)
    after = evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    assert _snapshot(after) == _snapshot(region_eval(PRIMARY, True))


@pytest.mark.slow
def test_evaluation_leaves_the_callers_pulumi_context_alone() -> None:
    before = (pulumi.get_stack(), dict(pulumi.runtime.config.CONFIG.get()))
    evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    assert (pulumi.get_stack(), dict(pulumi.runtime.config.CONFIG.get())) == before


@pytest.mark.slow
def test_evaluate_works_from_worker_threads_in_parallel() -> None:
    results: dict[str, object] = {}

    def plan(region: str) -> None:
        results[region] = evaluate(region_args(region, owner=False), stack=f"dev-region-{region}")

    threads = [threading.Thread(target=plan, args=(r,)) for r in (PRIMARY, SECONDARY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {r: ev.outputs["iotEndpoint"] for r, ev in results.items()} == {
        PRIMARY: ats_endpoint(PRIMARY), SECONDARY: ats_endpoint(SECONDARY)}


@pytest.mark.slow
def test_ten_region_plans_evaluate_one_after_another() -> None:
    # How long they take is bench/plan_scaling.py's measure (docs/performance.md), not a test's.
    regions = ["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "us-east-1",
               "us-east-2", "us-west-2", "ap-southeast-1", "ap-northeast-1"]
    endpoints = {region: evaluate(region_args(region, owner=region == "eu-west-1"),
                                  stack=f"dev-region-{region}").outputs["iotEndpoint"] for region in regions}
    assert endpoints == {region: ats_endpoint(region) for region in regions}


def test_protect_parent_and_dependencies_come_from_the_registration_request() -> None:
    ev = region_eval(PRIMARY, True)
    bucket = ev.named(f"iot-dev-{PRIMARY}-lake")
    assert bucket.protect and bucket.parent == f"iot-dev-{PRIMARY}" and bucket.custom
    component = ev.named(f"iot-dev-{PRIMARY}")
    assert not component.custom and component.parent is None and not component.protect
    versioning = ev.named(f"iot-dev-{PRIMARY}-lake-versioning")
    assert versioning.depends_on == (bucket.name,) and not versioning.protect


def test_mock_arns_use_the_resource_region_and_the_mock_account() -> None:
    ev = region_eval(SECONDARY, False)
    assert ev.outputs["streamArn"].startswith(f"arn:aws:kinesis:{SECONDARY}:{ACCOUNT_ID}:stream/")
    assert ev.outputs["certificateArn"].startswith(f"arn:aws:acm:{SECONDARY}:{ACCOUNT_ID}:certificate/")
    assert ev.outputs["dataLakeBucketName"].startswith(f"iot-dev-lake-{SECONDARY}-")


def test_ats_endpoint_is_stable_and_shaped_like_the_real_one() -> None:
    host = ats_endpoint("ap-southeast-2")
    assert host == ats_endpoint("ap-southeast-2")
    prefix, rest = host.split("-ats.", 1)
    assert len(prefix) == 14 and prefix.isalnum() and rest == "iot.ap-southeast-2.amazonaws.com"


def test_an_invoke_without_a_mock_is_named() -> None:
    class Call:
        token, args, provider = "aws:ec2/getVpc:getVpc", {}, ""

    with pytest.raises(NotImplementedError, match="aws:ec2/getVpc:getVpc"):
        PlatformMocks().call(Call())
