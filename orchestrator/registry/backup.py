"""Registry backups: a snapshot plus the stacks' state exports, in a directory or on S3.

Layout, under DEST (a directory or `s3://bucket/prefix`):

    <env>/<region>/<UTC timestamp>/registry.json        the RegistrySnapshot (PEMs, no keys; the
                                                        classic and named shadows' desired and
                                                        reported state)
                                   stacks/<stack>.json  each stack's state export, as given
                                   manifest.json        env, region, time, counts, format
                                                        version, file digests
                                   manifest.sig         written last: the manifest's signature
                                                        (`orchestrator.registry.signing`)

A backup without a manifest is incomplete and ignored. Stack exports are written exactly as
received: secrets in them stay encrypted by the stack's secrets provider; nothing here decrypts
or inspects them. S3 objects are written with server-side encryption (SSE-S3, or SSE-KMS when
a key is given).

`restore_backup` rebuilds a registry into a region (empty or partial) through the same plan/apply
as `registry sync`, with the snapshot as the source, so it is idempotent and resumable;
`plan_backup_restore` says what it would change, and changes nothing. Local files are written
through `orchestrator.state.atomic_write_text` (temp file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from orchestrator.errors import GuardRefused, InputRejected, OrchestrateError
from orchestrator.registry.calls import Caller
from orchestrator.registry.guards import SHOWN, PruneGuard, RestoreGuard, additive
from orchestrator.registry.signing import SIGNATURE, Signer, certificate_id, sign_document, verify_document
from orchestrator.registry.snapshot import RegistrySnapshot
from orchestrator.registry.sync import (
    Action,
    Kind,
    SyncOp,
    SyncOptions,
    SyncPlan,
    SyncPlanSummary,
    SyncReport,
    plan_snapshot_sync,
    sync_snapshot,
)
from orchestrator.state import atomic_write_text

BACKUP_FORMAT = 1
MANIFEST = "manifest.json"
REGISTRY = "registry.json"
PLANE = "plane.json"  # the device-management plane (orchestrator/registry/plane.py), when backed up
RETAINED = "retained.json"  # MQTT retained messages under the topology's prefixes (orchestrator/registry/retained.py)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_ENV_RE = re.compile(r"[a-z][a-z0-9-]{0,30}\Z")
_STACK_RE = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._-]{1,200}\Z")


@dataclass(frozen=True)
class BackupManifest:
    format_version: int
    env: str
    region: str
    created_at: datetime
    counts: Mapping[str, int]
    stacks: tuple[str, ...]
    files: Mapping[str, str] = field(default_factory=dict)  # relative path -> sha256

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "env": self.env,
            "region": self.region,
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "counts": dict(self.counts),
            "stacks": list(self.stacks),
            "files": dict(self.files),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str) -> BackupManifest:
        try:
            version = data["format_version"]
            if version != BACKUP_FORMAT:
                raise InputRejected(f"{source}: backup format {version!r} is not supported "
                                    f"(expected {BACKUP_FORMAT})")
            created = datetime.strptime(data["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            return cls(version, str(data["env"]), str(data["region"]), created,
                       {str(k): int(v) for k, v in data["counts"].items()},
                       tuple(data.get("stacks", ())), dict(data.get("files", {})))
        except InputRejected:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputRejected(f"{source}: malformed backup manifest ({exc!r})") from None


@dataclass(frozen=True)
class BackupResult:
    location: str
    manifest: BackupManifest

    def to_json(self) -> dict[str, Any]:
        return {"kind": "registry-backup", "location": self.location, **self.manifest.to_json()}


# -- storage -------------------------------------------------------------------------------------

class _Store(Protocol):
    def url(self, rel: str) -> str: ...
    def put(self, rel: str, data: bytes) -> None: ...
    def get(self, rel: str) -> bytes: ...
    def exists(self, rel: str) -> bool: ...
    def manifests(self) -> list[str]: ...


class _DirStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, rel: str) -> str:
        return str(self.root / rel) if rel else str(self.root)

    def put(self, rel: str, data: bytes) -> None:
        # `data` is `_dumps` output (UTF-8 JSON); the manifest's digests are of these bytes
        atomic_write_text(self.root / rel, data.decode("utf-8"))

    def get(self, rel: str) -> bytes:
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            raise InputRejected(f"{self.url(rel)}: not found") from None

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def manifests(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(str(p.relative_to(self.root).as_posix()) for p in self.root.rglob(MANIFEST))


class _S3Store:
    def __init__(self, client: Any, bucket: str, prefix: str, kms_key_id: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.kms_key_id = kms_key_id

    def _key(self, rel: str) -> str:
        return "/".join(p for p in (self.prefix, rel) if p)

    def url(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self._key(rel)}"

    def put(self, rel: str, data: bytes) -> None:
        extra: dict[str, Any] = {"ServerSideEncryption": "AES256"}
        if self.kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        # a checksum on every write, whatever the SDK's default: the vault is under Object Lock, and
        # S3 refuses a PutObject there without Content-MD5 or a checksum (and S3 checks it)
        self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data,
                               ContentType="application/json", ChecksumAlgorithm="SHA256", **extra)

    def get(self, rel: str) -> bytes:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read())
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise InputRejected(f"{self.url(rel)}: not found") from None
            raise

    def exists(self, rel: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
            return True
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def manifests(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key == f"{base}{MANIFEST}" or key.endswith(f"/{MANIFEST}"):
                    found.append(key[len(base):])
        return sorted(found)


def parse_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InputRejected(f"{url}: an S3 destination needs a bucket (s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def _store(location: str | Path, s3_client: Any | None, kms_key_id: str | None = None) -> _Store:
    text = str(location)
    if is_s3(text):
        if s3_client is None:
            raise InputRejected(f"{text}: an S3 client is needed for an S3 location")
        bucket, prefix = parse_s3_url(text)
        return _S3Store(s3_client, bucket, prefix, kms_key_id)
    return _DirStore(Path(text))


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")


# -- backup ----------------------------------------------------------------------------------------

def backup(snapshot: RegistrySnapshot, stack_exports: Mapping[str, dict[str, Any]], dest: str | Path, *,
           env: str, now: datetime | None = None, s3_client: Any | None = None,
           kms_key_id: str | None = None, signer: Signer | None = None,
           plane: Mapping[str, Any] | None = None, retained: Mapping[str, Any] | None = None) -> BackupResult:
    """Write the snapshot and the stack exports under `dest/<env>/<region>/<UTC timestamp>/`;
    with `signer`, the manifest's signature last (restores verify it before anything else)."""
    if not _ENV_RE.fullmatch(env):
        raise InputRejected(f"environment name {env!r} must match {_ENV_RE.pattern}")
    for name in stack_exports:
        if not _STACK_RE.fullmatch(name):
            raise InputRejected(f"stack name {name!r} cannot be a backup file name")
    store = _store(dest, s3_client, kms_key_id)
    created = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    base = f"{env}/{snapshot.region}/{created.strftime(_TIMESTAMP)}"
    candidate, n = base, 1
    while store.exists(f"{candidate}/{MANIFEST}") or store.exists(f"{candidate}/{REGISTRY}"):
        n += 1
        candidate = f"{base}-{n}"
    base = candidate

    files: dict[str, str] = {}

    def put(rel: str, data: bytes) -> None:
        store.put(f"{base}/{rel}", data)
        files[rel] = hashlib.sha256(data).hexdigest()

    put(REGISTRY, _dumps(snapshot.to_json()))
    if plane is not None:
        put(PLANE, _dumps(plane))
    counts = dict(snapshot.counts())
    if retained is not None:
        put(RETAINED, _dumps(retained))
        counts["retained_messages"] = len(retained.get("messages") or ())
    for name, export in sorted(stack_exports.items()):
        put(f"stacks/{name}.json", _dumps(export))
    manifest = BackupManifest(BACKUP_FORMAT, env, snapshot.region, created, counts,
                              tuple(sorted(stack_exports)), files)
    manifest_bytes = _dumps(manifest.to_json())
    store.put(f"{base}/{MANIFEST}", manifest_bytes)
    if signer is not None:
        store.put(f"{base}/{SIGNATURE}", sign_document(signer, manifest_bytes))
    return BackupResult(store.url(base), manifest)


