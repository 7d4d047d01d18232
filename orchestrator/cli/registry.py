"""`orchestrate registry sync|verify|backup|restore|replay|reconcile`: the IoT registry across regions (boto3)."""

from __future__ import annotations

import click

from orchestrator.cli.app import command, group
from orchestrator.context import Context
from orchestrator.errors import ExitCode, InputRejected, Reported


def progress_bar(app: Context, label: str):  # noqa: ANN201 - a console Progress (the registry's callback)
    """The console's progress display: a bar with totals and rate on a terminal, a line every 10 %
    when stderr is a file, nothing under --json or CI."""
    return app.console.progress(label, unit="changes")


def _render(app: Context, result, lines: list[str]) -> None:  # noqa: ANN001
    if app.json_output:
        app.console.document(result.to_json())
    else:
        for line in lines:
            app.console.result(line)


def _counts(counts) -> list[str]:  # noqa: ANN001
    return [f"  {kind:<17} " + " ".join(f"{op}={n}" for op, n in ops.items() if n)
            for kind, ops in counts.items() if any(ops.values())]


registry = group("registry", help="Copy, back up, restore and verify the IoT registry between regions.", lazy={
    "sync": "orchestrator.cli.registry:sync",
    "backup": "orchestrator.cli.registry:backup",
    "restore": "orchestrator.cli.registry:restore",
    "replay": "orchestrator.cli.registry:replay",
    "verify": "orchestrator.cli.registry:verify",
    "reconcile": "orchestrator.cli.registry:reconcile",
})


def _quota_options(fn):  # noqa: ANN001, ANN202 - a click decorator
    """The rate options shared by sync and restore."""
    fn = click.option("--quotas", "quota_file", type=click.Path(exists=True, dir_okay=False),
                      help="YAML/JSON file of API: calls per second (after a quota increase); "
                           "the topology's `quotas:` section is read first.")(fn)
    fn = click.option("--quota", "quota_overrides", multiple=True, metavar="API=RATE",
                      help="Set one API's rate, e.g. ListThingPrincipals=20 (repeatable).")(fn)
    fn = click.option("--read-rate", type=click.FloatRange(0.1, 10000), default=None,
                      help="Cap on every read API's calls per second [default: each API's quota].")(fn)
    fn = click.option("--rate", type=click.FloatRange(0.1, 10000), default=None,
                      help="Cap on every write API's calls per second [default: each API's quota].")(fn)
    fn = click.option("--no-shadows", is_flag=True, help="Leave device shadows (classic and named) alone.")(fn)
    return click.option("--concurrency", type=click.IntRange(1, 16), default=4, show_default=True,
                        help="Calls in flight at once (each API still within its own quota).")(fn)


def _settings(app: Context, *, prune: bool, rate: float | None, read_rate: float | None,
              quota_file: str | None, quota_overrides: tuple[str, ...], concurrency: int, no_shadows: bool,
              full: bool = False):  # noqa: ANN202 - SyncSettings (import deferred)
    from orchestrator.registry import SyncSettings
    from orchestrator.registry.quotas import resolve_quotas

    quotas = resolve_quotas(app.topology().quotas, quota_file, quota_overrides)
    return SyncSettings(prune=prune, rate=rate, read_rate=read_rate, quotas=quotas, concurrency=concurrency,
                        shadows=not no_shadows, full=full or prune,
                        retained_topics=app.topology().registry.retained_topics)


def _calls(result) -> list[str]:  # noqa: ANN001
    by_api = sorted(result.calls_by_api.items(), key=lambda kv: -kv[1])
    return ["  calls: " + ", ".join(f"{api}={n}" for api, n in by_api)] if by_api else []


@command("sync")
@click.option("--from", "src", metavar="R1", help="Source region.")
@click.option("--to", "dst", metavar="R2", help="Destination region (must be in residency).")
@click.option("--all-secondaries", is_flag=True,
              help="From the primary (as the topology records it, after any failover) to every secondary, "
                   "one after another; instead of --from/--to (the scheduled job's form).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--prune", is_flag=True, help="Also delete what the source no longer has (implies --full).")
@click.option("--full", is_flag=True, help="Read every thing's certificates and shadows, not only what changed "
              "since the last clean sync (finds a certificate moved between things; run it weekly). "
              "A --full pass cut short continues with the things it has not read (within 24 h).")
