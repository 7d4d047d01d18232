"""Registry backups, once per environment: the newest is recent and signed, the vault is outside
the primary and inside residency, and the newest valid backup restores (its manifest's signature
and every file's digest verify, as `registry restore` checks them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrator.readiness.model import Scope, Verdict, not_ready, ready, rule, unknown
from orchestrator.readiness.probe import Probe, aws_read

BACKUP_FIX = "orchestrate registry backup --region {primary} --dest {dest}"


def _dest(probe: Probe) -> str | None:
    return probe.backup_dest


def _s3(probe: Probe, dest: str) -> Any:
    from orchestrator.registry.backup import is_s3

    if not is_s3(dest):
        return None
    return probe.client("s3", vault_region(probe) or probe.topology.backup_region or probe.topology.home_region)


def vault_region(probe: Probe) -> str | None:
    from orchestrator.registry.backup import is_s3, parse_s3_url

    dest = _dest(probe)
    if not dest or not is_s3(dest):
        return None
    bucket = parse_s3_url(dest)[0]

    def read() -> str | None:
        got = aws_read(f"GetBucketLocation {bucket}", lambda: probe.client("s3", "us-east-1")
                       .get_bucket_location(Bucket=bucket))
        return str(got.get("LocationConstraint") or "us-east-1")
    return probe.once(("vault-region", bucket), read)


def _signer(probe: Probe) -> Any:
    from orchestrator.registry.signing import signer_from_spec

    spec = probe.signing_key
    if not spec:
        return None
    ref = spec.partition(":")[2]
    parts = ref.split(":")
    region = parts[3] if ref.startswith("arn:") and len(parts) > 3 else probe.topology.home_region
    return signer_from_spec(spec, kms=lambda: probe.client("kms", region),
                            secrets=lambda: probe.client("secretsmanager", region))


def _ages(probe: Probe) -> tuple[timedelta | None, timedelta | None]:
    """(newest backup of the env whatever its signature, newest whose signature verifies)."""
    from orchestrator.registry.backup import latest_backup_age

    def read() -> tuple[timedelta | None, timedelta | None]:
        dest = _dest(probe)
        assert dest
        s3 = _s3(probe, dest)
        signer = _signer(probe)
        newest = aws_read(f"backups in {dest}", lambda: latest_backup_age(dest, env=probe.env, now=probe.now,
                                                                          s3_client=s3))
        signed = aws_read(f"signed backups in {dest}", lambda: latest_backup_age(
            dest, env=probe.env, now=probe.now, s3_client=s3, verifier=signer)) if signer else None
        return newest, signed
    return probe.once("backup-ages", read)


def _no_dest() -> Verdict:
    return not_ready("no backup destination (the home stack exports no vault, ORCHESTRATE_BACKUP_DEST unset)",
                     "set backup_region in the topology and orchestrate up, or set ORCHESTRATE_BACKUP_DEST")


def _fix(probe: Probe) -> str:
    return BACKUP_FIX.format(primary=probe.topology.primary, dest=_dest(probe))


@rule("backups.age", "backups", "the newest valid backup is recent", scope=Scope.ENV)
def age(probe: Probe, _: str) -> Verdict:
    if not _dest(probe):
        return _no_dest()
    newest, signed = _ages(probe)
    found = signed if probe.signing_key else newest
    if found is None:
        return not_ready(f"no {'signed ' if probe.signing_key else ''}backup of env {probe.env} in {_dest(probe)}",
                         _fix(probe))
    hours = found.total_seconds() / 3600
    if hours > probe.settings.max_backup_age_h:
        return not_ready(f"newest valid backup {hours:.1f} h old (> {probe.settings.max_backup_age_h:g} h)",
                         _fix(probe))
    return ready(f"newest valid backup {hours:.1f} h old")


@rule("backups.signed", "backups", "the newest backup is signed and its signature verifies", scope=Scope.ENV)
def signed(probe: Probe, _: str) -> Verdict:
    if not _dest(probe):
        return _no_dest()
    if not probe.signing_key:
        return not_ready("no signing key: backups cannot be verified before a restore",
                         "set backup_region (the home stack creates the key) or ORCHESTRATE_BACKUP_SIGNING_KEY")
    newest, good = _ages(probe)
    if newest is None:
        return not_ready("no backup at all", _fix(probe))
    if good is None or good > newest:
        return not_ready(f"the newest backup ({newest.total_seconds() / 3600:.1f} h old) is unsigned or its "
                         f"signature does not verify"
                         + (f"; the newest valid one is {good.total_seconds() / 3600:.1f} h old" if good else ""),
                         _fix(probe))
    return ready("the newest backup's signature verifies")


@rule("backups.region", "backups", "the vault is outside the primary and inside residency", scope=Scope.ENV)
def region(probe: Probe, _: str) -> Verdict:
    dest = _dest(probe)
    if not dest:
        return _no_dest()
    where = vault_region(probe)
    if where is None:
        return not_ready(f"{dest} is a local directory: unreachable from another machine during an outage",
                         "set backup_region in the topology, then orchestrate up")
    if where == probe.topology.primary:
        return not_ready(f"the vault is in the primary {where}", "set backup_region to another residency region")
    residency = probe.topology.residency
    if residency and where not in residency:
        return not_ready(f"the vault is in {where}, outside residency {', '.join(residency)}",
                         "set backup_region to a residency region")
    return ready(f"vault in {where}")


@rule("backups.restorable", "backups", "the newest valid backup restores (signature and digests verify)",
      scope=Scope.ENV)
def restorable(probe: Probe, _: str) -> Verdict:
    from orchestrator.errors import OrchestrateError
    from orchestrator.registry.backup import load_backup

    dest = _dest(probe)
    if not dest:
        return _no_dest()
    signer = _signer(probe)
    if signer is None:
        return not_ready("no signing key: a restore would refuse every backup", "see backups.signed")
    try:
        loaded = load_backup(dest, env=probe.env, s3_client=_s3(probe, dest), verifier=signer)
    except OrchestrateError as exc:
        return not_ready(exc.one_line(), _fix(probe))
    except Exception as exc:  # noqa: BLE001 - an unreadable store is evidence, not a crash
        return unknown(f"{type(exc).__name__}")
    snap = loaded.snapshot
    return ready(f"{loaded.describe()}: {len(snap.things)} things, {len(snap.certificates)} certificates verify")
