"""`orchestrate drill --env E`: the game day against a real account, with canary devices only.

What it does (after a confirmation naming the environment; `--yes` for automation):
1. plan: N canary things `orchestrate-drill-<run>-NNNN` with self-signed certificates (registered
   without a CA) and one policy, in the primary; every name carries the run id;
2. create them in the primary, writing each created resource to a ledger first
   (`.orchestrate/drills/<env>-<run>/ledger.json`), then sync the registry to the failover target
   through the orchestrator's registry sync (the canaries must exist there, as real devices must);
3. connect the canaries to the real custom domain (SNI, Amazon's root CAs from the system trust
   store) through the drill's device network, publish QoS 1 telemetry and keep shadows;
4. cut the canaries off the primary (the device network refuses the primary's addresses: only the
   canaries see an outage, production devices are not touched), run `failover` through the
   configured `failover_control`, measure the reconnection as the local drill does, then `failback`;
5. remove everything in the ledger, in IoT's teardown order (detach policy and thing principal,
   deactivate, delete certificate, delete thing and shadow, delete policy), in every region the sync
   copied it to; also after Ctrl-C, and a later run removes what an interrupted one left
   (`cleanup_leftovers`).
Built so far: steps 1, 2 and 5 (`provision`, `teardown`, `leftover_ledgers`), tested against moto.
Steps 3-4 are not built: `run` refuses (exit 2) before touching the account, naming what it would do.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.context import Context
from orchestrator.drill.model import DrillOptions, DrillResult
from orchestrator.errors import InputRejected, OperationFailed
from orchestrator.state import atomic_write_json, read_json

PREFIX = "orchestrate-drill-"


@dataclass(frozen=True)
class CanaryPlan:
    run_id: str
    env: str
    primary: str
    target: str
    things: tuple[str, ...]

    @property
    def policy(self) -> str:
        return f"{PREFIX}{self.run_id}-policy"

    def describe(self) -> str:
        return (f"env {self.env}: create {len(self.things)} canary things ({self.things[0]} …) in {self.primary}, "
                f"sync them to {self.target}, cut the canaries off {self.primary}, fail over to {self.target} "
                f"(production DNS moves), fail back, and remove the canaries")


def plan_canaries(app: Context, devices: int, run_id: str | None = None) -> CanaryPlan:
    topology = app.topology()
    if not topology.secondaries or topology.routing.value == "single":
        raise InputRejected(f"env {topology.env} has no secondary region to fail over to",
                            hint="promote one first: orchestrate promote-secondary --region R")
    rid = run_id or secrets.token_hex(4)
    return CanaryPlan(rid, topology.env, topology.primary, topology.secondaries[0],
                      tuple(f"{PREFIX}{rid}-{i:04d}" for i in range(devices)))


class Ledger:
    """Every resource a drill created, written before the next is created (clean-up reads it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, str]] = []
        if path.exists():
            data = read_json(path)
            self.entries = list(data.get("created", [])) if isinstance(data, dict) else []

    def add(self, **entry: str) -> None:
        self.entries.append(entry)
        atomic_write_json(self.path, {"created": self.entries})

    def clear(self) -> None:
        self.entries = []
        atomic_write_json(self.path, {"created": [], "cleaned": time.time()})


def create_canaries(iot: Any, plan: CanaryPlan, cert_pems: dict[str, str], ledger: Ledger) -> None:
    from orchestrator.drill.local import _policy_document

    ledger.add(kind="policy", name=plan.policy, region=plan.primary)
    iot.create_policy(policyName=plan.policy, policyDocument=_policy_document())
    for thing in plan.things:
        ledger.add(kind="thing", name=thing, region=plan.primary)
        iot.create_thing(thingName=thing, attributePayload={"attributes": {"drill": plan.run_id}})
        cert = iot.register_certificate_without_ca(certificatePem=cert_pems[thing], status="ACTIVE")
        ledger.add(kind="certificate", name=cert["certificateId"], arn=cert["certificateArn"], thing=thing,
                   region=plan.primary)
        iot.attach_policy(policyName=plan.policy, target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])


