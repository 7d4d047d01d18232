"""Registry objects that belong to one region's infrastructure, not to the fleet.

Each region stack creates its own MQTT canary (programs/canary.py, `contract.CanaryNames`): a thing
`iot-<env>-canary-<region>`, an IoT policy of the same name, and a certificate attached to both.
They are per region by design (the canary of eu-west-1 tests eu-west-1's MQTT and connects as its
own client id); the stack owns them. A registry sync, backup, restore or comparison must therefore
neither copy them to another region, nor delete or tighten them in the destination, nor count them
as a difference between regions.

`without_regional` takes them out of a listing (`snapshot.read_listing`, which every registry read
starts from), so nothing downstream sees them:
- things and policies whose name is a canary name (`iot-<env>-canary-<aws region>`, any env);
- certificates whose every attached policy is a canary policy (the canary certificate has exactly
  one), with their policy attachments. A certificate that also carries a fleet policy stays fleet.
Relations of a thing left out (its principals, shadows) are never read: they are read per listed
thing. What was left out is said once in the snapshot's notes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from orchestrator.registry.snapshot import RegistrySnapshot, TargetKind

_CANARY = re.compile(r"^iot-[A-Za-z0-9][A-Za-z0-9_-]*-canary-[a-z]{2}(?:-[a-z]+)+-\d+$")


def is_canary(name: str) -> bool:
    """A canary thing or policy name as `contract.CanaryNames` makes it."""
    return bool(_CANARY.match(name))


def canary_note(things: Iterable[str], policies: Iterable[str], certificates: int) -> str:
    """The note a listing carries when it left the region's canary out (`without_regional`, and
    `read_listing`'s spilled and packed listings, which leave it out as they are built)."""
    names = sorted({*things, *policies})
    return (f"per-region infrastructure left alone (the stack's MQTT canary, not fleet): {', '.join(names)}"
            + (f" and {certificates} certificate(s) attached only to canary policies" if certificates else ""))


def without_regional(snapshot: RegistrySnapshot) -> RegistrySnapshot:
    things = tuple(t for t in snapshot.things if not is_canary(t.name))
    policies = tuple(p for p in snapshot.policies if not is_canary(p.name))
    # certificates a canary policy is attached to, less those a fleet policy is attached to too:
    # no map of every certificate to its policies (≈ 180 B per thing at a listing's peak; issue 22)
    canary = {name: is_canary(name) for name in {t.policy for t in snapshot.policy_targets}}
    certs = {t.target for t in snapshot.policy_targets if t.kind is TargetKind.CERTIFICATE and canary[t.policy]}
    if certs:
        certs -= {t.target for t in snapshot.policy_targets
                  if t.kind is TargetKind.CERTIFICATE and not canary[t.policy] and t.target in certs}
    left = (len(snapshot.things) - len(things)) + (len(snapshot.policies) - len(policies)) + len(certs)
    if not left:
        return snapshot
    note = canary_note([t.name for t in snapshot.things if is_canary(t.name)],
                       [p.name for p in snapshot.policies if is_canary(p.name)], len(certs))
    return replace(
        snapshot, things=things, policies=policies,
        certificates=tuple(c for c in snapshot.certificates if c.id not in certs),
        thing_principals=tuple(p for p in snapshot.thing_principals
                               if not is_canary(p.thing) and p.certificate_id not in certs),
        policy_targets=tuple(t for t in snapshot.policy_targets
                             if not is_canary(t.policy) and not (t.kind is TargetKind.CERTIFICATE
                                                                 and t.target in certs)),
        shadows=tuple(s for s in snapshot.shadows if not is_canary(s.thing)),
        notes=tuple(sorted({*snapshot.notes, note})))