@_quota_options
@click.option("--max-delete", metavar="N|P%", default=None,
              help="With --prune: most objects deleted, a number or a percentage of the destination's "
                   "[default: 5%].")
@click.option("--yes", is_flag=True, help="Confirm --prune's deletions without a prompt (needed without a terminal).")
def sync(app: Context, src: str | None, dst: str | None, all_secondaries: bool, dry_run: bool, prune: bool,
         full: bool, rate: float | None, read_rate: float | None, quota_file: str | None,
         quota_overrides: tuple[str, ...], no_shadows: bool, concurrency: int, max_delete: str | None,
         yes: bool) -> None:
    """Copy thing types, groups, things, policies, certificates, attachments, shadows and the
    retained messages under the topology's `registry.retained_topics` prefixes R1 -> R2.

    Then the device-management plane: role aliases, CA certificates (SNI_ONLY), job templates,
    provisioning templates, custom authorizers, the fleet-indexing configuration, and registry
    events (turned on).

    Both regions must be members of the environment. Tightening (a policy or certificate
    detached, a thing taken out of a group, a certificate deactivated or revoked, a policy's old
    versions) is always carried. --prune deletes what the source no longer has, only from a
    complete source listing, within the deletion budget, after confirmation. --all-secondaries syncs the primary
    to each secondary in turn: a pair that reports errors does not stop the next (exit 1 at the end),
    a refusal (exit 2 or 4) stops at once.

    \b
    Examples:
      orchestrate registry sync --from eu-west-1 --to eu-central-1 --dry-run
      orchestrate registry sync --all-secondaries --json    the scheduled job
      orchestrate registry sync --from eu-west-1 --to eu-central-1 --prune --max-delete 1%
    """
    from orchestrator.registry.guards import DeleteBudget, check_member_regions

    topology = app.topology()
    if all_secondaries:
        if src or dst:
            raise InputRejected("--all-secondaries replaces --from/--to: pass one form, not both")
        if not topology.secondaries:  # a single-region env: the scheduled job has nothing to do
            app.notify(f"env {topology.env} has no secondaries: nothing to sync")
            if app.json_output:
                app.console.document({"syncs": []})
            return
        pairs = [(topology.primary, r) for r in topology.secondaries]
    elif not (src and dst):
        raise InputRejected("pass --from R1 and --to R2, or --all-secondaries")
    else:
        pairs = [(src, dst)]
    # the flags first (a bad --quota names itself), then the regions: all before any call
    settings = _settings(app, prune=prune, rate=rate, read_rate=read_rate, quota_file=quota_file,
                         quota_overrides=quota_overrides, concurrency=concurrency, no_shadows=no_shadows, full=full)
    budget = DeleteBudget.parse(max_delete)
    for a, b in pairs:
        check_member_regions(topology.regions, topology.residency, a, b, topology.source)
    outcomes = [_sync_pair(app, a, b, settings, budget, dry_run=dry_run, yes=yes) for a, b in pairs]
    if app.json_output:
        docs = [doc for doc, _ in outcomes]
        app.console.document(docs[0] if len(docs) == 1 and not all_secondaries else {"syncs": docs})
    else:
        for _, lines in outcomes:
            for line in lines:
                app.console.result(line)
    if not all(doc.get("ok", True) for doc, _ in outcomes):
        raise Reported(ExitCode.FAILED)


