"""Failover that real Route 53 accepts, in both `failover_control` modes, through the CLI.

Every AWS call goes through the strict Route 53 gate in front of moto (tests/aws_gate.py); the DNS
stack's effects are those of the program applied the way pulumi-aws applies it
(tests/ops/provider_sim.py); ARC is the fake cluster data plane (orchestrator/drill/world/arc.py). After every
step the name must answer only regions that are ready, with every region up and with each one
down; no change batch may be refused.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.drill.world.arc import ArcCluster
from orchestrator.drill.world.mirror import record_set
from tests.aws_gate import Gate
from tests.doubles import InMemoryEngine, ManualClock
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.provider_sim import ProviderSimulation
from tests.ops.registry_world import seed

REPO = Path(__file__).resolve().parents[2]
NAME = "iot.example.com."
LIFECYCLE = {"promote-secondary", "failover", "failback"}
MUTATING = LIFECYCLE | {"up", "destroy"}  # confirmed on a terminal; tests answer with --yes


@pytest.fixture
def arc(monkeypatch: pytest.MonkeyPatch) -> Iterator[ArcCluster]:
    """The cluster on a manual clock that the product's pauses advance: the program's 5000 ms
    safety-rule wait period is enforced, and waited out without the test sleeping."""
    clock = ManualClock()
    monkeypatch.setattr("orchestrator.routing_controls._sleep", clock.sleep)
    with ArcCluster(clock=clock).serve() as cluster:
        yield cluster


def _clock(world: World) -> ManualClock:
    clock = world.arc.clock
    assert isinstance(clock, ManualClock)
    return clock


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, control: str) -> Path:
    (tmp_path / "stacks").mkdir()
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    data = yaml.safe_load((REPO / "stacks" / "dev.topology.yaml").read_text())
    data.update(failover_control=control, residency=[SRC, DST, THIRD])
    (tmp_path / "stacks" / "dev.topology.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATE_ENV", raising=False)
    return tmp_path


class World:
    """One platform: the CLI, the in-memory engine, the provider simulation, the gate and ARC."""

    def __init__(self, project: Path, gate: Gate, arc: ArcCluster, ctx: Any, iot: Callable[[str], Any]) -> None:
        self.project, self.gate, self.arc = project, gate, arc
        self.sim = ProviderSimulation(ctx, arc=arc)
        self.engine = InMemoryEngine()
        self.sim.attach(self.engine)
        self.zone = self.sim.zone_id.split("/")[-1]
        self.iot = iot
        self.drained: list[tuple[float, list[tuple[str, str]]]] = []  # (seconds, engine calls so far)

    def run(self, *args: str) -> Result:
        deps = Deps(engine_factory=lambda app: self.engine)
        extra = ["--sync-rate", "500"] if args and args[0] in LIFECYCLE else []
        extra += ["--yes"] if args and args[0] in MUTATING else []
        return CliRunner().invoke(cli, [*args, *extra, "--endpoint-url", self.gate.url], obj=deps,
                                  catch_exceptions=False)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        assert self.gate.rejected_batches == [], self.gate.rejected_batches
        return result

    def answers(self, *regions: str) -> dict[str, frozenset[str]]:
        controls = self.arc.states()
        # settled answers (`Gate.answers` with `down`): every region up, then each one down in turn
        out = {"all": self.gate.answers(self.zone, NAME, down=frozenset(), controls=controls)}
        for region in regions:
            out[f"{region} down"] = self.gate.answers(self.zone, NAME, down=frozenset({region}), controls=controls)
        return out

    def topology(self) -> dict[str, Any]:
        return yaml.safe_load((self.project / "stacks" / "dev.topology.yaml").read_text())


def _world(request: pytest.FixtureRequest, control: str) -> World:
    tmp_path, monkeypatch = request.getfixturevalue("tmp_path"), request.getfixturevalue("monkeypatch")
    project = _project(tmp_path, monkeypatch, control)
    world = World(project, request.getfixturevalue("gate"), request.getfixturevalue("arc"),
                  request.getfixturevalue("ctx"), request.getfixturevalue("iot"))
    monkeypatch.setattr("orchestrator.operations.dns._sleep",
                        lambda seconds: world.drained.append((seconds, list(world.engine.ops()))))
    world.ok("up", "--region", SRC)
    seed(world.iot(SRC), n_things=4, group_policy=False)
    return world


@pytest.fixture(params=["dns", "arc"])
def world(request: pytest.FixtureRequest) -> World:
    return _world(request, request.param)


@pytest.fixture
def dns_world(request: pytest.FixtureRequest) -> World:
    return _world(request, "dns")


def _calls(world: World) -> dict[str, int]:
    """Calls per (region, service) of one transition: AWS through the gate, ARC per endpoint."""
    out = {f"{r}/{s}": n for (r, s), n in sorted(world.gate.by_region_and_service().items())}
    for region, n in sorted(Counter(c.region for c in world.arc.calls).items()):
        out[f"{region}/route53-recovery-cluster"] = n
    return out


def test_failover_sequence_answers_only_ready_regions_and_every_batch_is_accepted(world: World) -> None:
    control = world.topology()["failover_control"]
    assert world.answers(SRC) == {"all": {SRC}, f"{SRC} down": {SRC}}  # single: no health check

    world.ok("promote-secondary", "--region", DST, "--routing", "failover")
    assert world.answers(SRC, DST) == {"all": {SRC}, f"{SRC} down": {DST}, f"{DST} down": {SRC}}
    if control == "arc":
        assert set(world.arc.states().values()) == {"On"}  # the promotion's DNS step turned them On

    world.gate.reset_counts()
    world.arc.calls.clear()
    world.arc.conflicts.clear()
    world.arc.throttled.clear()
    batches = len(world.gate.accepted_batches)
    failover = world.ok("failover", "--to", DST)
    assert world.topology()["primary"] == DST
    assert world.answers(SRC, DST)["all"] == {DST}
    assert world.answers(SRC, DST)[f"{SRC} down"] == {DST}
    calls = _calls(world)
    if control == "arc":
        # records never change: no Route 53 call at all, one data-plane write and one read
        assert len(world.gate.accepted_batches) == batches
        assert not any(k.endswith("/route53") for k in calls), calls
        # the write's wait period refuses its read-back (reads count as "any request"), which waits
        # it out and reads once more; a write refused for an earlier change's wait period (another
        # client's) is waited out the same way (retries that reach an endpoint a 4th time within a
        # second are throttled, and tried at the next endpoint)
        writes = world.arc.count(operation="UpdateRoutingControlStates")
        reads = world.arc.count(operation="ListRoutingControls")
        assert len(world.arc.conflicts) >= 1 and {c.why for c in world.arc.conflicts} == {"wait-period"}
        assert writes >= 1 and reads >= 2  # the read-back: refused, then answered
        assert len(world.arc.conflicts) + len(world.arc.throttled) == (writes - 1) + (reads - 1)
        assert sum(v for k, v in calls.items() if k.endswith("route53-recovery-cluster")) == writes + reads
        assert "for the safety rule's wait period" in failover.output
        assert world.arc.states() and sorted(world.arc.states().values()) == ["Off", "On"]
    else:
        # the two role-named records: one UPSERT each, nothing else
        new = world.gate.accepted_batches[batches:]
        assert sorted(len(b) for b in new) == [1, 1] and all(b[0]["Action"] == "UPSERT" for b in new)
        assert {b[0]["ResourceRecordSet"]["SetIdentifier"] for b in new} == {"primary", "secondary"}
    assert "routing-controls" in failover.stderr if control == "arc" else "dns" in failover.stderr

    world.ok("failback")
    assert world.topology()["primary"] == SRC
    assert world.answers(SRC, DST) == {"all": {SRC}, f"{SRC} down": {DST}, f"{DST} down": {SRC}}

    world.engine.calls.clear()
    world.ok("destroy", "--region", DST, "--yes")
    assert world.answers(SRC)["all"] == {SRC}
    # the record's TTL passed after DNS changed and before the region stack (and its domain
    # configuration) was destroyed
    [(seconds, before)] = world.drained
    assert seconds == 60.0 and ("up", "dev-dns") in before and ("destroy", f"dev-region-{DST}") not in before
    assert ("destroy", f"dev-region-{DST}") in world.engine.ops()


@pytest.mark.parametrize("control", ["dns", "arc"])
def test_calls_per_region_and_service_of_each_transition(request: pytest.FixtureRequest, control: str) -> None:
    """The table of docs/architecture.md ("Failover calls per region and service"): printed with
    `pytest tests/ops/test_ops_failover_modes.py -k calls_per_region -s`; its headline rules asserted."""
    world = _world(request, control)
    table: dict[str, dict[str, int]] = {}

    def measured(name: str, *args: str) -> dict[str, int]:
        world.gate.reset_counts()
        world.arc.calls.clear()
        if control == "arc":  # commands minutes apart: past the safety rule's wait period (back to
            _clock(world).advance(5.0)  # back: test_arc_back_to_back_transitions_wait_out_...)
        world.ok(*args)
        table[name] = _calls(world)
        return table[name]

    measured("promote-secondary (failover)", "promote-secondary", "--region", DST, "--routing", "failover")
    moved = [measured("failover", "failover", "--to", DST), measured("failback", "failback")]
    world.gate.down.add(SRC)
    world.arc.down.add(SRC)
    outage = measured(f"failover while {SRC} is down", "failover", "--to", DST)
    for line in [f"[{control}] {name}: " + ", ".join(f"{k} {n}" for k, n in calls.items())
                 for name, calls in table.items()]:
        print(line)
    assert not any(k.startswith(f"{SRC}/") for k in outage), outage
    route53 = [sum(n for k, n in calls.items() if k.endswith("/route53")) for calls in [*moved, outage]]
    arc_calls = [sum(n for k, n in calls.items() if k.endswith("/route53-recovery-cluster"))
                 for calls in [*moved, outage]]
    if control == "arc":
        # one write, then its read-back: refused in the write's 5 s wait period at 0, 0.25, 0.75,
        # 1.75 and 3.75 s, answered at 5 s (routing_controls.read_states)
        assert route53 == [0, 0, 0] and arc_calls == [7, 7, 7]
    else:
        assert all(n > 0 for n in route53) and arc_calls == [0, 0, 0]


@pytest.mark.parametrize("control", ["dns", "arc"])
def test_failover_during_a_primary_outage_makes_no_call_to_it(request: pytest.FixtureRequest, control: str) -> None:
    world = _world(request, control)
    world.ok("promote-secondary", "--region", DST, "--routing", "failover")
    world.gate.reset_counts()
    world.arc.calls.clear()
    world.gate.down.add(SRC)
    world.arc.down.add(SRC)  # the cluster endpoint in the failed region is out as well
    result = world.ok("failover", "--to", DST)
    assert f"skipped: {SRC} may be stale by" in result.output
    calls = _calls(world)
    assert not any(k.startswith(f"{SRC}/") for k in calls), calls
    # the probe was the one request signed for the failed region, refused at once (no retries)
    assert [(c.region, c.service) for c in world.gate.refused] == [(SRC, "iot")]
    assert world.arc.count(SRC) == 0 and not world.arc.refused
    if control == "arc":
        assert not any(k.endswith("/route53") for k in calls), calls
    assert world.answers(SRC, DST)[f"{SRC} down"] == {DST}
    assert world.answers(SRC, DST)["all"] == {DST}


def test_latency_mode_a_failed_promotion_stays_out_of_dns_and_failover_takes_others_out(dns_world: World) -> None:
    world = dns_world
    world.ok("promote-secondary", "--region", DST, "--routing", "latency")
    assert world.answers(SRC, DST)["all"] == {SRC, DST}

    # a third region whose promotion fails after its stack is up (at the replication step) ...
    world.engine.fail_on["dev-replication"] = "injected failure"
    failed = world.run("promote-secondary", "--region", THIRD, "--routing", "latency")
    assert failed.exit_code == 1
    del world.engine.fail_on["dev-replication"]
    # ... and a routine `up` does not put it into DNS
    world.ok("up", "--region", SRC)
    assert world.answers(SRC, DST, THIRD)["all"] == {SRC, DST}
    # finishing the promotion does
    world.ok("promote-secondary", "--region", THIRD, "--routing", "latency")
    assert world.answers(SRC, DST, THIRD)["all"] == {SRC, DST, THIRD}

    # failover in latency mode: the other regions' records go, in batches Route 53 accepts
    world.ok("failover", "--to", DST)
    assert world.answers(SRC, DST, THIRD) == {
        "all": {DST}, f"{SRC} down": {DST}, f"{DST} down": {DST}, f"{THIRD} down": {DST}}
    world.ok("up", "--region", SRC)  # a routine up keeps them out
    assert world.answers(SRC, DST, THIRD)["all"] == {DST}
    world.ok("failback")
    assert world.answers(SRC, DST, THIRD)["all"] == {SRC, DST, THIRD}

    # removing a region: its record goes first, then (after the TTL) its stack
    world.ok("destroy", "--region", THIRD, "--yes")
    assert world.answers(SRC, DST)["all"] == {SRC, DST}


def test_migrating_per_region_record_names_never_leaves_the_name_without_an_answer(dns_world: World) -> None:
    """A DNS stack deployed before records were named by role: its records were `-record-<region>`
    with the region as set identifier. The next update moves each in one [DELETE, CREATE] batch."""
    world = dns_world
    world.ok("promote-secondary", "--region", DST, "--routing", "failover")
    state = world.sim.applied["dev-dns"]
    zone = world.sim.zone_id.split("/")[-1]
    # rewrite AWS and the stack state to the earlier layout
    for role, region in (("primary", SRC), ("secondary", DST)):
        entry = state.pop(f"iot-dev-dns-record-{role}")
        old = {**entry.inputs, "setIdentifier": region}
        world.sim.mirror.change(zone, [("DELETE", record_set(entry.inputs)), ("CREATE", record_set(old))])
        state[f"iot-dev-dns-record-{region}"] = replace(entry, inputs=old)
    assert {r.get("SetIdentifier") for r in world.gate.records(world.zone) if r["Type"] == "CNAME"} == {SRC, DST}

    answers: list[frozenset[str]] = []
    original = world.sim.mirror.change

    def watched(zone_id: str, changes: list[tuple[str, dict[str, Any]]]) -> None:
        original(zone_id, changes)
        answers.append(world.gate.answers(world.zone, NAME))

    world.sim.mirror.change = watched  # type: ignore[method-assign]
    world.ok("up", "--region", SRC)
    assert answers and all(a == {SRC} for a in answers), answers
    assert {r.get("SetIdentifier") for r in world.gate.records(world.zone) if r["Type"] == "CNAME"} == {
        "primary", "secondary"}


def test_status_warns_about_what_failover_would_need_from_the_primary_region() -> None:
    from orchestrator.operations.status import resilience_warnings
    from orchestrator.topology import parse

    topology = parse({"domain": "iot.example.com", "hosted_zone": "example.com", "primary": SRC,
                      "residency": [SRC, DST], "backup_region": SRC}, env="dev")
    warnings = resilience_warnings(topology, f"s3://state-bucket?region={SRC}",
                                   f"awskms://alias/pulumi?region={SRC}", None)
    assert len(warnings) == 3
    assert "state backend" in warnings[0] and "KMS key" in warnings[1] and "backup vault" in warnings[2]
    elsewhere = parse({"domain": "iot.example.com", "hosted_zone": "example.com", "primary": SRC,
                       "residency": [SRC, DST], "backup_region": DST}, env="dev")
    assert resilience_warnings(elsewhere, f"s3://state-bucket?region={DST}",
                               f"awskms:///arn:aws:kms:{DST}:123456789012:key/abc", None) == []


def test_status_locates_buckets_and_kms_aliases_that_do_not_name_their_region(
        ctx: Any, s3: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`s3://bucket` lives where the bucket was made (GetBucketLocation), and an alias without
    `?region=` is resolved in the SDK's default region: both are seen, not only a region in the URL."""
    from orchestrator.context import Context
    from orchestrator.operations.status import _bucket_locator, _default_region, resilience_warnings
    from orchestrator.topology import parse

    s3(SRC).create_bucket(Bucket="team-state", CreateBucketConfiguration={"LocationConstraint": SRC})
    s3("us-east-1").create_bucket(Bucket="team-vault")
    app = Context(env="dev", project_dir=tmp_path, config_path=tmp_path / "dev.topology.yaml",
                  backend_url="s3://team-state/iot", endpoint_url=ctx.endpoint_url)
    locate = _bucket_locator(app)
    assert (locate("team-state"), locate("team-vault"), locate("no-such-bucket")) == (SRC, "us-east-1", None)
    monkeypatch.setenv("AWS_DEFAULT_REGION", SRC)
    assert _default_region(app) == SRC
    topology = parse({"domain": "iot.example.com", "hosted_zone": "example.com", "primary": SRC,
                      "residency": [SRC, DST], "backup_region": DST}, env="dev")
    warnings = resilience_warnings(topology, "s3://team-state/iot", "awskms://alias/pulumi", "s3://team-state/b",
                                   bucket_region=locate, default_region=SRC)
    assert [w.split(" is in ")[0].split(" (")[0] for w in warnings] == [
        "the state backend", "the KMS key for secrets", "the backup vault"]
    # an unlocatable bucket and a key whose region the URL names elsewhere raise no warning
    assert resilience_warnings(topology, "s3://no-such-bucket", f"awskms://alias/pulumi?region={DST}", None,
                               bucket_region=locate, default_region=SRC) == []


