"""Guards on what a registry sync may delete: nothing goes at scale on a short or empty listing.

`registry sync --prune` deletes from the destination what the source no longer lists. A source
listing that is short for any reason (an empty page, a page that lost its continuation token, a
region that is not the one meant) would otherwise wipe the destination. Before any deletion:

1. the source listing must be provably complete (`RegistrySnapshot.gaps` is empty: no full page
   came back without a continuation token);
2. no source count may have dropped sharply since the last complete listing on record
   (`.orchestrate/sync/<env>-<from>-<to>.listings.json`): below half of a count of at least MIN_TRACKED;
3. the deletions must fit the budget (`--max-delete N` or `--max-delete P%` of the destination's
   objects; DEFAULT_BUDGET otherwise);
4. the plan's deletions are shown and confirmed (a typed region on a terminal, `--yes` in
   automation; without either, exit 4).

Only deletions of what the source no longer has are guarded (things, certificates, policies,
groups, types, and the relations that go with them). Tightening of what the source still has (a
policy or certificate detached, a thing taken out of a group, a policy version deleted, a
certificate deactivated or revoked) is carried by every sync and never asks: see docs/registry.md.

A refusal is `GuardRefused` (exit 4) and nothing has been written. A complete listing is recorded
(the high-water mark for rule 2) only when no deletion was refused; a source that really shrank is
recorded by a sync without `--prune` first, then pruned: a deliberate, two-step override.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import GuardRefused, InputRejected

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.registry.snapshot import RegistrySnapshot
    from orchestrator.registry.sync.model import SyncPlan

DEFAULT_BUDGET = "5%"
MIN_TRACKED = 10  # counts below this are too small for a "sharp drop" to mean anything
DROP_RATIO = 0.5
SHOWN = 20

_BUDGET_RE = re.compile(r"(\d{1,9})(%?)\Z")
# the objects a budget counts (relations go with them)
OBJECT_KINDS = ("thing_type", "thing_group", "policy", "certificate", "thing")
_TRACKED = ("thing_types", "thing_groups", "things", "policies", "certificates")

Confirm = Callable[[str, str], None]  # (question, what to type); raises GuardRefused when refused


@dataclass(frozen=True)
class DeleteBudget:
    """At most `count` deletions, or at most `percent` % of the destination's objects."""

    count: int | None = None
    percent: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> DeleteBudget:
        value = (text or DEFAULT_BUDGET).strip()
        m = _BUDGET_RE.fullmatch(value)
        if not m:
            raise InputRejected(f"--max-delete: {value[:40]!r} is not a number or a percentage (25 or 5%)")
        n = int(m.group(1))
        if m.group(2):
            if n > 100:
                raise InputRejected(f"--max-delete: {n}% is more than 100%")
            return cls(percent=n)
        return cls(count=n)

    def limit(self, destination_objects: int) -> int:
        if self.count is not None:
            return self.count
        return math.floor(destination_objects * (self.percent or 0) / 100)

    def __str__(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.percent}%"


def object_count(snapshot: RegistrySnapshot) -> int:
    c = snapshot.counts()
    return sum(c[k] for k in _TRACKED)