def _sync_pair(app: Context, src: str, dst: str, settings, budget, *, dry_run: bool,  # noqa: ANN001
               yes: bool) -> tuple[dict, list[str]]:
    """One source -> destination sync (or its dry run): its JSON document and its text lines."""
    from orchestrator.aws import AwsContext
    from orchestrator.cli.options import confirmer
    from orchestrator.registry import plan_registry_sync, sync_registry
    from orchestrator.registry.guards import PruneGuard

    ctx, residency = AwsContext(endpoint_url=app.endpoint_url), app.topology().residency
    listings = app.state.listing_record_path(app.env, src, dst)
    guard = PruneGuard(budget=budget, confirm=confirmer(yes), notify=app.notify, record_path=listings)
    versions = app.state.sync_versions_path(app.env, src, dst)
    app.state.pull(listings)  # the counts of the last complete listings (the sharp-drop rule), wherever taken
    app.state.pull(versions)  # what the last clean sync saw (change detection), wherever it ran
    from orchestrator.registry.retained import record_path

    app.state.pull(record_path(versions))  # the retained messages it left equal
    settings = _distrust_after_failed_verification(app, src, dst, settings)
    if dry_run:
        plan = plan_registry_sync(ctx, src, dst, settings=settings, state_path=versions, residency=residency,
                                  guard=guard)
        lines = [f"dry run {src} -> {dst}: {plan.total} changes"] + _counts(plan.counts)
        lines += [f"  first {kind}: {', '.join(items)}" for kind, items in plan.first.items() if items]
        lines += [f"  shadows kept: {plan.shadows_kept} newer in the destination"] if plan.shadows_kept else []
        return plan.to_json(), lines + [f"  warning: {w}" for w in plan.warnings]
    checkpoint = app.state.sync_checkpoint_path(app.env, src, dst)
    from orchestrator.registry.checkpoint import pull_checkpoint, push_checkpoint

    # one sync per region pair at a time, on any machine: the lease is taken before anything is
    # written (a live holder: exit 3, nothing written) and renewed while the sync runs
    with app.state.lease(app.state.sync_lock_path(app.env, src, dst),
                         f"registry sync {src} -> {dst} (env {app.env})") as lease:
        if lease.taken_over:
            app.notify(f"took over the expired lease of {lease.taken_over}")
        pull_checkpoint(app.state, checkpoint)  # a sync interrupted elsewhere resumes here
        try:
            result = sync_registry(ctx, src, dst, settings=settings, residency=residency, state_path=versions,
                                   checkpoint_path=checkpoint, progress=progress_bar(app, f"sync {src} -> {dst}"),
                                   guard=guard, checkpoint_store=lease.guard(app.state.push),
                                   state_store=lease.guard(app.state.push))
        finally:
            push_checkpoint(app.state, checkpoint)  # the header and the journal parts not yet stored
            app.state.push(listings)
            app.state.push(versions)
            app.state.push(record_path(versions))
        lease.check()  # lost while running (another run took it over): say so, exit 3
        _record_sync_verification(app, src, dst, result)
    checked = "" if result.things_checked is None else \
        f", {result.things_checked}/{result.things_total} things checked"
    lines = [f"sync {src} -> {dst}: {'ok' if result.ok else 'FAILED'}: {result.applied} applied, "
             f"{result.write_calls} write calls, {result.read_calls} read calls{checked}, {result.retries} retries, "
             f"{result.duration_s:.1f}s"]
    lines += _counts(result.counts) + _calls(result)
    lines += [f"  shadows kept: {result.shadows_kept} newer in the destination"] if result.shadows_kept else []
    lines += _verification_lines(result)
    lines += [f"  error: {e.op}: {e.code}: {e.message}" for e in result.errors[:20]]
    if len(result.errors) > 20:
        lines.append(f"  … and {len(result.errors) - 20} more errors (--json lists them all)")
    return result.to_json(), lines + [f"  warning: {w}" for w in result.warnings]


@command("verify")
@click.option("--from", "src", required=True, metavar="R1", help="Source region (the primary, usually).")
@click.option("--to", "dst", required=True, metavar="R2", help="Region compared with it (a secondary).")
@click.option("--no-shadows", is_flag=True, help="Compare the registry only, not device shadows.")
@click.option("--first", type=click.IntRange(0, 1000), default=5, show_default=True,
              help="Differences named per kind (--json and text); the counts are always complete.")
@click.option("--read-rate", type=click.FloatRange(0.1, 10000), default=None,
              help="Cap on every read API's calls per second [default: each API's quota].")