def test_arc_latency_failover_turns_the_others_off_and_failback_turns_them_on(request: pytest.FixtureRequest) -> None:
    world = _world(request, "arc")
    world.ok("promote-secondary", "--region", DST, "--routing", "latency")
    assert world.answers(SRC, DST) == {"all": {SRC, DST}, f"{SRC} down": {DST}, f"{DST} down": {SRC}}
    batches = len(world.gate.accepted_batches)
    world.ok("failover", "--to", DST)
    assert world.answers(SRC, DST)["all"] == {DST}
    assert len(world.gate.accepted_batches) == batches  # no record changed
    world.ok("up", "--region", DST)  # a routine up neither changes records nor the controls
    assert world.answers(SRC, DST)["all"] == {DST}
    world.ok("failback")
    assert world.answers(SRC, DST)["all"] == {SRC, DST}
    assert set(world.arc.states().values()) == {"On"}


def test_in_arc_mode_the_routing_controls_outrank_a_stale_topology(request: pytest.FixtureRequest) -> None:
    """Who is primary (docs/architecture.md): in `arc` mode the routing controls are live state too.
    With no lifecycle record to compare (removed here), a file whose primary's control is Off while
    another region's is On is still refused by `up` (exit 2), and nothing runs."""
    world = _world(request, "arc")
    world.ok("promote-secondary", "--region", DST, "--routing", "failover")
    path = world.project / "stacks" / "dev.topology.yaml"
    before = path.read_text()
    world.ok("failover", "--to", DST)
    assert world.arc.states() and sorted(world.arc.states().values()) == ["Off", "On"]
    (world.project / ".pulumi-state" / ".orchestrate" / "lifecycle" / "dev.json").unlink()
    path.write_text(before)  # the pre-failover file: primary SRC, whose control is Off now
    world.engine.calls.clear()
    stale = world.run("up", "--all")
    assert stale.exit_code == 2, stale.output
    assert "disagrees with the ARC routing controls" in stale.stderr, stale.stderr
    assert f"send traffic to {DST}" in stale.stderr and f"the file's primary is {SRC}" in stale.stderr
    assert world.engine.ops("up") == []


