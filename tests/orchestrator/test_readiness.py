"""The readiness scorecard without AWS: which rules run where, how verdicts add up, what a broken
rule reports, the sample's stated confidence, and the markdown section CI posts."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.aws import AwsContext
from orchestrator.readiness import Probe, Status, evaluate
from orchestrator.readiness.evaluate import applicable
from orchestrator.readiness.model import RULES, Finding, ReadinessReport, RegionReadiness, Scope, not_ready, ready, rule
from orchestrator.readiness.probe import Unreadable
from orchestrator.readiness.rules.registry import detectable_fraction, sample_statement
from orchestrator.topology import parse


def topo(**extra: Any) -> Any:
    return parse({"env": "dev", "domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
                  "secondaries": ["eu-central-1"], "routing": "failover",
                  "residency": ["eu-west-1", "eu-central-1"], **extra}, env="dev")


def probe(topology: Any) -> Probe:
    return Probe(env="dev", topology=topology, ctx=AwsContext(endpoint_url="http://127.0.0.1:9"),
                 outputs=lambda _n: {})


def test_parity_rules_skip_the_primary_env_rules_run_once_and_arc_rules_only_in_arc_mode() -> None:
    pairs = {(r.id, region) for r, region in applicable(probe(topo()))}
    assert ("registry.parity.certificates", "eu-central-1") in pairs
    assert ("registry.parity.certificates", "eu-west-1") not in pairs
    assert ("domain.configuration_enabled", "eu-west-1") in pairs
    assert [region for rid, region in pairs if rid == "backups.signed"] == ["env"]
    assert not {rid for rid, _ in pairs if rid.startswith("routing.arc")}
    arc = {(r.id, region) for r, region in applicable(probe(topo(failover_control="arc")))}
    assert ("routing.arc_control", "eu-central-1") in arc and ("routing.arc_safety_rule", "eu-west-1") in arc
    only = {region for _, region in applicable(probe(topo()), ("eu-central-1",))}
    assert only == {"eu-central-1", "env"}


def test_a_rule_that_raises_is_unknown_never_ready() -> None:
    import orchestrator.readiness.rules  # noqa: F401 - registered before the registry is swapped

    def boom(_p: Probe, _r: str) -> Any:
        raise KeyError("x")

    def unanswered(_p: Probe, _r: str) -> Any:
        raise Unreadable("DescribeStreamSummary s: ThrottlingException")

    saved = dict(RULES)
    RULES.clear()
    try:
        rule("test.boom", "test", "raises", scope=Scope.ENV)(boom)
        rule("test.unread", "test", "its read did not answer", scope=Scope.ENV)(unanswered)
        rule("test.ok", "test", "fine", scope=Scope.ENV)(lambda _p, _r: ready("fine"))
        report = evaluate(probe(topo()))
    finally:
        RULES.clear()
        RULES.update(saved)
    statuses = {f.rule: (f.status, f.evidence) for f in report.regions[-1].findings}
    assert statuses == {"test.boom": (Status.UNKNOWN, "the rule failed: KeyError"), "test.ok": (Status.READY, "fine"),
                        "test.unread": (Status.UNKNOWN, "DescribeStreamSummary s: ThrottlingException")}
    assert not report.ready


def test_registering_a_rule_id_twice_is_refused() -> None:
    import orchestrator.readiness.rules  # noqa: F401

    with pytest.raises(ValueError, match="registered twice"):
        rule("backups.age", "backups", "again")(lambda _p, _r: ready("x"))
    assert len(RULES) >= 30


def _report(*findings: Finding) -> ReadinessReport:
    regions = sorted({f.region for f in findings})
    return ReadinessReport("dev", "eu-west-1", tuple(
        RegionReadiness(r, "secondary", tuple(f for f in findings if f.region == r)) for r in regions))


def _f(rule_id: str, region: str, status: Status, evidence: str = "e", fix: str = "") -> Finding:
    return Finding(rule_id, "g", "t", region, status, evidence, fix)


def test_a_region_is_ready_only_when_every_row_is_ready_or_not_applicable() -> None:
    ok = _report(_f("a", "r1", Status.READY), _f("b", "r1", Status.NOT_APPLICABLE))
    assert ok.ready and ok.regions[0].status is Status.READY
    unknown = _report(_f("a", "r1", Status.READY), _f("b", "r1", Status.UNKNOWN))
    assert not unknown.ready and unknown.regions[0].status is Status.UNKNOWN
    bad = _report(_f("a", "r1", Status.UNKNOWN), _f("b", "r1", Status.NOT_READY))
    assert bad.regions[0].status is Status.NOT_READY
    assert bad.to_json()["regions"] == [{"region": "r1", "role": "secondary", "status": "NOT READY", "ready": 0,
                                         "not_ready": 1, "unknown": 1}]


def test_markdown_says_which_change_makes_a_region_not_ready_and_escapes_table_cells() -> None:
    verdict = not_ready("3 dead letters | more", "orchestrate registry replay --from-dlq --region eu-central-1")
    report = _report(_f("replication.dead_letters", "eu-central-1", verdict.status, verdict.evidence, verdict.fix),
                     _f("domain.configuration_enabled", "eu-west-1", Status.READY, "ENABLED"))
    md = report.markdown()
    assert md.startswith("## Readiness\n")
    assert ("This change makes **eu-central-1 NOT READY** because replication.dead_letters: 3 dead letters \\| more"
            in md)
    assert "eu-west-1 NOT READY" not in md
    assert ("| eu-central-1 | `replication.dead_letters` | ❌ NOT READY | 3 dead letters \\| more | "
            "`orchestrate registry replay --from-dlq --region eu-central-1` |") in md
    assert "Every region" not in md
    assert "Every region of `dev` is **READY**" in _report(_f("a", "r1", Status.READY)).markdown()


def test_the_sample_size_states_the_difference_it_finds_with_95_percent_confidence() -> None:
    assert detectable_fraction(150) == pytest.approx(0.0198, abs=1e-4)
    assert 1 - (1 - detectable_fraction(150)) ** 150 == pytest.approx(0.95)
    assert sample_statement(150, 10_000).startswith("thing principals and shadows sampled: 150 of 10000 things "
                                                    "(a difference in >= 2 % of things")


def test_status_points_to_readiness() -> None:
    from orchestrator.operations.status import EnvironmentStatus

    lines = EnvironmentStatus("dev", "iot.example.com", "failover", ()).lines()
    assert lines[-1] == "can each region take the traffic now? run `orchestrate readiness`"
