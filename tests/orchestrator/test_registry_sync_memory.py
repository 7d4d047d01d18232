"""What keeps a sync's memory from growing with the fleet (issue 22): the per-thing records are
slotted, a plan's destination ARNs are a view of the listing (not a copy), and the certificate ARNs
the executor learns while applying live in the spill file, without costing a call more."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.registry.snapshot import (
    Certificate,
    PolicyTarget,
    RegistrySnapshot,
    Shadow,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
)
from orchestrator.registry.spill import PAGE, SpillStore
from orchestrator.registry.sync import SyncPlan, plan_sync
from orchestrator.registry.sync.apply import _Executor
from orchestrator.registry.sync.plan import ArnsOf

ARN = "arn:aws:iot:eu-central-1:123456789012:cert/{}"


class _Describing:
    """A destination caller that answers DescribeCertificate for the ids it holds (and refuses others,
    as AWS does), counting calls."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.calls: list[tuple[str, str]] = []

    def call(self, api: str, **kwargs: Any) -> Any:
        assert api == "describe_certificate", api
        cert_id = kwargs["certificateId"]
        self.calls.append((api, cert_id))
        if cert_id not in self.ids:
            raise KeyError(f"ResourceNotFoundException: {cert_id}")
        return {"certificateDescription": {"certificateId": cert_id, "certificateArn": ARN.format(cert_id)}}


def test_per_thing_records_carry_no_instance_dict() -> None:
    records = [Thing("t"), Certificate("c", "ACTIVE"), ThingPrincipal("t", "c"),
               PolicyTarget("p", TargetKind.CERTIFICATE, "c"), Shadow("t")]
    for record in records:
        assert not hasattr(record, "__dict__"), type(record).__name__
    with pytest.raises(AttributeError):
        records[0].name = "other"  # type: ignore[misc]  # still frozen


def test_a_plans_destination_arns_are_the_listings_own() -> None:
    dst = RegistrySnapshot("eu-central-1", certificates=(
        Certificate("a" * 64, "ACTIVE", arn=ARN.format("a" * 64)), Certificate("b" * 64, "ACTIVE")),
        thing_groups=(ThingGroup("g", arn="arn:aws:iot:eu-central-1:123456789012:thinggroup/g"),))
    plan = plan_sync(RegistrySnapshot("eu-west-1"), dst, False)
    arns = plan.dst_certificate_arns
    assert isinstance(arns, ArnsOf)
    assert dict(arns) == {"a" * 64: ARN.format("a" * 64)}  # a certificate without an ARN is absent
    assert arns.get("b" * 64) is None and "b" * 64 not in arns and len(arns) == 1
    assert dict(plan.dst_group_arns) == {"g": "arn:aws:iot:eu-central-1:123456789012:thinggroup/g"}


def test_learnt_certificate_arns_are_spilled_and_cost_no_describe() -> None:
    listed = "0" * 64
    dst = RegistrySnapshot("eu-central-1", certificates=(Certificate(listed, "ACTIVE", arn=ARN.format(listed)),))
    learnt = [f"{i:064x}" for i in range(1, 2 * PAGE + 4)]
    caller = _Describing({listed, *learnt, "f" * 64})
    plan = SyncPlan("eu-west-1", "eu-central-1", False, (), dst_certificate_arns=ArnsOf(dst.certificates_by_id))
    with SpillStore() as store:
        table = store.table("cert_arns")
        executor = _Executor(caller, plan, arns=table)  # type: ignore[arg-type]
        for cert_id in learnt:  # what registering a certificate records
            executor._cert_arns[cert_id] = ARN.format(cert_id)
        assert len(table) == 2 * PAGE  # whole pages in the file; the rest waits for the next page
        for cert_id in (listed, learnt[0], learnt[PAGE], learnt[-1]):
            assert executor.cert_arn(cert_id) == ARN.format(cert_id)
        assert caller.calls == []  # known from the listing or from registration: no call
        assert executor.cert_arn("f" * 64) == ARN.format("f" * 64)
        assert executor.cert_arn("f" * 64) == ARN.format("f" * 64)
        assert caller.calls == [("describe_certificate", "f" * 64)]  # described once, then remembered