def cleanup(clients: Callable[[str, str], Any], regions: list[str], ledger: Ledger) -> list[str]:
    """Remove what the ledger lists, from every region (the sync copied it); returns what failed."""
    failed: list[str] = []
    policies = [e["name"] for e in ledger.entries if e["kind"] == "policy"]
    certs = [e for e in ledger.entries if e["kind"] == "certificate"]
    things = [e["name"] for e in ledger.entries if e["kind"] == "thing"]
    for region in regions:
        iot, data = clients("iot", region), clients("iot-data", region)
        calls: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
        for c in certs:
            arn = c["arn"].replace(f":{c['region']}:", f":{region}:")
            calls += [(f"detach {p}", iot.detach_policy, {"policyName": p, "target": arn}) for p in policies]
            calls += [(f"detach {c['thing']}", iot.detach_thing_principal, {"thingName": c["thing"], "principal": arn}),
                      (f"deactivate {c['name']}", iot.update_certificate,
                       {"certificateId": c["name"], "newStatus": "INACTIVE"}),
                      (f"delete {c['name']}", iot.delete_certificate, {"certificateId": c["name"]})]
        for t in things:
            calls += [(f"shadow of {t}", _delete_shadow, {"data": data, "thing": t}),
                      (f"delete {t}", iot.delete_thing, {"thingName": t})]
        calls += [(f"delete {p}", iot.delete_policy, {"policyName": p}) for p in policies]
        for what, call, kwargs in calls:
            try:
                call(**kwargs)
            except iot.exceptions.ResourceNotFoundException:
                pass
            except Exception as exc:  # noqa: BLE001 - keep removing the rest; report what is left
                failed.append(f"{what} in {region}: {type(exc).__name__}")
    if not failed:
        ledger.clear()
    return failed


def _delete_shadow(data: Any, thing: str) -> None:
    try:
        data.delete_thing_shadow(thingName=thing)
    except data.exceptions.ResourceNotFoundException:
        pass


def leftover_ledgers(app: Context) -> list[Path]:
    """Ledgers of earlier drills of this env that still list resources (an interrupted run)."""
    root = app.state.root / "drills"
    found = []
    for path in sorted(root.glob(f"{app.env}-*/ledger.json")) if root.exists() else []:
        try:
            data = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("created"):
            found.append(path)
    return found


class AccountDrill:
    def __init__(self, app: Context, opts: DrillOptions, directory: Path,
                 confirm: Callable[[str, str], None]) -> None:
        self.app, self.opts, self.directory, self.confirm = app, opts, directory, confirm

    def _clients(self) -> Callable[[str, str], Any]:
        from orchestrator.aws import client

        ctx = self.app.aws()
        made: dict[tuple[str, str], Any] = {}

        def get(service: str, region: str) -> Any:
            if (service, region) not in made:
                made[(service, region)] = client(ctx, service, region)
            return made[(service, region)]

        return get

    def run(self) -> DrillResult:
        plan = plan_canaries(self.app, self.opts.devices)  # exit 2 when there is nothing to fail over to
        # The device phase (steps 3-4) is not built: refuse before touching the account rather than
        # create canaries and move production DNS without measuring anything.
        raise InputRejected(
            f"the real-account drill is not available yet (would: {plan.describe()})",
            hint="run the measured game day locally with `orchestrate drill --local`; see docs/runbooks/game-day.md")

    def provision(self, plan: CanaryPlan) -> Ledger:
        """Steps 1-2: canaries created in the primary (ledger first) and synced to the target."""
        from orchestrator.drill.world import pki
        from orchestrator.operations.registry_port import RegistryPort

        clients = self._clients()
        regions = [plan.primary, plan.target]
        for stale in leftover_ledgers(self.app):  # an interrupted drill's canaries go first
            failed = cleanup(clients, regions, Ledger(stale))
            if failed:
                raise OperationFailed(f"canaries of an earlier drill are still there ({stale}): {failed[0]}",
                                      hint="remove them, then re-run")
        ledger = Ledger(self.directory / "ledger.json")
        keys = {t: pki.device_certificate(t) for t in plan.things}
        create_canaries(clients("iot", plan.primary), plan, {t: k.cert_pem for t, k in keys.items()}, ledger)
        port = RegistryPort(self.app.aws(), self.app.env, self.app.state, self.app.topology().residency)
        port.sync(plan.primary, plan.target)
        return ledger

    def teardown(self, plan: CanaryPlan, ledger: Ledger) -> list[str]:
        """Step 5: everything in the ledger removed from both regions (also on Ctrl-C: call it in `finally`)."""
        failed = cleanup(self._clients(), [plan.primary, plan.target], ledger)
        if failed:
            self.app.notify(f"clean-up left {len(failed)} resources ({failed[0]} …): listed in {ledger.path}; "
                            "the next drill removes them first")
        return failed


def ledger_summary(path: Path) -> str:
    return json.dumps(read_json(path))