def test_arc_back_to_back_transitions_wait_out_the_safety_rule_wait_period(request: pytest.FixtureRequest) -> None:
    """promote -> failover -> failback with no time between them: ARC refuses requests against the
    controls for the program's 5000 ms wait period after each move (ConflictException), reads
    included; each command waits it out before it reports (its read-back), so the next one's move is
    accepted at once. None reports a safety-rule refusal, each says how long it waited, and the
    traffic moves."""
    world = _world(request, "arc")
    clock = _clock(world)
    world.ok("promote-secondary", "--region", DST, "--routing", "failover")
    for args, primary in ((("failover", "--to", DST), DST), (("failback",), SRC)):
        world.arc.conflicts.clear()
        clock.pauses.clear()
        result = world.ok(*args)
        assert world.topology()["primary"] == primary
        assert world.answers(SRC, DST)["all"] == {primary}
        assert world.arc.conflicts and {c.why for c in world.arc.conflicts} == {"wait-period"}
        # simulated time, not wall-clock: it paused until the wait period had passed, and no longer
        # than its budget (the read-back's pauses double up to the end of the period)
        assert 5.0 <= sum(clock.pauses) <= 15.0 and max(clock.pauses) <= 2.0
        assert f"waited {sum(clock.pauses):.1f} s for the safety rule's wait period" in result.output
        assert "safety rule keeps" not in result.output
