"""Failover that real Route 53 accepts: the real engine, the stand-in provider sending what
terraform-provider-aws sends, and the strict Route 53 gate (tests/aws_gate.py) in front of moto.

In both failover controls (dns records, ARC routing controls): up (single) -> promote-secondary
(failover) -> failover during a primary outage -> failback -> destroy the secondary; and the latency
variant (promote, a third region whose promotion fails, a routine up, its promotion, its removal).
Every change batch must be accepted, and after every step the name must answer only regions that
are ready (all healthy, and each region down in turn).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.aws_gate import Gate
from tests.engine.helpers import OrchestrateProject, dev_topology, reset_moto

PRIMARY, SECONDARY = "eu-west-1", "eu-central-1"
NAME = "iot.example.com."


@pytest.fixture
def gate(moto_server: str) -> Iterator[Gate]:
    reset_moto(moto_server)
    with Gate(moto_server).serve() as g:
        yield g


def _zone(gate: Gate) -> str:
    r53 = boto3.client("route53", region_name="us-east-1", endpoint_url=gate.url,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return str(r53.create_hosted_zone(Name="example.com", CallerReference="engine-strict")["HostedZone"]["Id"])


def _arc_env(arc: Any) -> dict[str, str]:
    """What the stand-in provider needs to register routing controls with the fake cluster, and
    the cluster endpoints it reports."""
    import json

    return {"FAKE_AWS_ARC_URL": next(iter(arc.endpoints.values())).rsplit("/v1", 1)[0],
            "FAKE_AWS_ARC_ENDPOINTS": json.dumps(arc.endpoint_list)}


def _answers(gate: Gate, zone: str) -> dict[str, frozenset[str]]:
    return {"all": gate.answers(zone, NAME, down=frozenset()),  # settled: every region up
            **{f"{r} down": gate.answers(zone, NAME, down=frozenset({r})) for r in (PRIMARY, SECONDARY)}}


def test_dns_mode_sequence_passes_the_strict_route53_layer(make_project, gate: Gate) -> None:
    zone = _zone(gate).split("/")[-1]
    project: OrchestrateProject = make_project(dev_topology())
    env = {"FAKE_AWS_MOTO_URL": gate.url}

    def run(*args: str) -> Any:
        return project.json(*args, "--endpoint-url", gate.url, env=env)

    project.run("up", "--yes", "--region", PRIMARY, "--endpoint-url", gate.url, env=env)
    assert _answers(gate, zone)["all"] == {PRIMARY}

    report = run("promote-secondary", "--yes", "--region", SECONDARY, "--routing", "failover")
    assert report["ok"] is True, report
    assert _answers(gate, zone) == {"all": {PRIMARY}, f"{PRIMARY} down": {SECONDARY},
                                    f"{SECONDARY} down": {PRIMARY}}

    # the failover happens during an outage: every request signed for the primary is refused
    gate.reset_counts()
    gate.down.add(PRIMARY)
    report = run("failover", "--yes", "--to", SECONDARY)
    assert report["ok"] is True, report
    assert any("may be stale by" in step["detail"] for step in report["steps"]), report
    assert gate.count(region=PRIMARY) == 0 and [(c.region, c.service) for c in gate.refused] == [(PRIMARY, "iot")]
    assert set(gate.by_region_and_service()) == {("us-east-1", "route53")}  # the DNS stack's records only
    gate.down.clear()
    assert _answers(gate, zone) == {"all": {SECONDARY}, f"{PRIMARY} down": {SECONDARY},
                                    f"{SECONDARY} down": {PRIMARY}}
    records = {r.get("SetIdentifier"): r for r in gate.records(zone) if r["Type"] == "CNAME" and r["Name"] == NAME}
    assert set(records) == {"primary", "secondary"}  # the roles stayed; the values moved

    report = run("failback", "--yes")
    assert report["ok"] is True, report
    assert _answers(gate, zone)["all"] == {PRIMARY}

    project.run("destroy", "--yes", "--region", SECONDARY, "--endpoint-url", gate.url, env=env)
    assert _answers(gate, zone)["all"] == {PRIMARY}
    assert gate.rejected_batches == [], gate.rejected_batches
    assert gate.accepted_batches, "the stand-in provider sent no change batch through the gate"


def test_arc_mode_sequence_moves_traffic_with_routing_controls_only(make_project, gate: Gate) -> None:
    from orchestrator.drill.world.arc import ArcCluster

    zone = _zone(gate).split("/")[-1]
    project: OrchestrateProject = make_project(dev_topology(failover_control="arc"))
    with ArcCluster(time_scale=0.1).serve() as arc:  # wait periods of 0.5 s: met, and waited out
        env = {"FAKE_AWS_MOTO_URL": gate.url, **_arc_env(arc)}

        def run(*args: str) -> Any:
            return project.json(*args, "--endpoint-url", gate.url, env=env)

        def answers(*down: str) -> frozenset[str]:
            return gate.answers(zone, NAME, down=frozenset(down), controls=arc.states())

        project.run("up", "--yes", "--region", PRIMARY, "--endpoint-url", gate.url, env=env)
        report = run("promote-secondary", "--yes", "--region", SECONDARY, "--routing", "failover")
        assert report["ok"] is True, report
        assert len(arc.controls) == 2 and set(arc.states().values()) == {"On"}
        assert (answers(), answers(PRIMARY), answers(SECONDARY)) == ({PRIMARY}, {SECONDARY}, {PRIMARY})

        batches = len(gate.accepted_batches)
        gate.reset_counts()
        arc.calls.clear()
        gate.down.add(PRIMARY)
        arc.down.add(PRIMARY)
        report = run("failover", "--yes", "--to", SECONDARY)
        assert report["ok"] is True, report
        assert answers() == {SECONDARY} and answers(PRIMARY) == {SECONDARY}
        # no Pulumi update, no Route 53 call, nothing answered by the failed region
        assert len(gate.accepted_batches) == batches
        assert gate.count(service="route53") == 0 and gate.count(region=PRIMARY) == 0
        # one write, then its read-back (refused while the write's wait period runs, reads included)
        reads = arc.count(operation="ListRoutingControls")
        assert arc.count(PRIMARY) == 0 and arc.count(operation="UpdateRoutingControlStates") == 1
        assert reads >= 1 and arc.count() == 1 + reads
        gate.down.clear()
        arc.down.clear()

        report = run("failback", "--yes")
        assert report["ok"] is True, report
        assert answers() == {PRIMARY} and set(arc.states().values()) == {"On"}
        status = run("status")
        assert status["failover_control"] == "arc"
        assert status["routing_controls"] == {PRIMARY: "On", SECONDARY: "On"}

        # the secondary leaves: back to one region, the name keeps answering the primary throughout
        project.run("destroy", "--yes", "--region", SECONDARY, "--endpoint-url", gate.url, env=env)
        assert answers() == {PRIMARY} and answers(SECONDARY) == {PRIMARY}
        assert SECONDARY not in " ".join(arc.controls), arc.controls
        assert gate.rejected_batches == [], gate.rejected_batches


THIRD = "eu-west-2"


@pytest.mark.parametrize("control", ["dns", "arc"])
def test_latency_mode_a_failed_promotion_and_a_routine_up_keep_dns_on_ready_regions(make_project, gate: Gate,
                                                                                    control: str) -> None:
    from contextlib import ExitStack

    from orchestrator.drill.world.arc import ArcCluster

    zone = _zone(gate).split("/")[-1]
    project: OrchestrateProject = make_project(dev_topology(residency=[PRIMARY, SECONDARY, THIRD],
                                                            failover_control=control))
    with ExitStack() as stack:
        env = {"FAKE_AWS_MOTO_URL": gate.url}
        arc = stack.enter_context(ArcCluster(time_scale=0.1).serve()) if control == "arc" else None
        if arc is not None:
            env |= _arc_env(arc)

        def answers() -> frozenset[str]:
            return gate.answers(zone, NAME, controls=arc.states() if arc is not None else None)

        project.run("up", "--yes", "--region", PRIMARY, "--endpoint-url", gate.url, env=env)
        report = project.json("promote-secondary", "--yes", "--region", SECONDARY, "--routing", "latency",
                              "--endpoint-url", gate.url, env=env)
        assert report["ok"] is True, report
        assert answers() == {PRIMARY, SECONDARY}

        # the third region's promotion fails at the replication stack ...
        failing = {**env, "FAKE_AWS_FAIL_ON": "dev-replication::"}
        project.run("promote-secondary", "--yes", "--region", THIRD, "--routing", "latency",
                    "--endpoint-url", gate.url, env=failing, expect=1)
        # ... a routine `up` does not route to it
        project.run("up", "--yes", "--region", PRIMARY, "--endpoint-url", gate.url, env=env)
        assert answers() == {PRIMARY, SECONDARY}
        report = project.json("promote-secondary", "--yes", "--region", THIRD, "--routing", "latency",
                              "--endpoint-url", gate.url, env=env)
        assert report["ok"] is True, report
        assert answers() == {PRIMARY, SECONDARY, THIRD}

        project.run("destroy", "--yes", "--region", THIRD, "--endpoint-url", gate.url,
                    env={**env, "ORCHESTRATE_DNS_DRAIN_SECONDS": "0"})
        assert answers() == {PRIMARY, SECONDARY}
        if arc is not None:
            assert THIRD not in " ".join(arc.controls), arc.controls
        assert gate.rejected_batches == [], gate.rejected_batches
