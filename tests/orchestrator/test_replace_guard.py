"""`up` refuses, before any change, to replace or delete a stateful resource of a live region
(issue 21): a new server certificate forces a new IoT domain configuration, which drops every
device connected to the custom domain in that region. Exit 4 (a safety guard), one line naming the
resource and the property forcing it; `--allow-replace URN` lets one through, itself confirmed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.errors import GuardRefused, InputRejected
from orchestrator.operations.replace_guard import check_up
from orchestrator.preview.model import Op, ResourceChange, StackPreview
from orchestrator.stacks.graph import up_selection
from orchestrator.stacks.wiring import StackSpec
from orchestrator.topology import load
from tests.orchestrator.conftest import multi_region

DOMAIN_TYPE = "aws:iot/domainConfiguration:DomainConfiguration"


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::iot-platform::iotplatform:region:IotRegion${type_}::{name}"


def domain_change(stack: str, region: str, op: Op = Op.REPLACE,
                  keys: tuple[str, ...] = ("serverCertificateArns",)) -> ResourceChange:
    name = f"iot-dev-{region}-domain"
    return ResourceChange(urn(stack, DOMAIN_TYPE, name), DOMAIN_TYPE, name, op, diffs=keys, stateful=True,
                          replace_keys=keys if op is Op.REPLACE else ())


def previews(engine, changes: dict[str, tuple[ResourceChange, ...]]) -> None:  # noqa: ANN001
    """Every stack previews as unchanged except those named in `changes`."""

    def factory(spec: StackSpec) -> StackPreview:
        found = changes.get(spec.name, ())
        return StackPreview(spec.name, spec.kind, spec.region, found, {Op.SAME: 10, **{c.op: 1 for c in found}})

    engine.previews["*"] = factory


@pytest.fixture
def deployed(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--region", "eu-west-1").exit_code == 0  # nothing deployed yet: no preview
    engine.calls.clear()


def test_replacing_the_live_domain_configuration_is_refused_before_any_change(run, engine, deployed) -> None:  # noqa: ANN001
    change = domain_change("dev-region-eu-west-1", "eu-west-1")
    previews(engine, {"dev-region-eu-west-1": (change,)})
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 4, result.output
    assert engine.ops("up") == []
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: dev-region-eu-west-1: up would replace DomainConfiguration "
                            "iot-dev-eu-west-1-domain in eu-west-1 (forced by serverCertificateArns), "
                            "which receives DNS traffic"), error
    assert "iot.example.com" in error and f"--allow-replace '{change.urn}'" in error


@pytest.mark.parametrize("type_, op", [
    ("aws:kinesis/stream:Stream", Op.DELETE),
    ("aws:iot/certificate:Certificate", Op.REPLACE),
    ("aws:s3/bucket:Bucket", Op.REPLACE),
])
def test_other_stateful_types_are_refused_too(run, engine, deployed, type_: str, op: Op) -> None:  # noqa: ANN001
    stack = "dev-region-eu-west-1"
    change = ResourceChange(urn(stack, type_, "thing-x"), type_, "thing-x", op, stateful=True,
                            replace_keys=("name",) if op is Op.REPLACE else ())
    previews(engine, {stack: (change,)})
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 4 and engine.ops("up") == [], result.output
    assert f"up would {op.value} {type_.rsplit(':', 1)[-1]} thing-x" in result.stderr


def test_in_place_updates_and_stateless_replaces_go_ahead(run, engine, deployed) -> None:  # noqa: ANN001
    stack = "dev-region-eu-west-1"
    tls = domain_change(stack, "eu-west-1", Op.UPDATE, ("tlsConfig",))
    rule_type = "aws:iot/topicRule:TopicRule"
    rule = ResourceChange(urn(stack, rule_type, "rule"), rule_type, "rule", Op.REPLACE, replace_keys=("name",))
    previews(engine, {stack: (tls, rule)})
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    assert engine.ops("up") == [("up", "dev-region-eu-west-1"), ("up", "dev-dns")]


def test_allow_replace_names_the_urn_and_is_confirmed(run, engine, deployed, monkeypatch) -> None:  # noqa: ANN001
    change = domain_change("dev-region-eu-west-1", "eu-west-1")
    previews(engine, {"dev-region-eu-west-1": (change,)})
    # without a terminal and without --yes the override itself is refused
    result = run("up", "--region", "eu-west-1", "--allow-replace", change.urn)
    assert result.exit_code == 4 and engine.ops("up") == [], result.output
    assert "really replace iot-dev-eu-west-1-domain in eu-west-1" in result.stderr
    # on a terminal: a wrong answer to the override's question touches nothing ...
    monkeypatch.setattr("orchestrator.cli.options._interactive", lambda: True)
    result = run("up", "--region", "eu-west-1", "--allow-replace", change.urn, input="dev\n")
    assert result.exit_code == 4 and engine.ops("up") == [], result.output
    assert "Type 'replace iot-dev-eu-west-1-domain' to confirm" in result.stderr
    # ... the typed resource, then the environment, lets it run
    result = run("up", "--region", "eu-west-1", "--allow-replace", change.urn,
                 input="replace iot-dev-eu-west-1-domain\ndev\n")
    assert result.exit_code == 0, result.output
    assert engine.ops("up") == [("up", "dev-region-eu-west-1"), ("up", "dev-dns")]
    assert result.stderr.index("really replace") < result.stderr.index("Type 'dev' to confirm")


def test_allow_replace_with_yes_in_automation(run, engine, deployed) -> None:  # noqa: ANN001
    change = domain_change("dev-region-eu-west-1", "eu-west-1")
    previews(engine, {"dev-region-eu-west-1": (change,)})
    result = run("up", "--yes", "--region", "eu-west-1", "--allow-replace", change.urn)
    assert result.exit_code == 0, result.output
    assert "allowed by --allow-replace: dev-region-eu-west-1: up would replace" in result.stderr


def test_allow_replace_of_something_not_refused_is_bad_input(run, engine, deployed) -> None:  # noqa: ANN001
    change = domain_change("dev-region-eu-west-1", "eu-west-1")
    previews(engine, {"dev-region-eu-west-1": (change,)})
    result = run("up", "--yes", "--region", "eu-west-1", "--allow-replace", change.urn + "-typo")
    assert result.exit_code == 2 and engine.ops("up") == [], result.output
    assert f"--allow-replace {change.urn}-typo: up would not replace or delete" in result.stderr


def test_two_refused_changes_need_both_urns(run, engine, deployed) -> None:  # noqa: ANN001
    stack = "dev-region-eu-west-1"
    domain = domain_change(stack, "eu-west-1")
    stream_type = "aws:kinesis/stream:Stream"
    stream = ResourceChange(urn(stack, stream_type, "telemetry"), stream_type, "telemetry", Op.REPLACE,
                            stateful=True, replace_keys=("name",))
    previews(engine, {stack: (domain, stream)})
    result = run("up", "--yes", "--region", "eu-west-1", "--allow-replace", domain.urn)
    assert result.exit_code == 4 and engine.ops("up") == [], result.output
    assert "Stream telemetry" in result.stderr and f"--allow-replace '{stream.urn}'" in result.stderr
    both = run("up", "--yes", "--region", "eu-west-1", "--allow-replace", domain.urn, "--allow-replace", stream.urn)
    assert both.exit_code == 0, both.output


def test_the_dns_stack_refuses_a_record_replace_but_not_a_record_delete(run, engine, deployed) -> None:  # noqa: ANN001
    rtype = "aws:route53/record:Record"
    delete = ResourceChange(urn("dev-dns", rtype, "record-secondary"), rtype, "record-secondary", Op.DELETE,
                            stateful=True)
    previews(engine, {"dev-dns": (delete,)})
    assert run("up", "--yes", "--region", "eu-west-1").exit_code == 0  # a transition's step: not refused
    engine.calls.clear()
    replace = ResourceChange(urn("dev-dns", rtype, "record-primary"), rtype, "record-primary", Op.REPLACE,
                             stateful=True, replace_keys=("zoneId",))
    previews(engine, {"dev-dns": (replace,)})
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 4 and engine.ops("up") == [], result.output
    assert "dev-dns: up would replace Record record-primary (forced by zoneId), which serves every region " \
           "(eu-west-1 receives DNS traffic)" in result.stderr


def test_a_region_not_deployed_is_not_previewed_for_the_guard(run, engine) -> None:  # noqa: ANN001
    previews(engine, {"dev-region-eu-west-1": (domain_change("dev-region-eu-west-1", "eu-west-1"),)})
    assert run("up", "--yes", "--region", "eu-west-1").exit_code == 0
    assert engine.ops("preview") == []


def test_a_failed_preview_is_said_and_does_not_block(run, engine, deployed) -> None:  # noqa: ANN001
    result = run("up", "--yes", "--region", "eu-west-1")  # the in-memory engine has no preview configured
    assert result.exit_code == 0, result.output
    assert "dev-region-eu-west-1: not checked for replacements of stateful resources: its preview failed" \
        in result.stderr


# -- which regions are live: DNS traffic, things in the registry ------------------------------------
def _secondary_world(run, engine, project: Path, routed: list[str]) -> Callable[..., list]:  # noqa: ANN001
    """eu-west-1 primary and eu-central-1 secondary deployed; the DNS stack exports records for `routed`."""
    multi_region(project, "dev", ["eu-central-1"])
    engine.output_overrides["dev-dns"] = {"records": [{"region": r} for r in routed]}
    assert run("up", "--yes", "--all").exit_code == 0
    topology = load(project / "stacks" / "dev.topology.yaml", env="dev")
    change = domain_change("dev-region-eu-central-1", "eu-central-1")
    previews(engine, {"dev-region-eu-central-1": (change,)})

    def check(things: Callable[[str], bool | str], allow: tuple[str, ...] = ()) -> list:
        return check_up(engine, topology, up_selection(topology, "eu-central-1"), things=things, allow=allow,
                        confirm=lambda _q, _e: None)

    return check


def test_an_unrouted_secondary_without_things_may_be_replaced(run, engine, project) -> None:  # noqa: ANN001
    check = _secondary_world(run, engine, project, routed=["eu-west-1"])
    asked: list[str] = []
    assert check(lambda region: asked.append(region) or False) == []
    assert asked == ["eu-central-1"]


def test_an_unrouted_secondary_holding_things_is_live(run, engine, project) -> None:  # noqa: ANN001
    check = _secondary_world(run, engine, project, routed=["eu-west-1"])
    with pytest.raises(GuardRefused, match=r"in eu-central-1 \(forced by serverCertificateArns\), which holds things"):
        check(lambda region: True)
    with pytest.raises(GuardRefused, match=r"which may hold things \(its registry could not be read: boom\)"):
        check(lambda region: "boom")


def test_a_routed_secondary_is_live_without_asking_its_registry(run, engine, project) -> None:  # noqa: ANN001
    check = _secondary_world(run, engine, project, routed=["eu-west-1", "eu-central-1"])
    asked: list[str] = []
    with pytest.raises(GuardRefused, match="which receives DNS traffic"):
        check(lambda region: asked.append(region) or False)
    assert asked == []


def test_allowed_urns_are_returned_and_unknown_ones_rejected(run, engine, project) -> None:  # noqa: ANN001
    check = _secondary_world(run, engine, project, routed=["eu-west-1", "eu-central-1"])
    found = check(lambda region: False, allow=(domain_change("dev-region-eu-central-1", "eu-central-1").urn,))
    assert [r.change.name for r in found] == ["iot-dev-eu-central-1-domain"]
    with pytest.raises(InputRejected):
        check(lambda region: False, allow=("urn:nothing",))


def test_an_engine_that_cannot_preview_is_not_checked_and_says_so() -> None:
    """The drill's local engine has no preview: the guard says what it did not check and lets the
    up run (as for a failed preview), instead of an internal error."""
    from orchestrator.operations.replace_guard import check_up
    from orchestrator.stacks.graph import region_stack
    from orchestrator.topology import load
    from tests.orchestrator.conftest import REPO

    class NoPreview:
        def outputs(self, name: str) -> dict[str, str]:
            return {"iotEndpoint": "x"}

        def preview(self, spec: object) -> object:
            raise NotImplementedError("the local drill engine does not preview")

    topology = load(REPO / "stacks" / "dev.topology.yaml")
    said: list[str] = []
    found = check_up(NoPreview(), topology, [region_stack(topology, topology.primary)],  # type: ignore[arg-type]
                     things=lambda region: True, notify=said.append)
    assert found == []
    assert said and "not checked" in said[0] and "does not preview" in said[0]
