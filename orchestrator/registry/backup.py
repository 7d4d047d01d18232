"""Registry backups: a snapshot plus the stacks' state exports, in a directory or on S3.

Layout, under DEST (a directory or `s3://bucket/prefix`):

    <env>/<region>/<UTC timestamp>/registry.json        the RegistrySnapshot (PEMs, no keys; the
                                                        classic and named shadows' desired and
                                                        reported state)
                                   stacks/<stack>.json  each stack's state export, as given
                                   manifest.json        written last: env, region, time,
                                                        counts, format version, file digests

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from orchestrator.errors import InputRejected
from orchestrator.registry.calls import Caller
from orchestrator.registry.snapshot import RegistrySnapshot
from orchestrator.registry.sync import (
    SyncOptions,
    SyncPlanSummary,
    SyncReport,
    plan_snapshot_sync,
    sync_snapshot,
)
from orchestrator.state import atomic_write_text

BACKUP_FORMAT = 1
MANIFEST = "manifest.json"
REGISTRY = "registry.json"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_ENV_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_STACK_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


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
        self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data,
                               ContentType="application/json", **extra)

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
           kms_key_id: str | None = None) -> BackupResult:
    """Write the snapshot and the stack exports under `dest/<env>/<region>/<UTC timestamp>/`."""
    if not _ENV_RE.match(env):
        raise InputRejected(f"environment name {env!r} must match {_ENV_RE.pattern}")
    for name in stack_exports:
        if not _STACK_RE.match(name):
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
    for name, export in sorted(stack_exports.items()):
        put(f"stacks/{name}.json", _dumps(export))
    manifest = BackupManifest(BACKUP_FORMAT, env, snapshot.region, created, snapshot.counts(),
                              tuple(sorted(stack_exports)), files)
    store.put(f"{base}/{MANIFEST}", _dumps(manifest.to_json()))
    return BackupResult(store.url(base), manifest)


@dataclass(frozen=True)
class LoadedBackup:
    location: str
    manifest: BackupManifest
    snapshot: RegistrySnapshot

    def stack_export(self, name: str, *, s3_client: Any | None = None) -> dict[str, Any]:
        store = _store(self.location, s3_client)
        return dict(json.loads(store.get(f"stacks/{name}.json")))


def _candidates(store: _Store, env: str | None, region: str | None) -> list[str]:
    """Backup directories (relative) under the store, newest first, optionally filtered by path."""
    dirs = []
    for rel in store.manifests():
        parent = PurePosixPath(rel).parent
        parts = parent.parts
        if env is not None and len(parts) >= 3 and parts[-3] != env:
            continue
        if region is not None and len(parts) >= 2 and parts[-2] != region:
            continue
        dirs.append(str(parent) if str(parent) != "." else "")
    return sorted(dirs, key=lambda d: (PurePosixPath(d).name if d else "", d), reverse=True)


def _read_manifest(store: _Store, rel_dir: str) -> BackupManifest:
    rel = f"{rel_dir}/{MANIFEST}" if rel_dir else MANIFEST
    try:
        data = json.loads(store.get(rel))
    except ValueError:
        raise InputRejected(f"{store.url(rel)}: manifest is not JSON") from None
    return BackupManifest.from_json(data, source=store.url(rel))


def load_backup(src: str | Path, *, env: str | None = None, region: str | None = None,
                s3_client: Any | None = None) -> LoadedBackup:
    """A backup: `src` itself if it holds a manifest, else the newest complete backup below it."""
    store = _store(src, s3_client)
    chosen: tuple[str, BackupManifest] | None = None
    for rel_dir in _candidates(store, env, region):
        manifest = _read_manifest(store, rel_dir)
        if (env is None or manifest.env == env) and (region is None or manifest.region == region):
            chosen = (rel_dir, manifest)
            break
    if chosen is None:
        what = " ".join(x for x in (f"env {env}" if env else "", f"region {region}" if region else "") if x)
        raise InputRejected(f"{src}: no complete registry backup found{' for ' + what if what else ''}")
    rel_dir, manifest = chosen
    prefix = f"{rel_dir}/" if rel_dir else ""
    data = store.get(prefix + REGISTRY)
    expected = manifest.files.get(REGISTRY)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise InputRejected(f"{store.url(prefix + REGISTRY)}: content does not match the manifest's digest")
    try:
        payload = json.loads(data)
    except ValueError:
        raise InputRejected(f"{store.url(prefix + REGISTRY)}: not JSON") from None
    snapshot = RegistrySnapshot.from_json(payload, source=store.url(prefix + REGISTRY))
    return LoadedBackup(store.url(rel_dir), manifest, snapshot)


def plan_backup_restore(src: str | Path, dst_client: Any, *, options: SyncOptions | None = None,
                        env: str | None = None, region: str | None = None, s3_client: Any | None = None,
                        dst_caller: Caller | None = None, dst_data: Any | None = None) -> SyncPlanSummary:
    """What `restore_backup` would change in the destination region (nothing is written there)."""
    loaded = load_backup(src, env=env, region=region, s3_client=s3_client)
    return plan_snapshot_sync(loaded.snapshot, dst_client, options or SyncOptions(), dst_caller=dst_caller,
                              dst_data=dst_data)


def restore_backup(src: str | Path, dst_client: Any, *, options: SyncOptions | None = None,
                   env: str | None = None, region: str | None = None, s3_client: Any | None = None,
                   dst_caller: Caller | None = None, dst_data: Any | None = None) -> SyncReport:
    """Rebuild the backed-up registry (and, given `dst_data`, its shadows) in the destination
    region (idempotent, resumable)."""
    loaded = load_backup(src, env=env, region=region, s3_client=s3_client)
    return sync_snapshot(loaded.snapshot, dst_client, options or SyncOptions(), dst_caller=dst_caller,
                         dst_data=dst_data)


def latest_backup_age(dest: str | Path, *, env: str | None = None, region: str | None = None,
                      now: datetime | None = None, s3_client: Any | None = None) -> timedelta | None:
    """Age of the newest complete backup under `dest` (None: there is none)."""
    store = _store(dest, s3_client)
    for rel_dir in _candidates(store, env, region):
        manifest = _read_manifest(store, rel_dir)
        if (env is None or manifest.env == env) and (region is None or manifest.region == region):
            return (now or datetime.now(timezone.utc)) - manifest.created_at
    return None