@click.option("--concurrency", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Calls in flight at once per region (each API still within its own quota).")
def verify(app: Context, src: str, dst: str, no_shadows: bool, first: int, read_rate: float | None,
           concurrency: int) -> None:
    """Compare two regions' registries kind by kind; read-only. Exit 0 on parity, 1 on difference.

    Things and attributes, types, groups and membership, certificates and status, thing-certificate
    attachments, policy documents (default versions, region in ARNs rewritten as the sync does),
    policy attachments, classic and named shadows, retained messages under the topology's
    `registry.retained_topics`, and the device-management plane (role aliases,
    CA certificates, job templates, provisioning templates, authorizers, indexing configuration,
    registry events on in R2). The outcome is recorded for `status`."""
    from orchestrator.aws import AwsContext
    from orchestrator.operations.verification import record_verification
    from orchestrator.registry import verify_registry
    from orchestrator.registry.guards import check_member_regions
    from orchestrator.registry.quotas import resolve_quotas

    topology = app.topology()
    if src == dst:
        raise InputRejected(f"--from and --to are the same region ({src})")
    check_member_regions(topology.regions, topology.residency, src, dst, topology.source)
    result = verify_registry(AwsContext(endpoint_url=app.endpoint_url), src, dst, shadows=not no_shadows,
                             first=first, concurrency=concurrency, read_rate=read_rate,
                             quotas=resolve_quotas(topology.quotas), residency=topology.residency,
                             retained_topics=topology.registry.retained_topics)
    record_verification(app.state, app.env, src, dst, source="registry verify", ok=result.equal,
                        differences=result.differences,
                        by_kind={k.kind: k.differences for k in result.kinds})
    _render(app, result, result.lines())
    if not result.equal:
        raise Reported(ExitCode.FAILED)


def _distrust_after_failed_verification(app: Context, src: str, dst: str, settings):  # noqa: ANN001, ANN202
    """The last verification of the pair found differences: the version record disagrees with the
    destination, so this run trusts none of it (every thing is read again)."""
    from dataclasses import replace

    from orchestrator.operations.verification import last_verification

    last = last_verification(app.state, app.env, src, dst)
    if last is None or last.ok:
        return settings
    return replace(settings, distrust=f"the last verification ({last.source}) found {last.differences} "
                                      "differences: every thing was read again")


def _record_sync_verification(app: Context, src: str, dst: str, result) -> None:  # noqa: ANN001
    from orchestrator.operations.verification import record_verification

    v = result.verification
    if v is None and result.ok:
        return
    record_verification(app.state, app.env, src, dst, source="registry sync", ok=result.ok,
                        differences=v.remaining if v is not None else len(result.errors) + result.blocked,
                        by_kind=dict(v.counts) if v is not None else {})


def _verification_lines(result) -> list[str]:  # noqa: ANN001
    out = [f"  note: {result.distrusted}"] if result.distrusted else []
    v = result.verification
    if v is None:
        return out
    if not v.reread:
        return [*out, "  verified: nothing to change (both regions as read by this run agree)"]
    superseded = f", {v.superseded} superseded by a later writer" if v.superseded else ""
    if v.ok:
        return [*out, f"  verified: read back equal ({v.things_reread} things' certificates, "
                      f"{v.shadows_reread} shadows read again{superseded})"]
    kinds = ", ".join(f"{k}={n}" for k, n in v.counts.items())
    return [*out, f"  NOT VERIFIED: {v.remaining} changes do not read back ({kinds})",
            *(f"    {item}" for item in v.first)]


@command("backup")
@click.option("--region", metavar="R", help="Region whose registry is snapshotted [default: the primary].")
@click.option("--dest", metavar="DIR|s3://bucket/prefix",
              help="Where backups go [default: $ORCHESTRATE_BACKUP_DEST, else the backup vault of the home "
                   "region's stack].")
@click.option("--skip-stack-state", is_flag=True, help="Registry only: no stack state exports.")
@click.option("--no-shadows", is_flag=True, help="Leave device shadows (classic and named) out.")
@click.option("--read-rate", type=click.FloatRange(0.1, 10000), default=None,
              help="Cap on every read API's calls per second [default: each API's quota].")
@click.option("--kms-key-id", metavar="KEY", help="SSE-KMS key for s3:// destinations [default: SSE-S3].")
@click.option("--signing-key", metavar="awskms:KEY|secretsmanager:SECRET",
              help="Key that signs the manifest [default: $ORCHESTRATE_BACKUP_SIGNING_KEY, else the key the "
                   "home region's stack made beside the vault].")
def backup(app: Context, region: str | None, dest: str | None, skip_stack_state: bool, no_shadows: bool,
           read_rate: float | None, kms_key_id: str | None, signing_key: str | None) -> None:
    """Snapshot the registry of R, its shadows, retained messages (under the topology's
    registry.retained_topics) and device-management plane, plus every stack's state export
    (secrets stay encrypted), signed.

    \b
    Examples:
      orchestrate registry backup                 the primary, to the home region's vault
      orchestrate registry backup --region eu-west-1 --dest ./backups --skip-stack-state
    """
    from orchestrator.aws import AwsContext
    from orchestrator.operations.backups import (
        backup_destination,
        check_destination,
        home_outputs,
        signing_key_spec,
    )
    from orchestrator.registry import backup_region
    from orchestrator.registry.quotas import resolve_quotas
    from orchestrator.stacks.graph import all_stacks

    topology = app.topology()
    region = region or topology.primary
    if region not in topology.regions:
        raise InputRejected(f"--region {region} is not a member region of {topology.source}")
    home = home_outputs(app)  # the vault and the signing key: one read of the home stack's outputs
    dest = check_destination(app, dest or backup_destination(app, home))
    signing_key = signing_key_spec(app, signing_key, home)
    exports = {}
    if not skip_stack_state:
        engine = app.engine()
        for ref in all_stacks(app.topology()):
            if engine.info(ref.name).deployed:
                exports[ref.name] = engine.export(ref.name)
    result = backup_region(AwsContext(endpoint_url=app.endpoint_url), app.env, region, dest,
                           stack_exports=exports, kms_key_id=kms_key_id, shadows=not no_shadows,
                           read_rate=read_rate, quotas=resolve_quotas(topology.quotas), signing_key=signing_key,
                           key_region=topology.home_region, retained_topics=topology.registry.retained_topics)
    retained = result.manifest.counts.get("retained_messages")
    _render(app, result, [f"backup of {region} written to {result.location} "
                          f"({len(exports)} stack exports, {result.manifest.counts.get('shadows', 0)} shadows"
                          + (f", {retained} retained messages" if retained is not None else "") + ")"])


@command("restore")
@click.option("--region", required=True, metavar="R", help="Region to rebuild the registry in.")
@click.option("--src", required=True, metavar="DIR|s3://…", help="A backup, or a location holding backups "
              "(the newest valid one by its signed creation time is used; unsigned or changed ones are "
              "skipped with a warning).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@_quota_options
@click.option("--overwrite", is_flag=True, help="Also change what exists (re-activate certificates, replace "
              "policy versions, re-attach) to match the backup; confirmed.")
@click.option("--signing-key", metavar="awskms:KEY|secretsmanager:SECRET",
              help="Key the backup's signature is verified with [default: $ORCHESTRATE_BACKUP_SIGNING_KEY, "
                   "else the key the home region's stack made beside the vault].")
@click.option("--allow-older", is_flag=True, help="Restore a backup older than the newest valid one (a "
              "rollback): says what it would re-activate, then asks.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
def restore(app: Context, region: str, src: str, dry_run: bool, rate: float | None, read_rate: float | None,
            quota_file: str | None, quota_overrides: tuple[str, ...], no_shadows: bool, concurrency: int,
            overwrite: bool, signing_key: str | None, allow_older: bool, yes: bool) -> None:
    """Rebuild a registry, its shadows and retained messages from a signed backup. Additive: what
    exists is left as it is (and listed). A backup older than the newest valid one is refused without --allow-older.

    \b
    Examples:
      orchestrate registry restore --region eu-central-1 --src ./backups --dry-run
      orchestrate registry restore --region eu-central-1 --src s3://vault/dev --yes
    """
    from orchestrator.aws import AwsContext
    from orchestrator.cli.options import confirmer
    from orchestrator.operations.backups import signing_key_spec
    from orchestrator.registry import plan_restore, restore_registry
    from orchestrator.registry.guards import RestoreGuard

    settings = _settings(app, prune=False, rate=rate, read_rate=read_rate, quota_file=quota_file,
                         quota_overrides=quota_overrides, concurrency=concurrency, no_shadows=no_shadows)
    topology = app.topology()
    ctx, residency = AwsContext(endpoint_url=app.endpoint_url), topology.residency
    signing_key = signing_key_spec(app, signing_key)
    if dry_run:
        plan = plan_restore(ctx, src, region, env=app.env, settings=settings, residency=residency,
                            guard=RestoreGuard(overwrite=overwrite, notify=app.notify), signing_key=signing_key,
                            key_region=topology.home_region)
        _render(app, plan, [f"dry run restore -> {region}: {plan.total} changes"] + _counts(plan.counts)
                + [f"  warning: {w}" for w in plan.warnings])
        return
    guard = RestoreGuard(overwrite=overwrite, confirm=confirmer(yes), notify=app.notify)
    result = restore_registry(ctx, src, region, env=app.env, settings=settings, residency=residency,
                              progress=progress_bar(app, f"restore -> {region}"), guard=guard,
                              signing_key=signing_key, key_region=topology.home_region, allow_older=allow_older)
    _render(app, result, [f"restore -> {region}: {'ok' if result.ok else 'FAILED'}: {result.applied} applied, "
                          f"{result.write_calls} write calls"] + _counts(result.counts) + _calls(result)
            + [f"  error: {e.op}: {e.code}: {e.message}" for e in result.errors[:20]]
            + [f"  warning: {w}" for w in result.warnings])
    if not result.ok:
        raise Reported(ExitCode.FAILED)


@command("replay")
@click.option("--from-dlq", "from_dlq", is_flag=True, required=True,
              help="Re-apply what continuous replication gave up on (its dead-letter queue).")
@click.option("--region", required=True, metavar="R",
              help="Region whose replication function's dead letters to replay.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def replay(app: Context, from_dlq: bool, region: str, yes: bool) -> None:
    """Re-read each dead letter's batch from the env's own stream and re-read its things and shadows
    from their origin; what fails again stays; messages naming another stream are refused (exit 1)."""
    from orchestrator.cli.options import confirm
    from orchestrator.operations.replication import (
        check_replay_region,
        count_dead_letters,
        registry_table,
        replay_from_dlq,
    )
    from orchestrator.registry.replicate import ReplayReport
    from orchestrator.stacks.graph import replication_stack

    topology, ctx = app.topology(), app.aws()
    check_replay_region(topology, region)
    table = registry_table(app.engine().outputs(replication_stack(topology).name), app.env)
    waiting = count_dead_letters(ctx, app.env, region)
    if waiting == 0:
        _render(app, ReplayReport(region, 0, 0, 0, 0, 0), [f"replay {region}: no dead letters"])
        return
    confirm(f"re-apply {waiting} dead-lettered replication batch(es) to the registry of {region}",
            expected=region, assume_yes=yes)
    result = replay_from_dlq(ctx, topology, region, table)
    line = (f"replay {region}: {'ok' if result.ok else 'INCOMPLETE'}: {result.replayed}/{result.messages} dead "
            f"letters re-applied ({result.records} records, {result.failed_records} failed again, "
            f"{result.expired} no longer in the stream, {result.refused} refused: not this environment's "
            f"stream, or an untrusted or unreadable record)")
    _render(app, result, [line])
    if not result.ok:
        raise Reported(ExitCode.FAILED)



@command("reconcile")
@click.option("--start", is_flag=True, required=True,
              help="Start each large secondary's full reconciliation in AWS (its Step Functions state machine).")
@click.option("--cli-below", type=click.IntRange(0), default=200_000, show_default=True, metavar="N",
              help="Secondaries with fewer things (the last reconciliation's count) keep the CLI path: "
                   "a --full sync of N things fits one 6 h CI job at 10 ListThingPrincipals/s.")
def reconcile(app: Context, start: bool, cli_below: int) -> None:
    """For each secondary: at or above --cli-below things, with the
    state machine iot-<env>-reconcile-<region> deployed, start an execution named full-<UTC date>
    and print its ARN; an execution already running (the daily schedule's, or an earlier start) is
    reported and no second one is started. Any other secondary is reported as "cli": run
    `orchestrate registry sync --from <primary> --to <region> --full` for it (the scheduled job does).
    The table and the machine are read in the secondary's account: through the role the topology's
    `accounts:` names for it, else with the caller's own credentials.

    \b
    Examples:
      orchestrate registry reconcile --start
      orchestrate registry reconcile --start --cli-below 0 --json   every secondary with a machine
    """
    from orchestrator.operations.reconcile_start import start_reconciliations

    topology, ctx = app.topology(), app.aws()
    found = start_reconciliations(ctx, topology, cli_below=cli_below)
    if app.json_output:
        app.console.document({"from": topology.primary, "cli_below": cli_below,
                              "reconciliations": [r.to_json() for r in found]})
        return
    if not found:
        app.console.result(f"env {topology.env} has no secondaries: nothing to start")
    for r in found:
        app.console.result(r.line())