def _candidates(store: _Store, env: str | None, region: str | None) -> list[str]:
    """Backup directories (relative) under the store that hold a manifest, optionally filtered by
    path. In no particular order: only the signed manifests say which is newest."""
    dirs = []
    for rel in store.manifests():
        parent = PurePosixPath(rel).parent
        parts = parent.parts
        if env is not None and len(parts) >= 3 and parts[-3] != env:
            continue
        if region is not None and len(parts) >= 2 and parts[-2] != region:
            continue
        dirs.append(str(parent) if str(parent) != "." else "")
    return dirs


def _prefix(rel_dir: str) -> str:
    return f"{rel_dir}/" if rel_dir else ""


def _parse_manifest(store: _Store, rel_dir: str, raw: bytes) -> BackupManifest:
    rel = _prefix(rel_dir) + MANIFEST
    try:
        data = json.loads(raw)
    except ValueError:
        raise InputRejected(f"{store.url(rel)}: manifest is not JSON") from None
    if not isinstance(data, dict):
        raise InputRejected(f"{store.url(rel)}: manifest is not a JSON object")
    return BackupManifest.from_json(data, source=store.url(rel))


def _read_manifest(store: _Store, rel_dir: str) -> BackupManifest:
    return _parse_manifest(store, rel_dir, store.get(_prefix(rel_dir) + MANIFEST))


