"""`rebuild-region --from-backup`: the primary is down and there is no secondary yet (the risk ADR
0001 accepts). Build the platform in another region from the backups, without one call to the
failed region, and send traffic there.

Before anything is touched (each refusal: one line, nothing written):

- the topology agrees with the backend's record of who is primary (`guards.check_primary`), has no
  secondary (with one, `failover --to` is the path: exit 2), and R is a residency region other
  than the primary (exit 2);
- the primary does not answer a one-attempt probe (`verify.region_answers`, the only request ever
  signed for it); a primary that answers is refused (exit 4) unless `--force`: `promote-secondary`
  copies its live registry, a backup would lose what changed since;
- the backup: the newest under the vault (or `--src`) of this env and the primary whose signed
  manifest verifies and whose files match their digests (`registry.api.load_verified_backup`);
  unsigned is exit 4, changed exit 2 when no valid one is left (a copy renamed to look
  newer keeps its signed place, with a warning); one older than
  `--max-age` hours (the recovery point budget) or older than the newest valid one is exit 4.

Then, after the steps are shown and confirmed, each step verified before the next (resumable: the
record is the lifecycle record in the backend, as for promote/failover):

  region-stack      up `E-region-R` (not its home-region singletons: the vault, the signing key and
                    the ACM validation record stay with the old home stack and the regions that are
                    up); verify its outputs and the domain configuration in R
  registry-restore  restore the backup into R (additive), then read R back and compare it with the
                    backup kind by kind (things, types, groups, certificates, attachments, policies,
                    shadows, the plane's kinds): equal, or the step fails
  dns               the shared DNS stack answers R; verified (on failure the previous records go back)
  record-primary    the topology file: R primary, the old primary a secondary held out of DNS; the
                    backend's lifecycle record: R primary; both read back and agree

Nothing here calls the failed region after the probe: stack outputs come from the state backend,
Route 53 is global, the vault and its signing key live in the backup region.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from orchestrator.errors import GuardRefused, InputRejected, OperationFailed, OrchestrateError
from orchestrator.operations import guards, verify
from orchestrator.operations.lifecycle import Lifecycle, LifecycleReport, Step, StepOutcome, _now
from orchestrator.operations.recovery import Confirm
from orchestrator.stacks import wiring
from orchestrator.stacks.graph import dns_stack, region_stack
from orchestrator.topology import Topology

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context
    from orchestrator.registry import LoadedBackup, SyncSettings

OPERATION = "rebuild-region"
RECORD = "rebuild"  # the lifecycle record's operation (guards.recorded_transition reads it)
DEFAULT_MAX_AGE_H = 48.0  # two daily backups: the recovery point this command accepts without being told


@dataclass(frozen=True)
class RebuildOptions:
    region: str
    src: str | None = None  # a backup or a location holding backups; None: $ORCHESTRATE_BACKUP_DEST, else the vault
    signing_key: str | None = None
    force: bool = False  # rebuild although the primary answers
    max_age_h: float = DEFAULT_MAX_AGE_H
    allow_older: bool = False  # a named backup older than the newest valid one
    preview_first: bool = False  # someone will be asked: show what each stack would change first


class Rebuild:
    """One `rebuild-region` run: the checks, then the steps through the lifecycle's step runner."""

    def __init__(self, app: Context, options: RebuildOptions, settings: SyncSettings,
                 confirm: Confirm | None = None) -> None:
        self.app = app
        self.options = options
        self.settings = settings
        self.lifecycle = Lifecycle(app, confirm=confirm)
        self.loaded: LoadedBackup | None = None

    # -- what the run reads before it touches anything -------------------------------------------
    def _record(self) -> dict[str, Any]:
        saved = self.lifecycle._load()
        return saved if saved.get("operation") == RECORD and saved.get("status") != "done" else {}

    def _check_topology(self, topology: Topology, resuming: bool) -> str:
        region = self.options.region
        if resuming:
            return str(self._record()["from"])
        if region == topology.primary:
            raise InputRejected(f"{region} is the primary of env {topology.env}: rebuild into another region")
        if topology.secondaries:
            first = topology.secondaries[0]
            raise InputRejected(f"env {topology.env} has a secondary ({', '.join(topology.secondaries)}): "
                                "move traffic there instead of rebuilding from backups",
                                hint=f"run `orchestrate failover --to {first}`")
        guards.check_residency(topology, region)
        return topology.primary

    def _check_primary_down(self, old: str) -> str:
        if verify.region_answers(self.lifecycle._region_ctx(old), old):
            if not self.options.force:
                raise GuardRefused(
                    f"the primary {old} answers: a rebuild from backups would lose every registry change "
                    "since the backup; nothing was touched",
                    hint=f"add a secondary from the live primary with `orchestrate promote-secondary --region "
                         f"{self.options.region}`; if {old} answers but cannot serve devices, pass --force")
            return f"{old} answers, rebuilding anyway (--force)"
        return f"{old} does not answer (probe timeout {verify.PROBE_TIMEOUT_S:g} s)"

    def _source(self) -> str:
        from orchestrator.operations.backups import backup_destination

        return self.options.src or backup_destination(self.app)

    def _key_region(self, topology: Topology) -> str:
        """Where the signing key is read (a KMS ARN names its own region): the vault's region."""
        return topology.backup_region or self.options.region

    def _choose_backup(self, topology: Topology, old: str, saved: dict[str, Any]) -> LoadedBackup:
        from orchestrator.aws import AwsContext
        from orchestrator.operations.backups import signing_key_spec
        from orchestrator.registry.api import load_verified_backup

        src = str(saved.get("backup") or self._source())  # a resumed run restores the backup it chose
        loaded = load_verified_backup(AwsContext(endpoint_url=self.app.endpoint_url), src, env=self.app.env,
                                      region=old, signing_key=signing_key_spec(self.app, self.options.signing_key),
                                      key_region=self._key_region(topology),
                                      s3_region=self._key_region(topology))
        if loaded.manifest.env != self.app.env:
            raise InputRejected(f"{loaded.location} is a backup of env {loaded.manifest.env}, not {self.app.env}")
        rollback = loaded.rollback()
        if rollback and not (self.options.allow_older or saved):
            raise GuardRefused(f"{rollback}: nothing was touched",
                               hint="pass the location holding the backups (the newest valid one is used), or "
                                    "--allow-older to rebuild from this one")
        age_h = (datetime.now(timezone.utc) - loaded.manifest.created_at).total_seconds() / 3600
        if age_h > self.options.max_age_h and not saved:
            raise GuardRefused(f"the newest valid backup {loaded.describe()} is {age_h:.1f} h old, over the "
                               f"--max-age budget of {self.options.max_age_h:g} h: every registry change since "
                               "would be lost; nothing was touched",
                               hint=f"pass --max-age {int(age_h) + 1} to accept that recovery point")
        for warning in loaded.warnings:
            self.app.notify(f"warning: {warning}")
        return loaded

    def _topologies(self, before: Topology, old: str) -> tuple[Topology, Topology]:
        """(the file to write, what DNS and the stacks are rendered from): R primary, the old primary
        a secondary held out of DNS. The home region stays the old primary: its singletons (vault,
        signing key, ACM validation record) live in the backup region and Route 53, which are up."""
        region = self.options.region
        written = before if region == before.primary else before.with_secondary(region).with_primary(region)
        return written, written.with_unrouted(frozenset({old}))

    # -- the run ---------------------------------------------------------------------------------
    def steps(self, old: str, loaded: LoadedBackup) -> list[Step]:
        env, region = self.app.env, self.options.region
        counts = loaded.manifest.counts
        return [
            Step("region-stack", f"up {env}-region-{region}; verify its outputs and the domain configuration "
                                 f"in {region} (no call to {old})", (f"{env}-region-{region}",)),
            Step("registry-restore", f"restore {loaded.describe()} into {region} ({counts.get('things', 0)} things, "
                                     f"{counts.get('certificates', 0)} certificates, {counts.get('policies', 0)} "
                                     "policies); read it back and compare with the backup"),
            Step("dns", f"point {self.app.topology().domain} at {region}; verify the records (failure: previous "
                        "records restored)", (f"{env}-dns",)),
            Step("record-primary", f"record {region} as primary in {self.app.topology().source} and in the "
                                   f"backend; {old} stays a secondary held out of DNS"),
        ]

    def run(self, *, dry_run: bool = False) -> LifecycleReport:
        region = self.options.region
        saved = self._record()
        if saved and saved.get("region") != region:
            other = saved.get("region")
            raise InputRejected(f"a rebuild of env {self.app.env} into {other} is in progress "
                                f"({saved.get('status')} at {saved.get('failed_step', '?')})",
                                hint=f"re-run `orchestrate rebuild-region --from-backup --region {other}`")
        resuming = bool(saved)
        if resuming:
            from orchestrator.operations.accounts import check_accounts

            check_accounts(self.app)  # the record is this run's own: the file may lag it until record-primary
        else:
            guards.check_primary(self.app, controls=False)
        before = self.app.topology()
        old = self._check_topology(before, resuming)
        probe = "resuming" if resuming else self._check_primary_down(old)
        zone = verify.hosted_zone_id(self.lifecycle._dns_ctx(), before.hosted_zone)
        loaded = self.loaded = self._choose_backup(before, old, saved)
        written, after = self._topologies(before, old)
        checked = (f"{probe}; backup {loaded.describe()} verified ({loaded.manifest.counts.get('things', 0)} things); "
                   f"zone {before.hosted_zone} ({zone}) present")
        steps = self.steps(old, loaded)
        if dry_run:
            return self._dry_run(before, after, steps, checked, saved)
        if self.options.preview_first:
            lines = self._previews(before, after)
            steps = [Step(s.name, s.does + _would_change(s, lines), s.stacks) for s in steps]
        if not resuming:
            saved = {"operation": RECORD, "region": region, "from": old, "primary": old, "held": [old],
                     "backup": loaded.location, "backup_created": loaded.manifest.to_json()["created_at"],
                     "status": "running", "done": [], "started": _now()}
        self.app.notify(f"[{OPERATION}] checked: {checked}")
        actions = {
            "region-stack": lambda: self._region_stack(after),
            "registry-restore": lambda: self._restore(loaded),
            "dns": lambda: self._dns(before, after),
            "record-primary": lambda: self._record_primary(written, old),
        }
        notices = [f"resuming the rebuild of {region} after: {', '.join(saved['done']) or 'nothing'}"] \
            if resuming else []
        report = self.lifecycle._steps(OPERATION, region, steps, actions, saved, notices)
        if not report.ok:
            return report
        self._read_back_roles(region)
        return replace(report, follow_ups=(
            *report.follow_ups[:1],  # commit the topology file the rebuild wrote
            f"do not run `orchestrate up --all` while {old} is down: it would update {old}'s stack and create the "
            f"replication stack that joins it (`orchestrate up --region {region}` is fine)",
            f"once {old} answers again: `orchestrate failback` returns traffic there after syncing the registry "
            f"{region} -> {old} (docs/runbooks/rebuild-from-backups.md)"))

    def _dry_run(self, before: Topology, after: Topology, steps: list[Step], checked: str,
                 saved: dict[str, Any]) -> LifecycleReport:
        lines = self._previews(before, after)
        outcomes = [StepOutcome("preflight", "passed", checked)]
        done = set(saved.get("done", ()))
        for step in steps:
            outcomes.append(StepOutcome(step.name, "done earlier" if step.name in done else "planned",
                                        step.does + _would_change(step, lines)))
        return LifecycleReport(f"{OPERATION} (dry run)", self.app.env, self.options.region, tuple(outcomes))

    def _previews(self, before: Topology, after: Topology) -> dict[str, str]:
        """Per stack, what Pulumi would create, update, replace and delete (read-only previews)."""
        from orchestrator.operations.change_preview import preview_changes, stack_line

        refs = [region_stack(after, self.options.region), dns_stack(after)]
        return {p.stack: stack_line(p) for p in preview_changes(self.app.engine(), after, refs, before=before).stacks}

    # -- steps -----------------------------------------------------------------------------------
    def _region_stack(self, after: Topology) -> str:
        region = self.options.region
        ref = region_stack(after, region)
        self.lifecycle._up(after, ref)
        outputs = wiring.validate_region_outputs(ref.name, region, self.app.engine().outputs(ref.name) or {})
        verify.domain_configuration(self.lifecycle._region_ctx(region), region, outputs.domain_configuration_name,
                                    after.domain)
        return f"endpoint {outputs.endpoint}, domain configuration {outputs.domain_configuration_name} enabled"

    def _restore(self, loaded: LoadedBackup) -> str:
        from orchestrator.aws import AwsContext
        from orchestrator.registry.api import compare_with_backup, restore_loaded

        region, topology = self.options.region, self.app.topology()
        ctx = AwsContext(endpoint_url=self.app.endpoint_url)
        s3_region = self._key_region(topology)
        report = restore_loaded(ctx, loaded, region, settings=self.settings, s3_region=s3_region,
                                residency=topology.residency,
                                progress=self.app.console.progress(f"restore -> {region}", unit="changes"))
        if not report.ok:
            first = "; ".join(f"{e.op}: {e.code}: {e.message}" for e in report.errors[:3])
            raise OperationFailed(f"restore into {region} failed: {len(report.errors)} errors ({first})")
        compared = compare_with_backup(ctx, loaded, region, settings=self.settings, s3_region=s3_region)
        if not compared.equal:
            differ = "; ".join(item for k in compared.kinds for item in k.first[:2])
            raise OperationFailed(f"the registry of {region} does not read back equal to the backup: "
                                  f"{compared.differences} differences ({differ})")
        counts = {k.kind: k.in_to for k in compared.kinds}
        return (f"{report.applied} applied; read back equal to the backup: {counts.get('things', 0)} things, "
                f"{counts.get('certificates', 0)} certificates, {counts.get('policies', 0)} policies, "
                f"{counts.get('thing_principals', 0)} attachments")

    def _dns(self, before: Topology, after: Topology) -> str:
        self.lifecycle._switch_dns(before, after)  # verified; the previous records go back on failure
        return f"DNS answers {self.options.region} for {after.domain}"

    def _record_primary(self, written: Topology, old: str) -> str:
        self.app.record_unrouted(self.app.unrouted_regions() | {old})  # held out of DNS before the file lists it
        self.lifecycle._save_topology(written)
        now = self.app.reload_topology()
        if now.primary != self.options.region or old not in now.unrouted:
            raise OperationFailed(f"{now.source} reads back primary {now.primary}, held out of DNS "
                                  f"{sorted(now.unrouted)}: expected {self.options.region} and {old}")
        return f"{self.options.region} recorded as primary; {old} a secondary held out of DNS"

    def _read_back_roles(self, region: str) -> None:
        """The backend's record and the file agree that `region` is primary (what every later command
        checks), read back from the backend."""
        record = guards.recorded_transition(self.app.state.load(self.app.state.lifecycle_path(self.app.env)))
        if record is None or record.primary != region:
            raise OperationFailed(f"the backend's lifecycle record reads back primary "
                                  f"{record.primary if record else 'none'}, not {region}")
        try:
            guards.check_primary(self.app, controls=False)
        except OrchestrateError as exc:
            raise OperationFailed(f"the topology file and the backend disagree after the rebuild: "
                                  f"{exc.one_line()}") from None


def _would_change(step: Step, lines: dict[str, str]) -> str:
    return "".join(f"; would change {lines[s]}" if s in lines else f" [{s}: not previewed]" for s in step.stacks)


__all__ = ["DEFAULT_MAX_AGE_H", "Rebuild", "RebuildOptions"]
