"""Device shadows (classic and named) across regions: make a destination shadow hold a source state.

Minimal apply used by continuous replication (`orchestrator.registry.replicate`); the device-state
issue owns shadow sync at fleet scale and is expected to grow this module (listing, quotas).

`shadow_delta(source, current)` is pure: the `state` document whose update makes the destination's
`desired` and `reported` equal the source's (keys the source lacks are set to null, which the Device
Shadow service deletes), or None when they already are equal: a write that would change nothing
is never sent. `apply_shadow` reads the destination shadow, computes the delta and writes it with a
client token, which the replication topic rules filter out, so a replica write never travels on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestrator.registry.calls import Caller, error_code

SECTIONS = ("desired", "reported")


def _delta(source: Any, current: Any) -> Any:
    """What to send so that `current` becomes `source`; `_SAME` when nothing."""
    if isinstance(source, Mapping) and isinstance(current, Mapping):
        out: dict[str, Any] = {}
        for key, value in source.items():
            d = _delta(value, current.get(key, _MISSING))
            if d is not _SAME:
                out[key] = d
        for key in current:
            if key not in source:
                out[key] = None
        return out if out else _SAME
    if current is _MISSING or source != current:
        return source
    return _SAME


_SAME = object()
_MISSING = object()


def shadow_delta(source: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The `state` update that turns `current` into `source` (desired and reported), or None."""
    source = source or {}
    current = current or {}
    state: dict[str, Any] = {}
    for section in SECTIONS:
        src, dst = source.get(section), current.get(section)
        if src is None and dst is None:
            continue
        # a section the source lacks goes key by key (null deletes a key: the Device Shadow
        # service's documented way, and one moto implements too)
        d = _delta(src if isinstance(src, Mapping) else {}, dst if isinstance(dst, Mapping) else {})
        if d is not _SAME:
            state[section] = d
    return state or None


def read_shadow(caller: Caller, thing: str, shadow: str) -> dict[str, Any] | None:
    """The destination's shadow document (`state`, `version`, ...), or None when there is none."""
    kwargs: dict[str, Any] = {"thingName": thing}
    if shadow:
        kwargs["shadowName"] = shadow
    try:
        response = caller.call("get_thing_shadow", **kwargs)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    payload = response["payload"]
    raw = payload.read() if hasattr(payload, "read") else payload
    document = json.loads(raw or b"{}")
    return document if isinstance(document, dict) else None


def apply_shadow(caller: Caller, thing: str, shadow: str, state: Mapping[str, Any], client_token: str) -> bool:
    """Make the destination shadow's desired/reported equal `state`; True when a write was sent."""
    current = read_shadow(caller, thing, shadow)
    delta = shadow_delta(state, (current or {}).get("state"))
    if delta is None:
        return False
    kwargs: dict[str, Any] = {"thingName": thing,
                              "payload": json.dumps({"state": delta, "clientToken": client_token}).encode()}
    if shadow:
        kwargs["shadowName"] = shadow
    caller.call("update_thing_shadow", **kwargs)
    return True