@dataclass(frozen=True)
class _Candidate:
    rel_dir: str
    manifest: BackupManifest  # as the manifest claims it: trusted only once its signature verifies
    raw: bytes


def _verify(store: _Store, cand: _Candidate, verifier: Signer | None) -> BackupManifest:
    """The candidate's manifest once its signature verifies (without `verifier`: as read)."""
    if verifier is None:
        return cand.manifest
    sig_rel = _prefix(cand.rel_dir) + SIGNATURE
    signature = store.get(sig_rel) if store.exists(sig_rel) else None
    verify_document(verifier, cand.raw, signature, where=store.url(cand.rel_dir))
    return cand.manifest


def _read_candidates(store: _Store, env: str | None, region: str | None,
                     warnings: list[str]) -> list[_Candidate]:
    """Every backup under `store` of `env`/`region` whose manifest can be read, newest first by the
    time its manifest states (signed, once verified); the folder name is never trusted. What
    cannot be read (a truncated or malformed manifest) is skipped with a warning."""
    found: list[_Candidate] = []
    for rel_dir in _candidates(store, env, region):
        try:
            raw = store.get(_prefix(rel_dir) + MANIFEST)
            manifest = _parse_manifest(store, rel_dir, raw)
        except InputRejected as exc:
            warnings.append(f"skipped {store.url(rel_dir)}: {exc.message}")
            continue
        if (env is not None and manifest.env != env) or (region is not None and manifest.region != region):
            warnings.append(f"skipped {store.url(rel_dir)}: its manifest is of env {manifest.env}, region "
                            f"{manifest.region}")
            continue
        name = PurePosixPath(rel_dir).name
        stamp = manifest.created_at.strftime(_TIMESTAMP)
        if rel_dir and not re.fullmatch(rf"{stamp}(-\d+)?", name):
            warnings.append(f"{store.url(rel_dir)} states it was created at {manifest.to_json()['created_at']}, "
                            "not what its folder name says (a copy?): it is ordered by the stated time")
        found.append(_Candidate(rel_dir, manifest, raw))
    return sorted(found, key=lambda c: (c.manifest.created_at, c.rel_dir), reverse=True)


def _check_content(store: _Store, rel_dir: str, manifest: BackupManifest) -> RegistrySnapshot:
    """The registry snapshot, once it matches the manifest's digest and every certificate's PEM its id."""
    prefix = _prefix(rel_dir)
    data = store.get(prefix + REGISTRY)
    expected = manifest.files.get(REGISTRY)
    if not expected:
        raise InputRejected(f"{store.url(prefix + MANIFEST)}: lists no digest for {REGISTRY}; nothing was restored")
    if hashlib.sha256(data).hexdigest() != expected:
        raise InputRejected(f"{store.url(prefix + REGISTRY)}: content does not match the manifest's digest; "
                           "nothing was restored")
    try:
        payload = json.loads(data)
    except ValueError:
        raise InputRejected(f"{store.url(prefix + REGISTRY)}: not JSON") from None
    snapshot = RegistrySnapshot.from_json(payload, source=store.url(prefix + REGISTRY))
    for cert in snapshot.certificates:
        if cert.pem is not None and certificate_id(cert.pem) != cert.id:
            raise InputRejected(f"{store.url(prefix + REGISTRY)}: certificate {cert.id[:12]}…'s PEM has id "
                               f"{certificate_id(cert.pem)[:12]}…: the backup was changed; nothing was restored")
    return snapshot


