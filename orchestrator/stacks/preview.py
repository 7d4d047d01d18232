"""`preview`: previews over the stack graph in waves, collected from the engine's events.

Downstream stacks whose upstream is not deployed yet, or whose upstream outputs would change in
this preview, are still previewed: with the current outputs where they are known and clearly
marked placeholders where they are not. Placeholders are for previews only: `up` refuses them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.engine.types import Engine
from orchestrator.errors import ContractViolation, InputRejected, OrchestrateError
from orchestrator.readiness.deploy import from_engine as readiness_config
from orchestrator.stacks import wiring
from orchestrator.stacks.graph import StackKind, StackRef, dns_targets, plan_waves, region_stack
from orchestrator.topology import Topology

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.preview.model import EnvironmentPreview, StackPreview

# Resource types whose replacement changes a region stack's outputs (endpoint, ARNs, bucket name).
OUTPUT_SOURCES = {
    "aws:iot/domainConfiguration:DomainConfiguration",
    "aws:acm/certificate:Certificate",
    "aws:kinesis/stream:Stream",
    "aws:s3/bucket:Bucket",
}


def preview_environment(engine: Engine, topology: Topology, selection: Sequence[StackRef], *,
                        before: Topology | None, commit: str, parallel: int = 4,
                        backend: str = "") -> EnvironmentPreview:
    from orchestrator.preview.model import EnvironmentPreview, PlaceholderReason, StackPreview, placeholders_in_config

    outputs: dict[str, wiring.RegionOutputs] = {}
    changing: set[str] = set()
    previews: dict[str, StackPreview] = {}

    def region_outputs(region: str) -> wiring.RegionOutputs:
        if region in outputs:
            return outputs[region]
        ref = region_stack(topology, region)
        raw = engine.outputs(ref.name)
        if region in changing or not raw:
            return wiring.placeholder_outputs(region)
        try:
            return wiring.validate_region_outputs(ref.name, region, raw)
        except ContractViolation:
            return wiring.placeholder_outputs(region)

    def one(ref: StackRef) -> StackPreview:
        try:
            if ref.kind is StackKind.REGION:
                return engine.preview(wiring.region_spec(topology, ref.region))
            needed = dns_targets(topology) if ref.kind is StackKind.DNS else topology.regions
            consumed = {r: region_outputs(r) for r in needed}
            spec = (wiring.dns_spec(topology, consumed) if ref.kind is StackKind.DNS
                    else wiring.replication_spec(topology, consumed, readiness=readiness_config(topology, engine)))
            result = engine.preview(spec)
            reasons = {r: (PlaceholderReason.WOULD_CHANGE if r in changing else PlaceholderReason.NOT_DEPLOYED)
                       for r in needed}
            marked = tuple(p for r, reason in reasons.items()
                           for p in placeholders_in_config(
                               {k: v for k, v in spec.config.items() if f"placeholder:{r}" in v},
                               topology.env, reason))
            if marked:
                result = StackPreview(result.stack, result.kind, result.region, result.changes, result.counts,
                                      marked, result.error)
            return result
        except OrchestrateError as exc:
            return StackPreview(ref.name, ref.kind.value, ref.region, error=exc.one_line())

    for wave in plan_waves(topology, selection):
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(wave)))) as pool:
            for ref, result in zip(wave, pool.map(one, wave), strict=True):
                previews[ref.name] = result
                if ref.kind is StackKind.REGION:
                    if any(c.type in OUTPUT_SOURCES and c.op.value in ("replace", "delete", "create")
                           for c in result.changes) and engine.outputs(ref.name):
                        changing.add(ref.region)
    ordered = tuple(previews[ref.name] for wave in plan_waves(topology, selection) for ref in wave)
    return EnvironmentPreview(topology.env, commit, ordered, before, topology, backend)


def current_commit(project_dir: Path) -> str:
    """The commit a preview describes: ORCHESTRATE_COMMIT when set, else git's HEAD (on a pull
    request that is the merge commit the workflow checked out and previewed, not the PR's head)."""
    sha = os.environ.get("ORCHESTRATE_COMMIT")
    if sha:
        return sha[:12]
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=project_dir, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


_REF_RE = re.compile(r"(?![-.])(?!.*\.\.)[A-Za-z0-9._/@~^{}-]{1,200}\Z")


def check_ref(ref: str) -> str:
    """A git ref as `--base-ref` may name it: never an option (`-…`), never a range or a path trick."""
    if not _REF_RE.fullmatch(ref):
        shown = ref if len(ref) <= 60 else ref[:60] + "…"
        raise InputRejected(f"--base-ref {shown!r} is not a git ref (letters, digits, . _ / - ~ ^; not starting "
                            "with - or .)")
    return ref


def topology_at(project_dir: Path, config_path: Path, env: str, ref: str) -> Topology | None:
    """The topology file as it is at git `ref` (the pull request's base), or None if absent."""
    from orchestrator import topology as topo

    check_ref(ref)
    try:
        rel = config_path.resolve().relative_to(project_dir.resolve())
        # --end-of-options: whatever the ref looks like, git reads it as a revision, never an option
        out = subprocess.run(["git", "show", "--end-of-options", f"{ref}:{rel.as_posix()}"], cwd=project_dir,
                             capture_output=True, text=True, timeout=10)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or len(out.stdout.encode()) > topo.MAX_TOPOLOGY_BYTES:
        return None
    try:
        data: Any = topo.parse_yaml(out.stdout, f"{ref}:{rel.as_posix()}")
        return topo.parse(data, env=env, source=f"{ref}:{rel.as_posix()}")
    except OrchestrateError:
        return None