@dataclass(frozen=True)
class PruneGuard:
    """Checks a planned sync before anything is written (`check`), and records complete listings."""

    budget: DeleteBudget = DeleteBudget(percent=5)
    confirm: Confirm | None = None
    record_path: Path | None = None
    notify: Callable[[str], None] | None = None
    dry_run: bool = False  # `--dry-run --prune`: say what the rules would refuse; ask nothing, record nothing

    def check(self, src: RegistrySnapshot, dst: RegistrySnapshot, plan: SyncPlan) -> SyncPlan:
        """The plan, unchanged, when its deletions pass every rule; else GuardRefused (exit 4). In a
        dry run a refusal becomes a warning of the plan ("a real --prune run would refuse: …")."""
        from orchestrator.registry.sync.model import Action

        # tightening (a detach, a removal from a group, a deleted policy version) is always carried:
        # only deletions of what the source no longer has are guarded
        deletions = [op for op in plan.ops if op.action is Action.DELETE and not op.tightens]
        if deletions:
            try:
                self._rules(src, dst, deletions)
            except GuardRefused as exc:
                if not self.dry_run:
                    raise
                return replace(plan, warnings=(*plan.warnings, f"a real --prune run would refuse: {exc}"))
            if not self.dry_run:
                self._show_and_confirm(dst.region, deletions)
        if not src.gaps and not self.dry_run:
            self._record(src)
        return plan

    def _rules(self, src: RegistrySnapshot, dst: RegistrySnapshot, deletions: list[Any]) -> None:
        self._complete(src)
        self._no_sharp_drop(src)
        objects = [op for op in deletions if op.kind.value in OBJECT_KINDS]
        allowed = self.budget.limit(object_count(dst))
        if len(objects) > allowed:
            raise GuardRefused(
                f"prune would delete {len(objects)} objects from {dst.region} ({_by_kind(objects)}); "
                f"the deletion budget is {allowed} (--max-delete {self.budget}); nothing was deleted",
                hint="check the source region and its listing; raise --max-delete only if this is meant")

    # -- the rules -----------------------------------------------------------------------------
    @staticmethod
    def _complete(src: RegistrySnapshot) -> None:
        if src.gaps:
            raise GuardRefused(
                f"the listing of {src.region} is not provably complete ({'; '.join(src.gaps[:3])}): "
                "pruning deletes what the source does not list, so nothing was deleted",
                hint="re-run later; a sync without --prune copies safely meanwhile")

    def _no_sharp_drop(self, src: RegistrySnapshot) -> None:
        last = self._records().get(src.region)
        if not isinstance(last, dict):
            return
        now = src.counts()
        for kind in _TRACKED:
            before = last.get(kind)
            if isinstance(before, int) and before >= MIN_TRACKED and now[kind] < before * DROP_RATIO:
                raise GuardRefused(
                    f"{src.region} lists {now[kind]} {kind.replace('_', ' ')}, down from {before} at the last "
                    "complete listing: pruning on it could wipe the destination; nothing was deleted",
                    hint="if the source really shrank, run `registry sync` without --prune first (it records "
                         "the new count), then prune")

    def _show_and_confirm(self, region: str, deletions: list[Any]) -> None:
        if self.notify is not None:
            self.notify(f"prune deletes {len(deletions)} items from {region} ({_by_kind(deletions)}):")
            for op in deletions[:SHOWN]:
                self.notify(f"  {op.describe()}")
            if len(deletions) > SHOWN:
                self.notify(f"  … and {len(deletions) - SHOWN} more")
        if self.confirm is None:
            raise GuardRefused(f"prune would delete {len(deletions)} items from {region} without confirmation",
                               hint="pass --yes to confirm")
        self.confirm(f"delete {len(deletions)} items from the registry of {region}", region)

    # -- the record of complete listings ------------------------------------------------------------
    def _records(self) -> dict[str, Any]:
        if self.record_path is None:
            return {}
        from orchestrator.state import read_json

        try:
            data = read_json(self.record_path)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _record(self, src: RegistrySnapshot) -> None:
        if self.record_path is None:
            return
        from orchestrator.state import atomic_write_json

        data = self._records()
        counts = src.counts()
        data[src.region] = {k: counts[k] for k in _TRACKED}
        atomic_write_json(self.record_path, data)


