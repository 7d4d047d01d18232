"""Which regions DNS routes to: members minus the not-yet-routed ones, in an order Route 53 accepts."""

from __future__ import annotations

from pathlib import Path

from orchestrator.context import Context
from orchestrator.stacks.graph import dns_targets
from orchestrator.topology import parse, save

BASE = {"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
        "residency": ["eu-west-1", "eu-central-1", "eu-west-2"]}


def test_latency_leaves_out_regions_whose_promotion_has_not_reached_dns() -> None:
    topo = parse({**BASE, "secondaries": ["eu-central-1", "eu-west-2"], "routing": "latency"}, env="dev")
    assert dns_targets(topo) == ("eu-west-1", "eu-central-1", "eu-west-2")
    held = topo.with_unrouted({"eu-west-2"})
    assert dns_targets(held) == ("eu-west-1", "eu-central-1")
    # topology changes keep what is held; the primary and non-members are never held
    assert dns_targets(held.with_primary("eu-central-1")) == ("eu-central-1", "eu-west-1")
    assert topo.with_unrouted({"eu-west-1", "us-east-1"}).unrouted == frozenset()


def test_failover_pair_is_home_first_with_arc_and_primary_first_with_dns() -> None:
    data = {**BASE, "secondaries": ["eu-central-1"], "routing": "failover"}
    dns = parse(data, env="dev").with_primary("eu-central-1")
    arc = parse({**data, "failover_control": "arc"}, env="dev").with_primary("eu-central-1")
    assert dns_targets(dns) == ("eu-central-1", "eu-west-1")  # the `primary` record moves
    assert dns_targets(arc) == ("eu-west-1", "eu-central-1")  # records never change: controls decide


def test_the_context_attaches_the_persisted_routing_state(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    config = tmp_path / "stacks" / "dev.topology.yaml"
    save(parse({**BASE, "secondaries": ["eu-central-1"], "routing": "latency"}, env="dev"), config)
    ctx = Context(env="dev", project_dir=tmp_path, config_path=config, backend_url="file://x")
    assert ctx.topology().unrouted == frozenset()
    ctx.record_unrouted({"eu-central-1"})
    assert ctx.topology().unrouted == {"eu-central-1"} and dns_targets(ctx.topology()) == ("eu-west-1",)
    assert "unrouted" not in config.read_text()  # lifecycle state, not the reviewed topology
