"""Topology validation: every rejection names the file and the field, exit code 2, nothing touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import InputRejected
from orchestrator.topology import RoutingMode, load, parse, save
from tests.orchestrator.conftest import write_topology

BASE = {
    "domain": "iot.example.com",
    "hosted_zone": "example.com",
    "primary": "eu-west-1",
    "secondaries": [],
    "routing": "single",
    "residency": ["eu-west-1", "eu-central-1"],
}


def rejected(**changes: object) -> str:
    data = {**BASE, **changes}
    with pytest.raises(InputRejected) as info:
        parse(data, env="dev", source="stacks/dev.topology.yaml")
    message = info.value.one_line()
    assert message.startswith("stacks/dev.topology.yaml: ")
    assert "\n" not in message
    return message


def test_shipped_topologies_parse() -> None:
    repo = Path(__file__).resolve().parents[2]
    dev = load(repo / "stacks" / "dev.topology.yaml")
    prod = load(repo / "stacks" / "prod.topology.yaml")
    assert (dev.primary, dev.secondaries, dev.routing) == ("eu-west-1", (), RoutingMode.SINGLE)
    assert prod.env == "prod" and prod.sizing("eu-west-1").kinesis_shards == 4


def test_unknown_region() -> None:
    assert "primary: 'eu-moon-1' is not an AWS region" in rejected(primary="eu-moon-1")


def test_unknown_secondary_region() -> None:
    assert "secondaries[0]: 'us-moon-2' is not an AWS region" in rejected(secondaries=["us-moon-2"],
                                                                           routing="failover")


def test_duplicate_secondary() -> None:
    msg = rejected(secondaries=["eu-central-1", "eu-central-1"], routing="latency")
    assert "secondaries[1]: eu-central-1 is listed twice" in msg


def test_primary_listed_as_secondary() -> None:
    assert "primary eu-west-1 is also listed as a secondary" in rejected(secondaries=["eu-west-1"], routing="failover")


@pytest.mark.parametrize("routing", ["failover", "latency"])
def test_routing_needs_two_regions(routing: str) -> None:
    assert f"routing: {routing} routing needs at least two regions" in rejected(routing=routing)


def test_unknown_routing() -> None:
    assert "routing: 'geo' is not one of single, failover, latency" in rejected(routing="geo")


def test_secondary_outside_residency() -> None:
    msg = rejected(secondaries=["us-east-1"], routing="failover")
    assert "secondaries[0]: us-east-1 is outside residency" in msg


@pytest.mark.parametrize("domain", ["iot..example.com", "-iot.example.com", "iot_example.com", "x", 42])
def test_malformed_domain(domain: object) -> None:
    assert "domain: " in rejected(domain=domain) and "is not a valid DNS name" in rejected(domain=domain)


def test_domain_outside_zone() -> None:
    assert "is not inside hosted_zone" in rejected(domain="iot.example.org")
    assert "is not inside hosted_zone" in rejected(domain="iot.badexample.com")


def test_domain_at_the_zone_apex_is_refused_route53_allows_no_cname_there() -> None:
    msg = rejected(domain="example.com", hosted_zone="example.com")
    assert "domain: 'example.com' is the apex of hosted_zone 'example.com'" in msg
    assert "no CNAME at a zone apex" in msg and "iot.example.com" in msg


def test_unknown_top_level_key() -> None:
    assert "primray: unknown key" in rejected(primray="eu-west-1")


def test_unknown_sizing_key() -> None:
    assert "sizing.default.shards: unknown key" in rejected(sizing={"default": {"shards": 2}})


def test_bad_sizing_value() -> None:
    assert "sizing.eu-west-1.retention_hours: 2 must be a whole number from 24 to 8760" in \
        rejected(sizing={"eu-west-1": {"retention_hours": 2}})


def test_group_parent_must_exist() -> None:
    msg = rejected(registry={"thing_groups": [{"name": "a", "parent": "nope"}]})
    assert "registry.thing_groups[0].parent" in msg


def test_not_a_mapping() -> None:
    with pytest.raises(InputRejected, match="must be a mapping"):
        parse(["eu-west-1"], env="dev", source="x.yaml")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "dev.topology.yaml"
    path.write_text("domain: iot.example.com\nprimary: [eu-west-1\n")
    with pytest.raises(InputRejected, match=r"dev.topology.yaml: line \d+ malformed YAML"):
        load(path)


def test_round_trip_through_save(tmp_path: Path) -> None:
    topo = parse({**BASE, "secondaries": ["eu-central-1"], "routing": "failover"}, env="dev", source="t")
    path = tmp_path / "dev.topology.yaml"
    save(topo, path)
    again = load(path)
    assert (again.primary, again.secondaries, again.routing) == ("eu-west-1", ("eu-central-1",), RoutingMode.FAILOVER)
    assert path.read_text().startswith("# Topology of environment 'dev'")


def test_role_swap_keeps_residency_rules() -> None:
    topo = parse({**BASE, "secondaries": ["eu-central-1"], "routing": "failover"}, env="dev", source="t")
    swapped = topo.with_primary("eu-central-1")
    assert swapped.primary == "eu-central-1" and swapped.secondaries == ("eu-west-1",)
    with pytest.raises(InputRejected):
        topo.with_secondary("us-east-1")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("primary: eu-moon-1\ndomain: iot.example.com\nhosted_zone: example.com\n", "is not an AWS region"),
        ("domain: iot.example.com\nhosted_zone: example.com\nprimary: eu-west-1\nsecondaries: [eu-central-1]\n"
         "routing: failover\nresidency: [eu-west-1]\n", "outside residency"),
        ("domain: iot.example.com\nhosted_zone: example.com\nprimary: eu-west-1\nextra: 1\n", "unknown key"),
    ],
)
def test_cli_rejects_with_one_line_and_exit_2(run, project: Path, engine, text: str, expected: str) -> None:  # noqa: ANN001
    write_topology(project, "dev", text)
    for args in (["plan", "--json"], ["up", "--all"], ["destroy", "--all", "--yes"], ["status"]):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        if "--json" in args:  # the refusal is a document too (docs/json.md)
            error = json.loads(result.stdout)["error"]
            assert error["code"] == "bad-input" and expected in error["message"]
        else:
            assert result.stdout == ""
    assert engine.calls == []


def test_failover_control_defaults_to_dns_and_accepts_arc(tmp_path: Path) -> None:
    from orchestrator.topology import FailoverControl

    assert parse(BASE, env="dev").failover_control is FailoverControl.DNS
    arc = parse({**BASE, "secondaries": ["eu-central-1"], "routing": "failover", "failover_control": "arc"},
                env="dev", source=str(tmp_path / "dev.topology.yaml"))
    assert arc.failover_control is FailoverControl.ARC
    path = tmp_path / "dev.topology.yaml"
    save(arc, path)
    assert load(path).failover_control is FailoverControl.ARC
    # a role swap (failover) keeps the control mode
    assert arc.with_primary("eu-central-1").failover_control is FailoverControl.ARC


def test_unknown_failover_control_is_refused() -> None:
    assert "failover_control: 'route53' is not one of dns, arc" in rejected(failover_control="route53")


def test_dns_stack_config_carries_the_failover_control() -> None:
    from orchestrator.stacks.wiring import dns_args

    topology = parse({**BASE, "failover_control": "arc"}, env="dev")
    assert dns_args(topology, {}, regions=[]).failover_control == "arc"


@pytest.mark.parametrize(("prefix", "expected"), [
    ("config/*", "IAM wildcard"),
    ("conf?g/", "IAM wildcard"),
    ("*", "IAM wildcard"),
    ("config/${iot:ClientId}/", "policy variable"),
    ("config", "must end with /"),
    ("fleet/set", "must end with /"),
    ("config/+/", "MQTT wildcard"),
    ("config/#", "MQTT wildcard"),
    ("", "non-empty"),
])
def test_retained_prefixes_that_would_widen_the_iam_grant_are_refused(prefix: str, expected: str) -> None:
    # each prefix becomes the IAM resource topic/<prefix>* of the replication function's role
    message = rejected(registry={"retained_topics": ["config/", prefix]})
    assert "registry.retained_topics[1]" in message and expected in message


def test_literal_retained_prefixes_ending_in_a_slash_are_kept() -> None:
    topology = parse({**BASE, "registry": {"retained_topics": ["config/", "fleet/settings/"]}}, env="dev",
                     source="stacks/dev.topology.yaml")
    assert topology.registry.retained_topics == ("config/", "fleet/settings/")


def test_cli_refuses_a_widening_retained_prefix_in_one_line_exit_2(run, project: Path, engine) -> None:  # noqa: ANN001
    write_topology(project, "dev", "domain: iot.example.com\nhosted_zone: example.com\nprimary: eu-west-1\n"
                                   "registry:\n  retained_topics: ['config/*']\n")
    result = run("plan", "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["code"] == "bad-input"
    result = run("up", "--all")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "IAM wildcard" in result.stderr
    assert engine.calls == []