def _newest_valid(store: _Store, candidates: list[_Candidate], verifier: Signer | None,
                  warnings: list[str], *, after: datetime | None = None, content: bool = True,
                  errors: list[OrchestrateError] | None = None,
                  ) -> tuple[_Candidate, RegistrySnapshot | None] | None:
    """The newest candidate (by stated time) whose signature verifies (and, with `content`, whose
    files match their digests); those above it that do not are skipped with a warning (and their
    errors kept in `errors`). With `after`, only candidates stated newer than it are considered."""
    for cand in candidates:
        if after is not None and cand.manifest.created_at <= after:
            return None
        try:
            _verify(store, cand, verifier)
            snapshot = _check_content(store, cand.rel_dir, cand.manifest) if content else None
        except OrchestrateError as exc:  # unsigned (GuardRefused), or changed / truncated (InputRejected)
            warnings.append(f"skipped {store.url(cand.rel_dir)}: {exc.message}")
            if errors is not None:
                errors.append(exc)
            continue
        return cand, snapshot
    return None


@dataclass(frozen=True)
class LoadedBackup:
    location: str
    manifest: BackupManifest
    snapshot: RegistrySnapshot
    newer: tuple[str, BackupManifest] | None = None  # a valid backup of the same series signed later
    warnings: tuple[str, ...] = ()  # backups skipped on the way (unsigned, changed, unreadable)

    def stack_export(self, name: str, *, s3_client: Any | None = None) -> dict[str, Any]:
        store = _store(self.location, s3_client)
        return dict(json.loads(store.get(f"stacks/{name}.json")))

    def extra(self, rel: str, *, s3_client: Any | None = None) -> Any | None:
        """A further JSON file of the backup (None: not in it), once it matches the signed manifest's digest."""
        expected = self.manifest.files.get(rel)
        if expected is None:
            return None
        data = _store(self.location, s3_client).get(rel)
        if hashlib.sha256(data).hexdigest() != expected:
            raise InputRejected(f"{self.location}/{rel}: content does not match the manifest's digest; "
                                "nothing was restored")
        return json.loads(data)

    def describe(self) -> str:
        return f"{self.location} (created {self.manifest.to_json()['created_at']})"

    def rollback(self) -> str | None:
        """Why restoring this backup rolls the registry back (None: it is the newest valid one)."""
        if self.newer is None:
            return None
        where, newer = self.newer
        return (f"backup {self.describe()} is older than the newest valid backup {where} "
                f"(created {newer.to_json()['created_at']})")


def _parent(location: str) -> str | None:
    """The location holding `location` (a backup's siblings: `<env>/<region>/`), None at a root."""
    if is_s3(location):
        bucket, prefix = parse_s3_url(location)
        return f"s3://{bucket}/{prefix.rpartition('/')[0]}" if prefix else None
    path = Path(location)
    return str(path.parent) if path.parent != path else None


