"""`drift`: a refresh in preview-only mode per stack, in waves; what differs from the state.

Nothing changes: neither the cloud nor the stacks' state. The report lists every resource
property whose value in the cloud differs from what the state holds (secrets masked), and the
stacks whose refresh preview failed (drift unknown). `markdown` is the body of the environment's
sticky drift issue: its first line is the drift marker of the env (`orchestrator.preview.comment`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.engine.types import StackDrift
from orchestrator.stacks.graph import all_stacks, plan_waves, region_stack

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context


@dataclass(frozen=True)
class DriftReport:
    env: str
    backend: str
    waves: tuple[tuple[str, ...], ...]
    stacks: tuple[StackDrift, ...]

    @property
    def drifted(self) -> bool:
        return any(s.drifted for s in self.stacks)

    @property
    def failed(self) -> bool:
        return any(s.error for s in self.stacks)

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "backend": self.backend,
            "drifted": self.drifted,
            "waves": [list(w) for w in self.waves],
            "stacks": {s.stack: {"deployed": s.deployed, "error": s.error,
                                 "differences": [d.__dict__ for d in s.differences]} for s in self.stacks},
        }

    def lines(self) -> list[str]:
        head = "DRIFT" if self.drifted else "unknown (a refresh preview failed)" if self.failed else "no drift"
        out = [f"drift {self.env}: {head}"]
        for s in self.stacks:
            if not s.deployed:
                out.append(f"  {s.stack:<34} not deployed")
            elif s.error:
                out.append(f"  {s.stack:<34} FAILED: {s.error}")
            elif not s.differences:
                out.append(f"  {s.stack:<34} in sync")
            else:
                out.append(f"  {s.stack:<34} {len(s.differences)} differences")
                for d in s.differences:
                    out.append(f"    {d.resource} ({d.type}) {d.property}: expected {d.expected}, actual {d.actual}")
        return out

    def markdown(self) -> str:
        from orchestrator.preview.comment import marker

        out = [marker(self.env, 1, kind="drift"), f"## Drift in `{self.env}`", ""]
        if not self.drifted and not self.failed:
            out.append("No drift: every deployed stack matches the cloud.")
        else:
            out.append(f"A refresh preview of every stack (backend `{self.backend}`) found what follows. Nothing was "
                       "changed: bring the cloud back with `orchestrate up`, or take the change into the programs.")
            for s in self.stacks:
                if s.error:
                    out += ["", f"### `{s.stack}`: refresh preview failed", "", f"```\n{s.error}\n```"]
                elif s.differences:
                    out += ["", f"### `{s.stack}`", "", "| resource | property | expected (state) | actual (cloud) |",
                            "|---|---|---|---|"]
                    out += [f"| `{d.resource}` ({d.type}) | `{d.property}` | {_cell(d.expected)} | {_cell(d.actual)} |"
                            for d in s.differences]
        return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    short = text if len(text) <= 200 else text[:197] + "..."
    return "`" + short.replace("|", "\\|").replace("`", "'").replace("\n", " ") + "`"


def detect_drift(app: Context, region: str | None, *, parallel: int = 4) -> DriftReport:
    """Refresh previews of the env's stacks (or one region's stack), wave by wave; a topology file
    that contradicts the recorded roles is refused first (exit 2)."""
    from orchestrator.operations.guards import check_primary

    check_primary(app)
    topology = app.topology()
    selection = [region_stack(topology, region)] if region else all_stacks(topology)
    waves = plan_waves(topology, selection)
    engine = app.engine()
    results: list[StackDrift] = []
    for wave in waves:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(wave))), thread_name_prefix="drift") as pool:
            found = list(pool.map(lambda ref: engine.drift(ref.name), wave))
        for result in found:
            app.notify(f"[{result.stack}] " + ("not deployed" if not result.deployed else
                                               f"refresh preview failed: {result.error}" if result.error else
                                               f"{len(result.differences)} differences" if result.drifted else
                                               "in sync"))
        results += found
    return DriftReport(topology.env, app.backend_name, tuple(tuple(r.name for r in w) for w in waves), tuple(results))