@dataclass(frozen=True)
class RestoreGuard:
    """What a restore may change in a live region.

    Additive by default: only what the destination lacks is created (with the relations of what is
    created). Nothing that exists is changed: a certificate INACTIVE or REVOKED there since the
    backup stays so, a policy keeps its current version, a detached policy or principal stays
    detached; the report says what was left alone. `overwrite` applies the whole plan, after
    confirmation. The plan is shown and confirmed (`confirm` None: a dry run, or an additive
    restore by a caller that takes no answers; an overwrite is then refused)."""

    overwrite: bool = False
    confirm: Confirm | None = None
    notify: Callable[[str], None] | None = None
    prune: PruneGuard | None = None

    def check(self, src: RegistrySnapshot, dst: RegistrySnapshot, plan: SyncPlan) -> SyncPlan:
        from dataclasses import replace

        if self.prune is not None:
            plan = self.prune.check(src, dst, plan)
        left: list[Any] = []
        if not self.overwrite:
            plan, left = additive(plan)
        if left:
            plan = replace(plan, warnings=(*plan.warnings, _left_alone(dst.region, left)))
        if not plan.ops:
            return plan
        if self.notify is not None:
            self.notify(f"restore into {dst.region}: {len(plan.ops)} changes ({_by_kind(list(plan.ops))})")
            for op in plan.ops[:SHOWN]:
                self.notify(f"  {op.describe()}")
            if len(plan.ops) > SHOWN:
                self.notify(f"  … and {len(plan.ops) - SHOWN} more")
        if self.confirm is not None:
            what = "overwriting what exists there" if self.overwrite else "adding only what is missing"
            self.confirm(f"restore {len(plan.ops)} changes into the registry of {dst.region} ({what})", dst.region)
        elif self.overwrite:
            raise GuardRefused(f"restore --overwrite into {dst.region} without confirmation",
                               hint="pass --yes to confirm")
        return plan


_RELATIONS = ("group_membership", "thing_principal", "policy_attachment")


def additive(plan: SyncPlan) -> tuple[SyncPlan, list[Any]]:
    """`plan` without the operations that change what exists (updates, and relations between two
    objects that both exist already); creates of certificates and policies are marked `additive`
    so that one found to exist after all is left as it is. Returns (plan, what was left alone)."""
    from dataclasses import replace

    from orchestrator.registry.sync.model import Action

    created = {op.id for op in plan.ops if op.action is Action.CREATE and op.kind.value in OBJECT_KINDS}
    kept: list[Any] = []
    left: list[Any] = []
    for op in plan.ops:
        new_side = any(d in created for d in op.deps)
        if op.tightens and not new_side:  # a restore never detaches what exists (it is additive)
            left.append(op)
        elif op.action is Action.UPDATE and not new_side:
            left.append(op)
        elif op.action is Action.CREATE and op.kind.value in _RELATIONS and not new_side:
            left.append(op)
        elif op.action is Action.CREATE and op.kind.value in ("certificate", "policy"):
            kept.append(replace(op, params={**op.params, "additive": True}))
        else:
            kept.append(op)
    return replace(plan, ops=tuple(kept)), left


def _left_alone(region: str, ops: list[Any]) -> str:
    shown = ", ".join(op.describe() for op in ops[:5])
    more = f" and {len(ops) - 5} more" if len(ops) > 5 else ""
    return (f"restore is additive: left {len(ops)} existing items of {region} as they are ({shown}{more}); "
            "--overwrite changes them")


def _by_kind(ops: list[Any]) -> str:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.kind.value] = counts.get(op.kind.value, 0) + 1
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items()))


def check_member_regions(regions: tuple[str, ...], residency: tuple[str, ...], src: str, dst: str,
                         source: str) -> None:
    """`--from` and `--to` of a sync are member regions of the environment, in residency (exit 2)."""
    for label, region in (("--from", src), ("--to", dst)):
        if region not in residency:
            raise InputRejected(f"{label} {region} is outside the environment's residency list "
                                f"({', '.join(residency)}): registry data may not be copied there or from there")
        if region not in regions:
            raise InputRejected(f"{label} {region} is not a member region of {source} "
                                f"(members: {', '.join(regions)})",
                                hint="a region joins through `orchestrate promote-secondary`")