def load_backup(src: str | Path, *, env: str | None = None, region: str | None = None,
                s3_client: Any | None = None, verifier: Signer | None = None) -> LoadedBackup:
    """A backup: `src` itself if it holds a manifest, else the newest valid backup below it.

    Newest is by the creation time in the signed manifest, never by folder name: a backup copied
    to a newer-looking folder keeps its place. Below a location, a backup that is unsigned (killed
    before its signature), whose signature does not verify, or whose files do not match their
    digests is skipped with a warning, and the next valid one is used. `src` naming one backup is
    verified as it is (exit 4 unsigned, exit 2 changed) and its siblings are read for a valid
    backup signed later (`LoadedBackup.newer`: restoring it is a rollback).

    With `verifier`, the manifest's signature is verified before anything else is read; every
    file is then checked against the manifest's digest (a file without one is refused), and every
    certificate's id against the SHA-256 of its PEM's DER bytes."""
    store = _store(src, s3_client)
    warnings: list[str] = []
    if store.exists(MANIFEST):  # one backup, named
        one = _Candidate("", _read_manifest(store, ""), store.get(MANIFEST))
        manifest = _verify(store, one, verifier)
        snapshot = _check_content(store, "", manifest)
        newer = None
        parent = _parent(str(src))
        if parent is not None:
            siblings = _store(parent, s3_client)
            others = [c for c in _read_candidates(siblings, manifest.env, manifest.region, warnings)
                      if c.raw != one.raw]
            found = _newest_valid(siblings, others, verifier, warnings, after=manifest.created_at, content=False)
            if found is not None:
                newer = (siblings.url(found[0].rel_dir), found[0].manifest)
        return LoadedBackup(store.url(""), manifest, snapshot, newer, tuple(warnings))
    errors: list[OrchestrateError] = []
    chosen = _newest_valid(store, _read_candidates(store, env, region, warnings), verifier, warnings,
                           errors=errors)
    if chosen is None and errors:  # nothing valid: refused for the newest one's reason (exit 4 unsigned)
        raise errors[0]
    if chosen is None:
        what = " ".join(x for x in (f"env {env}" if env else "", f"region {region}" if region else "") if x)
        skipped = f" ({len(warnings)} skipped: {warnings[0]})" if warnings else ""
        raise InputRejected(f"{src}: no complete registry backup found{' for ' + what if what else ''}{skipped}")
    cand, snap = chosen
    assert snap is not None
    return LoadedBackup(store.url(cand.rel_dir), cand.manifest, snap, None, tuple(warnings))


# -- rolling back ----------------------------------------------------------------------------------

def _reactivations(ops: Sequence[SyncOp], src: RegistrySnapshot, dst: RegistrySnapshot) -> list[str]:
    """What applying `ops` gives back that the destination no longer grants: certificates made
    ACTIVE, policies re-created or set back, attachments and memberships restored."""
    out: list[str] = []
    for op in ops:
        kind, action = op.kind, op.action
        if kind is Kind.CERTIFICATE and op.params.get("status") == "ACTIVE":
            before = dst.certificates_by_id.get(op.name)
            state = "absent" if before is None else before.status
            out.append(f"certificate {op.name[:12]}… ACTIVE again ({state} in {dst.region})")
        elif kind is Kind.POLICY and action is Action.CREATE:
            out.append(f"policy {op.name} created again (absent in {dst.region})")
        elif kind is Kind.POLICY and action is Action.UPDATE:
            out.append(f"policy {op.name} set back to the backup's document")
        elif kind in (Kind.POLICY_ATTACHMENT, Kind.THING_PRINCIPAL, Kind.GROUP_MEMBERSHIP) \
                and action is Action.CREATE:
            out.append(op.describe() + " again")
    return out


@dataclass(frozen=True)
class BackupRestoreGuard(RestoreGuard):
    """`RestoreGuard` that first says which backups were skipped and, for a backup older than the
    newest valid one, what the restore would re-activate, before the plan is shown and confirmed."""

    notes: tuple[str, ...] = ()
    rollback: str | None = None

    def check(self, src: RegistrySnapshot, dst: RegistrySnapshot, plan: SyncPlan) -> SyncPlan:
        from dataclasses import replace

        extra = [f"warning: {n}" for n in self.notes]
        if self.rollback is not None:
            effective = plan.ops if self.overwrite else additive(plan)[0].ops
            effects = _reactivations(effective, src, dst)
            head = (f"{self.rollback}: restoring it would re-activate {len(effects)} item(s) in {dst.region}"
                    + ("" if self.overwrite else " (additive: what exists there stays as it is)"))
            extra.append(head + (":" if effects else ""))
            extra += [f"  {e}" for e in effects[:SHOWN]]
            if len(effects) > SHOWN:
                extra.append(f"  … and {len(effects) - SHOWN} more")
            plan = replace(plan, warnings=(*plan.warnings, head))
        plan = replace(plan, warnings=(*plan.warnings, *self.notes))
        if self.notify is not None:
            for line in extra:
                self.notify(line)
        return super().check(src, dst, plan)


