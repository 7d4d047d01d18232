"""`orchestrate drill --env E` against a real account: the parts that can run without one, on moto.

Canaries are planned from the topology, created in the primary with a ledger written before each
resource, synced to the failover target by the orchestrator's registry sync, and removed from both
regions by the ledger: after a normal end, after Ctrl-C (teardown in `finally`), and, for a run
killed before its teardown, by the next drill. The device phase is not built: `run` refuses (exit 2)
before touching the account.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import topology as topo
from orchestrator.console import Console
from orchestrator.context import Context
from orchestrator.drill.account import PREFIX, AccountDrill, Ledger, leftover_ledgers, plan_canaries
from orchestrator.drill.model import DrillOptions
from orchestrator.errors import InputRejected
from tests.ops.conftest import DST, SRC

REPO = Path(__file__).resolve().parents[2]


def _app(tmp_path: Path, endpoint: str, *, promoted: bool = True) -> Context:
    (tmp_path / "stacks").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    config = tmp_path / "stacks" / "dev.topology.yaml"
    source = topo.load(REPO / "stacks" / "dev.topology.yaml", env="dev")
    doc = source.to_document()
    if promoted:
        doc.update(secondaries=[DST], routing="failover")
    topo.save(topo.parse(doc, env="dev", source=config.name), config)
    return Context(env="dev", project_dir=tmp_path, config_path=config, backend_url="file://x",
                   endpoint_url=endpoint, console=Console(out=lambda _t: None, err=lambda _t: None))


def _canaries(iot: Callable[[str], Any], region: str) -> dict[str, int]:
    c = iot(region)
    things = [t["thingName"] for t in c.list_things()["things"] if t["thingName"].startswith(PREFIX)]
    policies = [p["policyName"] for p in c.list_policies()["policies"] if p["policyName"].startswith(PREFIX)]
    return {"things": len(things), "certificates": len(c.list_certificates()["certificates"]),
            "policies": len(policies)}


def test_canaries_are_created_synced_and_removed_everywhere(tmp_path: Path, endpoint: str,
                                                            iot: Callable[[str], Any]) -> None:
    app = _app(tmp_path, endpoint)
    plan = plan_canaries(app, 3, run_id="r1")
    assert plan.primary == SRC and plan.target == DST and plan.things[0] == f"{PREFIX}r1-0000"
    drill = AccountDrill(app, DrillOptions(devices=3), tmp_path / "run", lambda q, e: None)
    ledger = drill.provision(plan)
    for region in (SRC, DST):  # the sync copied things and certificate registrations
        assert _canaries(iot, region) == {"things": 3, "certificates": 3, "policies": 1}
    assert drill.teardown(plan, ledger) == []
    for region in (SRC, DST):
        assert _canaries(iot, region) == {"things": 0, "certificates": 0, "policies": 0}
    assert Ledger(ledger.path).entries == [] and leftover_ledgers(app) == []


def test_ctrl_c_after_provisioning_still_removes_the_canaries(tmp_path: Path, endpoint: str,
                                                              iot: Callable[[str], Any]) -> None:
    app = _app(tmp_path, endpoint)
    plan = plan_canaries(app, 2, run_id="r2")
    drill = AccountDrill(app, DrillOptions(devices=2), tmp_path / "run", lambda q, e: None)
    ledger: Ledger | None = None
    with pytest.raises(KeyboardInterrupt):
        try:
            ledger = drill.provision(plan)
            raise KeyboardInterrupt
        finally:
            if ledger is not None:
                drill.teardown(plan, ledger)
    for region in (SRC, DST):
        assert _canaries(iot, region)["things"] == 0


def test_a_killed_run_is_cleaned_up_by_the_next(tmp_path: Path, endpoint: str, iot: Callable[[str], Any]) -> None:
    app = _app(tmp_path, endpoint)
    first = plan_canaries(app, 2, run_id="dead")
    AccountDrill(app, DrillOptions(devices=2), app.state.drill_dir("dev", "dead"), lambda q, e: None).provision(first)
    assert _canaries(iot, SRC)["things"] == 2 and len(leftover_ledgers(app)) == 1  # no teardown: killed
    second = plan_canaries(app, 1, run_id="next")
    drill = AccountDrill(app, DrillOptions(devices=1), app.state.drill_dir("dev", "next"), lambda q, e: None)
    ledger = drill.provision(second)
    assert _canaries(iot, SRC)["things"] == 1 and _canaries(iot, DST)["things"] == 1  # only the new run's
    drill.teardown(second, ledger)
    assert leftover_ledgers(app) == []


def test_run_refuses_before_touching_the_account(tmp_path: Path, endpoint: str, iot: Callable[[str], Any]) -> None:
    app = _app(tmp_path, endpoint)
    with pytest.raises(InputRejected, match="not available yet"):
        AccountDrill(app, DrillOptions(devices=2), tmp_path / "run", lambda q, e: None).run()
    assert _canaries(iot, SRC) == {"things": 0, "certificates": 0, "policies": 0}
    single = _app(tmp_path / "single", endpoint, promoted=False)
    with pytest.raises(InputRejected, match="no secondary region"):
        plan_canaries(single, 2)
