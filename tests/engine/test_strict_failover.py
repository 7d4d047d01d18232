"""Failover that real Route 53 accepts: the real engine, the stand-in provider sending what
terraform-provider-aws sends, and the strict Route 53 gate (tests/aws_gate.py) in front of moto.

up (single) -> promote-secondary (failover) -> failover -> failback -> destroy the secondary. Every
change batch must be accepted, and after every step the name must answer only regions that are
ready (all healthy, and each region down in turn).
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


def _answers(gate: Gate, zone: str) -> dict[str, frozenset[str]]:
    return {"all": gate.answers(zone, NAME),
            **{f"{r} down": gate.answers(zone, NAME, down=frozenset({r})) for r in (PRIMARY, SECONDARY)}}


def test_dns_mode_sequence_passes_the_strict_route53_layer(make_project, gate: Gate) -> None:
    zone = _zone(gate).split("/")[-1]
    project: OrchestrateProject = make_project(dev_topology())
    env = {"FAKE_AWS_MOTO_URL": gate.url}

    def run(*args: str) -> Any:
        return project.json(*args, "--endpoint-url", gate.url, env=env)

    project.run("up", "--region", PRIMARY, "--endpoint-url", gate.url, env=env)
    assert _answers(gate, zone)["all"] == {PRIMARY}

    report = run("promote-secondary", "--region", SECONDARY, "--routing", "failover")
    assert report["ok"] is True, report
    assert _answers(gate, zone) == {"all": {PRIMARY}, f"{PRIMARY} down": {SECONDARY},
                                    f"{SECONDARY} down": {PRIMARY}}

    report = run("failover", "--to", SECONDARY)
    assert report["ok"] is True, report
    assert _answers(gate, zone) == {"all": {SECONDARY}, f"{PRIMARY} down": {SECONDARY},
                                    f"{SECONDARY} down": {PRIMARY}}
    records = {r.get("SetIdentifier"): r for r in gate.records(zone) if r["Type"] == "CNAME"}
    assert set(records) == {"primary", "secondary"}  # the roles stayed; the values moved

    report = run("failback")
    assert report["ok"] is True, report
    assert _answers(gate, zone)["all"] == {PRIMARY}

    project.run("destroy", "--region", SECONDARY, "--yes", "--endpoint-url", gate.url, env=env)
    assert _answers(gate, zone)["all"] == {PRIMARY}
    assert gate.rejected_batches == [], gate.rejected_batches
    assert gate.accepted_batches, "the stand-in provider sent no change batch through the gate"