def _guard_for(loaded: LoadedBackup, options: SyncOptions, *, allow_older: bool, dry_run: bool) -> SyncOptions:
    """`options` whose guard speaks for the backup chosen; a rollback without `allow_older` is
    refused (exit 4) before anything is read from the destination, except in a dry run."""
    from dataclasses import fields, replace

    reason = loaded.rollback()
    if reason is not None and not (allow_older or dry_run):
        raise GuardRefused(f"{reason}: a restore would roll the registry back; nothing was restored",
                           hint="restore the newest backup (pass the location holding the backups), or pass "
                                "--allow-older to roll back (it says what comes back before asking)")
    inner = options.guard
    if isinstance(inner, PruneGuard):  # a prune-only guard: restore with it as the prune step
        inner = RestoreGuard(prune=inner)
    base = {f.name: getattr(inner, f.name) for f in fields(RestoreGuard)} if inner is not None else {}
    return replace(options, guard=BackupRestoreGuard(**base, notes=loaded.warnings, rollback=reason))


def plan_backup_restore(src: str | Path, dst_client: Any, *, options: SyncOptions | None = None,
                        env: str | None = None, region: str | None = None, s3_client: Any | None = None,
                        dst_caller: Caller | None = None, dst_data: Any | None = None,
                        verifier: Signer | None = None, then: Callable[[Any, Any], Any] | None = None,
                        retained: Callable[[Any, Any], Any] | None = None) -> SyncPlanSummary:
    """What `restore_backup` would change in the destination region (nothing is written there);
    an older backup is planned too, its warnings saying what it would re-activate."""
    loaded = load_backup(src, env=env, region=region, s3_client=s3_client, verifier=verifier)
    opts = _guard_for(loaded, options or SyncOptions(), allow_older=True, dry_run=True)
    extra = loaded.extra(PLANE, s3_client=s3_client) if then else None
    carried = _retained(loaded, s3_client) if retained else None
    summary = plan_snapshot_sync(loaded.snapshot, dst_client, opts, dst_caller=dst_caller, dst_data=dst_data)
    summary = then(extra, summary) if then else summary
    return retained(carried, summary) if retained else summary


def restore_backup(src: str | Path, dst_client: Any, *, options: SyncOptions | None = None,
                   env: str | None = None, region: str | None = None, s3_client: Any | None = None,
                   dst_caller: Caller | None = None, dst_data: Any | None = None,
                   verifier: Signer | None = None, allow_older: bool = False,
                   then: Callable[[Any, Any], Any] | None = None,
                   retained: Callable[[Any, Any], Any] | None = None) -> SyncReport:
    """Rebuild the backed-up registry (and, given `dst_data`, its shadows) in the destination
    region (idempotent, resumable). A backup older than the newest valid one is refused (exit 4)
    unless `allow_older`."""
    loaded = load_backup(src, env=env, region=region, s3_client=s3_client, verifier=verifier)
    opts = _guard_for(loaded, options or SyncOptions(), allow_older=allow_older, dry_run=False)
    extra = loaded.extra(PLANE, s3_client=s3_client) if then else None  # checked before anything is written
    carried = _retained(loaded, s3_client) if retained else None  # so are the retained messages
    report = sync_snapshot(loaded.snapshot, dst_client, opts, dst_caller=dst_caller, dst_data=dst_data)
    report = then(extra, report) if then else report
    return retained(carried, report) if retained else report


def _retained(loaded: LoadedBackup, s3_client: Any | None) -> Any | None:
    """The backup's retained messages (None: it has none), once their file matches the signed
    manifest's digest and the messages their own digest."""
    from orchestrator.registry.retained import RetainedSnapshot

    data = loaded.extra(RETAINED, s3_client=s3_client)
    if data is None:
        return None
    try:
        return RetainedSnapshot.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputRejected(f"{loaded.location}/{RETAINED}: unreadable retained messages ({exc}); "
                            "nothing was restored") from None


def latest_backup_age(dest: str | Path, *, env: str | None = None, region: str | None = None,
                      now: datetime | None = None, s3_client: Any | None = None,
                      verifier: Signer | None = None) -> timedelta | None:
    """Age of the newest backup under `dest` by the same rule as a restore (None: there is none):
    ordered by the manifests' creation time, and with `verifier` the newest whose signature
    verifies (the files' digests are a restore's to check: status reads manifests only)."""
    store = _store(dest, s3_client)
    found = _newest_valid(store, _read_candidates(store, env, region, []), verifier, [], content=False)
    if found is None:
        return None
    return (now or datetime.now(timezone.utc)) - found[0].manifest.created_at
