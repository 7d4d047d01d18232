"""The last verification of each region pair, kept in the run state backend.

`registry verify` (a full comparison) and `registry sync` (the read-back of what it carried) each
record their outcome in `sync/<env>-<from>-<to>.verified.json` (`StateLayout.sync_verified_path`);
`status` shows the newest per secondary. A failed verification also tells the next sync of the
pair not to trust its version record (it reads every thing's principals again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.state import StateLayout

RECORD_FORMAT = 1


@dataclass(frozen=True)
class LastVerification:
    """What `status` shows per secondary."""

    src_region: str
    dst_region: str
    source: str  # "registry verify" | "registry sync"
    ok: bool
    differences: int
    at: float  # epoch seconds
    by_kind: dict[str, int]

    @classmethod
    def from_json(cls, data: Any) -> LastVerification | None:
        try:
            if data.get("format") != RECORD_FORMAT:
                return None
            return cls(str(data["from"]), str(data["to"]), str(data["source"]), bool(data["ok"]),
                       int(data["differences"]), float(data["at"]),
                       {str(k): int(v) for k, v in (data.get("by_kind") or {}).items()})
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "from": self.src_region, "to": self.dst_region, "source": self.source,
                "ok": self.ok, "differences": self.differences, "at": self.at,
                "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
                "by_kind": dict(self.by_kind)}

    def line(self, now: float | None = None) -> str:
        age_h = max(0.0, ((now or time.time()) - self.at) / 3600)
        state = "parity" if self.ok else f"DIFFERENT ({self.differences} differences)"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return f"  {self.src_region} -> {self.dst_region}: {state} by {self.source}, {stamp} ({age_h:.1f} h ago)"


def record_verification(state: StateLayout, env: str, src: str, dst: str, *, source: str, ok: bool,
                        differences: int, by_kind: dict[str, int], at: float | None = None) -> LastVerification:
    """Store the outcome of a verification of `src` -> `dst` (the newest replaces the one before)."""
    record = LastVerification(src, dst, source, ok, differences, time.time() if at is None else at,
                              {k: n for k, n in by_kind.items() if n})
    path = state.sync_verified_path(env, src, dst)
    state.pull(path)
    state.save(path, record.to_json())
    return record


def last_verification(state: StateLayout, env: str, src: str, dst: str) -> LastVerification | None:
    """The stored last verification of the pair (read from the backend, not the cache), or None."""
    import json

    path = state.sync_verified_path(env, src, dst)
    found = state.store.get(state.key(path))
    if found is None:
        return None
    try:
        return LastVerification.from_json(json.loads(found.data))
    except ValueError:
        return None


__all__ = ["LastVerification", "last_verification", "record_verification"]
