"""The stack DAG: waves for 1, 2 and 5 regions, reverse order for destroy, pictures."""

from __future__ import annotations

import pytest

from orchestrator.errors import InputRejected
from orchestrator.stacks import graph
from orchestrator.topology import parse

REGIONS = ["eu-west-1", "eu-central-1", "eu-north-1", "eu-west-2", "eu-west-3"]


def topo(n: int, routing: str | None = None):  # noqa: ANN201
    return parse({
        "domain": "iot.example.com", "hosted_zone": "example.com", "primary": REGIONS[0],
        "secondaries": REGIONS[1:n], "routing": routing or ("single" if n == 1 else "latency"),
        "residency": REGIONS,
    }, env="dev", source="t")


def names(waves):  # noqa: ANN001, ANN201
    return [[s.name for s in w] for w in waves]


def test_one_region_is_region_then_dns() -> None:
    t = topo(1)
    assert names(graph.plan_waves(t, graph.up_selection(t, None))) == [["dev-region-eu-west-1"], ["dev-dns"]]


def test_two_regions_run_in_parallel_then_dns_and_replication() -> None:
    t = topo(2)
    assert names(graph.plan_waves(t, graph.up_selection(t, None))) == [
        ["dev-region-eu-central-1", "dev-region-eu-west-1"], ["dev-dns"], ["dev-replication"]]


def test_five_regions_three_waves() -> None:
    t = topo(5)
    waves = names(graph.plan_waves(t, graph.up_selection(t, None)))
    assert len(waves) == 3 and len(waves[0]) == 5
    assert waves[1:] == [["dev-dns"], ["dev-replication"]]


def test_single_region_selection_keeps_downstream() -> None:
    t = topo(2)
    assert names(graph.plan_waves(t, graph.up_selection(t, "eu-central-1"))) == [
        ["dev-region-eu-central-1"], ["dev-dns"], ["dev-replication"]]


def test_non_member_region_is_rejected() -> None:
    with pytest.raises(InputRejected) as info:
        graph.up_selection(topo(1), "eu-north-1")
    assert "not a member of env dev" in info.value.one_line() and "promote-secondary" in info.value.one_line()


def test_cycle_is_detected() -> None:
    with pytest.raises(InputRejected, match="cycle"):
        graph.waves(["a", "b"], {"a": ["b"], "b": ["a"]})


@pytest.mark.parametrize("routing, routed", [("failover", ["eu-west-1", "eu-central-1"]),
                                             ("latency", REGIONS[:3])])
def test_dns_targets(routing: str, routed: list[str]) -> None:
    assert list(graph.dns_targets(topo(3, routing))) == routed
    assert list(graph.dns_targets(topo(1))) == ["eu-west-1"]


def test_mermaid_shows_roles_routing_and_replication() -> None:
    text = graph.render_mermaid(topo(3, "failover"))
    assert text.startswith("flowchart LR")
    assert "dev-region-eu-west-1<br/>primary" in text
    assert "dev_region_eu_north_1 -.->|not routed| dev_dns" in text
    assert "dev_replication ==>|s3 + registry| dev_region_eu_central_1" in text


def test_dot_is_a_digraph() -> None:
    text = graph.render_dot(topo(2))
    assert text.startswith("digraph stacks {") and text.rstrip().endswith("}")
    assert '"dev-replication" -> "dev-region-eu-central-1"' in text
