"""Runs stack operations over the graph in waves: parallel within a wave, stop on failure.

`up` wires each region stack's validated outputs into the DNS and replication stacks' config;
nothing downstream runs when an upstream failed. `destroy` runs the waves in reverse. Every run
keeps a journal so `up --resume` continues from the failed stack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.engine.types import Engine, Operation, Outcome, StackResult, StackSpec
from orchestrator.errors import ContractViolation, OrchestrateError, StackLocked
from orchestrator.readiness.deploy import from_engine as readiness_config
from orchestrator.stacks import wiring
from orchestrator.stacks.graph import StackKind, StackRef, dns_targets, plan_waves, region_stack
from orchestrator.stacks.journal import Journal
from orchestrator.state import StateLayout
from orchestrator.topology import Topology

Notify = Callable[[str], None]
PROGRESS_EVERY = 2.0  # seconds between two progress lines of one stack


@dataclass(frozen=True)
class RunReport:
    env: str
    operation: str
    waves: tuple[tuple[str, ...], ...]
    results: Mapping[str, StackResult]
    journal: str | None = None
    notices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results.values())

    @property
    def locked(self) -> bool:
        return any(r.locked_by is not None for r in self.results.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "operation": self.operation,
            "ok": self.ok,
            "waves": [list(w) for w in self.waves],
            "stacks": {
                name: {
                    "outcome": r.outcome.value,
                    "counts": dict(r.counts),
                    "seconds": round(r.seconds, 3),
                    "message": r.message,
                    "outputs": {k: v.shown() for k, v in r.outputs.items()},
                }
                for name, r in self.results.items()
            },
            "journal": self.journal,
            "notices": list(self.notices),
        }


@dataclass
class Runner:
    engine: Engine
    topology: Topology
    state: StateLayout
    notify: Notify = lambda _msg: None
    parallel: int = 4
    sync_command: str = "orchestrate"
    # a console Progress (update(done, total, detail), `live`): stacks finished of the run, with the
    # running stack's resource counts; on a terminal it replaces the per-stack "so far" lines
    progress: Any = None
    _finished: int = 0
    _planned: int = 0
    _outputs: dict[str, wiring.RegionOutputs] = field(default_factory=dict)
    _last_progress: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def runs_dir(self) -> Path:
        return self.state.runs_dir

    # -- up ---------------------------------------------------------------------------------
    def up(self, selection: Sequence[StackRef], *, resume: bool = False) -> RunReport:
        waves = plan_waves(self.topology, selection)
        names = [[s.name for s in w] for w in waves]
        notices: list[str] = []
        done: set[str] = set()
        previous = Journal.latest(self.state, self.topology.env, "up") if resume else None
        if resume:
            done, notices = self._resume_point(previous, names)
        journal = Journal.start(self.state, self.topology.env, "up", names,
                                resumed_from=previous.run_id if previous and done else None)
        results = self._run_waves(waves, journal, Operation.UP,
                                  lambda ref: self._up_one(ref, journal, skip=ref.name in done))
        journal.finish("succeeded" if all(r.ok for r in results.values()) else "failed")
        return RunReport(self.topology.env, "up", tuple(tuple(w) for w in names), results,
                         str(journal.path), tuple(notices))

    def _resume_point(self, previous: Journal | None, names: list[list[str]]) -> tuple[set[str], list[str]]:
        if previous is None:
            return set(), ["no earlier `up` run of this environment to resume: running everything"]
        if previous.data.get("status") == "succeeded":
            return set(), [f"run {previous.run_id} completed: nothing to resume, running everything"]
        if previous.data.get("waves") != names:
            return set(), [f"the plan changed since run {previous.run_id} (topology or selection): re-planning"]
        done = previous.succeeded()
        for name in sorted(done):
            produced = previous.produced(name)
            if produced is None:
                continue
            current = self.engine.outputs(name) or {}
            now = {k: v.value for k, v in current.items() if k in produced}
            if now != produced:
                changed = sorted(k for k in produced if now.get(k) != produced[k])
                return set(), [f"outputs of {name} changed since run {previous.run_id} "
                               f"({', '.join(changed)}): re-planning instead of applying stale wiring"]
        skipped = ", ".join(sorted(done)) or "none"
        return done, [f"resuming run {previous.run_id}: already done: {skipped}"]

    def _up_one(self, ref: StackRef, journal: Journal, *, skip: bool) -> StackResult:
        if ref.kind is StackKind.REGION:
            spec = wiring.region_spec(self.topology, ref.region)
            if skip:
                self._remember(ref, self.validated_outputs(ref))
                return StackResult(ref.name, Operation.UP, Outcome.SKIPPED, message="done in the resumed run")
            result = self.engine.up(spec, self._progress)
            if result.outcome is Outcome.SUCCEEDED:
                outputs = wiring.validate_region_outputs(ref.name, ref.region, result.outputs)
                self._remember(ref, outputs)
                journal.record(ref.name, produced={k: v.value for k, v in result.outputs.items() if not v.secret})
            return result
        consumed = self._upstream_outputs(ref)
        spec = (wiring.dns_spec(self.topology, consumed) if ref.kind is StackKind.DNS
                else wiring.replication_spec(self.topology, consumed, self.sync_command,
                                             readiness_config(self.topology, self.engine)))
        placeholders = wiring.uses_placeholders(spec)
        if placeholders:
            raise ContractViolation(f"{ref.name}: refusing to apply placeholder values in {', '.join(placeholders)}")
        journal.record(ref.name, consumed=wiring.consumed(consumed))
        if skip:
            return StackResult(ref.name, Operation.UP, Outcome.SKIPPED, message="done in the resumed run")
        return self.engine.up(spec, self._progress)

    def validated_outputs(self, ref: StackRef) -> wiring.RegionOutputs:
        raw = self.engine.outputs(ref.name)
        if not raw:
            raise ContractViolation(f"{ref.name} is not deployed: run `orchestrate up --region {ref.region}` first")
        return wiring.validate_region_outputs(ref.name, ref.region, raw)

    def _remember(self, ref: StackRef, outputs: wiring.RegionOutputs) -> None:
        with self._lock:
            self._outputs[ref.region] = outputs

    def _upstream_outputs(self, ref: StackRef) -> dict[str, wiring.RegionOutputs]:
        """Outputs of every region the stack consumes: from this run, else read from the backend."""
        needed = dns_targets(self.topology) if ref.kind is StackKind.DNS else self.topology.regions
        found: dict[str, wiring.RegionOutputs] = {}
        for region in needed:
            with self._lock:
                known = self._outputs.get(region)
            if known is None:
                known = self.validated_outputs(region_stack(self.topology, region))
                self._remember(region_stack(self.topology, region), known)
            found[region] = known
        return found

    def _progress(self, stack: str, counts: Mapping[str, int]) -> None:
        """Live progress on stderr: at most one line per stack every PROGRESS_EVERY seconds."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_progress.get(stack, -PROGRESS_EVERY) < PROGRESS_EVERY:
                return
            self._last_progress[stack] = now
        shown = " ".join(f"{op} {n}" for op, n in counts.items() if n)
        if self.progress is not None and self.progress.live:
            self.progress.update(self._finished, self._planned, f"[{stack}] {shown or 'working'}")
            return
        self.notify(f"[{stack}] {shown or 'working'} so far")

    # -- destroy -----------------------------------------------------------------------------
    def destroy(self, selection: Sequence[StackRef], *, include_protected: bool) -> RunReport:
        waves = list(reversed(plan_waves(self.topology, selection)))
        names = [[s.name for s in w] for w in waves]
        journal = Journal.start(self.state, self.topology.env, "destroy", names)

        def one(ref: StackRef) -> StackResult:
            if not self.engine.info(ref.name).deployed:
                return StackResult(ref.name, Operation.DESTROY, Outcome.SKIPPED, message="not deployed")
            spec = StackSpec(ref.name, ref.kind.value, ref.region, {"aws:region": ref.region})
            return self.engine.destroy(spec, include_protected=include_protected, on_progress=self._progress)

        results = self._run_waves(waves, journal, Operation.DESTROY, one)
        journal.finish("succeeded" if all(r.ok for r in results.values()) else "failed")
        return RunReport(self.topology.env, "destroy", tuple(tuple(w) for w in names), results, str(journal.path))

    # -- shared wave loop ---------------------------------------------------------------------
    def _run_waves(self, waves: Sequence[Sequence[StackRef]], journal: Journal, operation: Operation,
                   action: Callable[[StackRef], StackResult]) -> dict[str, StackResult]:
        results: dict[str, StackResult] = {}
        failed = False
        self._finished, self._planned = 0, sum(len(w) for w in waves)
        for wave in waves:
            if failed:
                for ref in wave:
                    results[ref.name] = StackResult(ref.name, operation, Outcome.SKIPPED,
                                                    message="not run: an upstream stack failed")
                    journal.record(ref.name, outcome="not-run")
                continue
            workers = max(1, min(self.parallel, len(wave)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stack") as pool:
                futures = {ref.name: pool.submit(self._guarded, ref, operation, action) for ref in wave}
                for ref in wave:
                    result = futures[ref.name].result()
                    results[ref.name] = result
                    journal.record(ref.name, outcome=result.outcome.value, message=result.message,
                                   counts=dict(result.counts), seconds=round(result.seconds, 3))
                    self.notify(f"[{ref.name}] {result.outcome.value}"
                                + (f": {result.message}" if result.message else "")
                                + (f" ({result.seconds:.1f}s)" if result.seconds else ""))
                    self._stack_done(ref.name, result)
            failed = any(not results[ref.name].ok for ref in wave)
        if self.progress is not None:
            self.progress.close()  # also when a failure left stacks not run: the bar ends on its line
        return results

    def _stack_done(self, name: str, result: StackResult) -> None:
        with self._lock:
            self._finished += 1
        if self.progress is not None:
            self.progress.update(self._finished, self._planned, f"{name} {result.outcome.value}")

    @staticmethod
    def _guarded(ref: StackRef, operation: Operation,
                 action: Callable[[StackRef], StackResult]) -> StackResult:
        started = time.monotonic()
        try:
            return action(ref)
        except StackLocked as exc:
            return StackResult(ref.name, operation, Outcome.FAILED, seconds=time.monotonic() - started,
                               message=f"locked: {exc.one_line()}", locked_by=exc.holder or "")
        except ContractViolation as exc:
            return StackResult(ref.name, operation, Outcome.REFUSED, seconds=time.monotonic() - started,
                               message=exc.one_line())
        except OrchestrateError as exc:
            return StackResult(ref.name, operation, Outcome.FAILED, seconds=time.monotonic() - started,
                               message=exc.one_line())
