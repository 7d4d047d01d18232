"""The one owner of run state: where it lives (the backend, and `.orchestrate/` as its cache), and
the one atomic writer.

Run state (journals, lifecycle state, sync records and checkpoints) lives beside the Pulumi state,
in the same backend, under a `.orchestrate/` prefix next to `.pulumi/`:

    file://<dir>                 -> <dir>/.orchestrate/<key>
    s3://<bucket>/<path>?...     -> s3://<bucket>/<path>/.orchestrate/<key>

so any machine or CI job with the same backend can resume a run, fail back or continue a sync.
Writes are conditional (S3 `If-None-Match`/`If-Match` on the ETag; a file lock and a content
digest for a directory): a document another machine changed since this run read it is never
overwritten (`StateConflict`, exit 3). The project's `.orchestrate/` keeps a copy of every document
read or written (a cache: handy to read, never the source of truth) and the Pulumi workspaces.

Layout under the project directory (and, for run state, under the backend's prefix):

    .orchestrate/
      runs/<env>-<op>-<time>.json          run journals (`up --resume`)
      lifecycle/<env>.json                 promotion / failover state machine
      lifecycle/<env>-syncs.json           when each region pair was last synced
      lifecycle/<env>-routing.json         regions DNS does not route to yet (or any more)
      lifecycle/<env>-jobs.json            in-flight jobs carried between regions (source job -> carried job)
      sync/<env>-<from>-<to>.json          registry sync checkpoints
      sync/<env>-<from>-<to>.listings.json counts of the source's last complete registry listing
      sync/<env>-<from>-<to>.versions.json what the last clean sync saw (or its in-progress mark)
      sync/<env>-<from>-<to>.verified.json the last verification of the pair (registry verify, sync)
      sync/<env>-<from>-<to>.lock.json     the lease of the sync of that pair running now (`Lease`)
      stacks/Pulumi.<stack>.yaml           the stack's config file as `up` left it (secrets provider,
                                           encrypted key): restored into a clone that lacks it
      workspaces/<stack>/                  one Pulumi workspace per stack

Every other module asks a `StateLayout` for a path; nothing else joins `.orchestrate` itself.
Every write goes through `atomic_write_text` / `atomic_write_json`: a temporary file in the same
directory, flushed and fsynced, then `os.replace`d over the target, so a reader (or a crash) sees
the old file or the new one, never half of either; the temporary file is removed on any failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.errors import InputRejected, LeaseHeld, LeaseLost, OperationFailed, StateConflict

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Iterator

STATE_DIR_NAME = ".orchestrate"
NEW = ""  # `expect` of a write that must create the document (nobody else did)


@dataclass(frozen=True)
class Stored:
    data: bytes
    version: str  # the S3 ETag, or the sha256 of a file's bytes


class StateStore(Protocol):
    """Where run state documents live, keyed by a relative posix path (`runs/dev-up-….json`)."""

    location: str  # shown to users (no credentials)

    def get(self, key: str) -> Stored | None: ...

    def put(self, key: str, data: bytes, *, expect: str | None) -> str:
        """Write `data`; `expect` is the version read before (NEW: must not exist; None: any).
        Returns the new version; raises StateConflict when someone else wrote in between."""
        ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str) -> list[tuple[str, float]]:
        """(key, modified as epoch seconds) of every document whose key starts with `prefix`."""
        ...


class LocalStore:
    """A directory (a file backend's `<dir>/.orchestrate`): a file lock makes check-and-write atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = f"file://{self.root.as_posix()}"
        self._thread_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> Stored | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return Stored(data, hashlib.sha256(data).hexdigest())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.root / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def put(self, key: str, data: bytes, *, expect: str | None) -> str:
        with self._locked():
            if expect is not None:
                current = self.get(key)
                found = current.version if current else NEW
                if found != expect:
                    raise StateConflict(key, self.location)
            atomic_write_bytes(self._path(key), data)
        return hashlib.sha256(data).hexdigest()

    def delete(self, key: str) -> None:
        with self._locked():
            self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> list[tuple[str, float]]:
        base = self._path(prefix).parent
        if not base.is_dir():
            return []
        out = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith("."):
                out.append((key, path.stat().st_mtime))
        return out


class S3Store:
    """A prefix in the state bucket, next to Pulumi's `.pulumi/`; conditional PutObject (ETags)."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.location = f"s3://{bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def _errors(self, what: str) -> Any:
        from orchestrator.aws import aws_errors

        return aws_errors(f"{what} in {self.location}")

    def get(self, key: str) -> Stored | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors("reading run state"):
                obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                return Stored(obj["Body"].read(), str(obj["ETag"]))
        except OperationFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                    "NoSuchKey", "404"):
                return None
            raise

    def put(self, key: str, data: bytes, *, expect: str | None) -> str:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {}
        if expect == NEW:
            kwargs["IfNoneMatch"] = "*"
        elif expect is not None:
            kwargs["IfMatch"] = expect
        try:
            with self._errors("writing run state"):
                out = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                             ContentType="application/json", **kwargs)
        except OperationFailed as exc:
            cause = exc.__cause__
            code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
            # 412: the ETag moved; 409: a concurrent conditional write; 404: If-Match on a deleted key
            if kwargs and code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"):
                raise StateConflict(key, self.location) from None
            raise
        return str(out["ETag"])

    def delete(self, key: str) -> None:
        with self._errors("deleting run state"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self, prefix: str) -> list[tuple[str, float]]:
        out = []
        with self._errors("listing run state"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self._key(prefix))
            for page in pages:
                for obj in page.get("Contents", []) or []:
                    out.append((obj["Key"][len(self.prefix) + 1:], obj["LastModified"].timestamp()))
        return out


def backend_display(url: str) -> str:
    """The backend URL without credentials or query parameters (what status and comments show)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url


def store_for(backend_url: str, *, endpoint_url: str | None = None) -> StateStore | None:
    """The run state store beside the Pulumi state of `backend_url`; None for a backend that has
    no place for it (Pulumi Cloud and other services: run state then stays in `.orchestrate/`)."""
    if backend_url.startswith("file://"):
        root = backend_url[len("file://"):].split("?", 1)[0]
        if root.startswith("~"):
            root = os.path.expanduser(root)
        return LocalStore(Path(root) / STATE_DIR_NAME)
    if backend_url.startswith("s3://"):
        s3, bucket, path = s3_backend(backend_url, endpoint_url=endpoint_url)
        return S3Store(bucket, f"{path}/{STATE_DIR_NAME}".strip("/"), s3)
    return None


def s3_backend(backend_url: str, *, endpoint_url: str | None = None) -> tuple[Any, str, str]:
    """(S3 client, bucket, path inside the bucket) of an `s3://bucket/path?region=…&endpoint=…`
    backend URL, the way the Pulumi CLI reads it (`--endpoint-url` applies when the URL names none).

    The form Pulumi documents for S3-compatible stores (MinIO, Ceph) is honoured:
    `?endpoint=host:port&disableSSL=true&s3ForcePathStyle=true` (an endpoint without a scheme is
    https unless `disableSSL=true`; path-style addressing when `s3ForcePathStyle=true`)."""
    from urllib.parse import parse_qs, urlsplit

    from orchestrator.aws import AwsContext, client

    parts = urlsplit(backend_url)
    if not parts.hostname:
        raise InputRejected(f"backend {backend_display(backend_url)!r} names no bucket")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    endpoint = query.get("endpoint") or endpoint_url
    if endpoint and not endpoint.startswith(("http://", "https://")):
        scheme = "http" if _flag(backend_url, query, "disableSSL") else "https"
        endpoint = f"{scheme}://{endpoint}"
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") \
        or "us-east-1"
    s3 = client(AwsContext(endpoint_url=endpoint, profile=query.get("profile")), "s3", region,
                s3_path_style=_flag(backend_url, query, "s3ForcePathStyle"))
    return s3, parts.hostname, parts.path.strip("/")


def _flag(url: str, query: dict[str, str], name: str) -> bool:
    """A boolean query parameter of the backend URL (`true`/`false`, as Go's strconv reads it)."""
    value = query.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1", "t"):
        return True
    if value.lower() in ("false", "0", "f"):
        return False
    raise InputRejected(f"backend {backend_display(url)!r}: {name}={value[:20]!r} is not true or false")


class StateLayout:
    """Paths of the orchestrator's own files for one project directory, and the run state store.

    With a `store`, run state documents (`load`/`save`/`delete`/`documents`/`pull`/`push`) are read
    from and written to the store, and copied into `.orchestrate/` (the cache); without one, the
    cache directory is the store."""

    def __init__(self, project_dir: Path, store: StateStore | None = None) -> None:
        self.project_dir = Path(project_dir)
        self.store: StateStore = store or LocalStore(self.root)
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return self.store.location

    @property
    def _cache_is_store(self) -> bool:
        return isinstance(self.store, LocalStore) and self.store.root.resolve() == self.root.resolve()

    def key(self, path: Path) -> str:
        """The store key of a run state path under `.orchestrate/`."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(f"{path} is not under {self.root}") from None

    def _cache(self, path: Path, data: bytes | None) -> None:
        if self._cache_is_store:
            return
        if data is None:
            Path(path).unlink(missing_ok=True)
        else:
            atomic_write_bytes(Path(path), data)

    def load(self, path: Path) -> Any | None:
        """The JSON document at `path` from the store (copied into the cache), or None."""
        key = self.key(path)
        found = self.store.get(key)
        with self._lock:
            self._versions[key] = found.version if found else NEW
        self._cache(path, found.data if found else None)
        if found is None:
            return None
        try:
            return json.loads(found.data)
        except ValueError:
            raise InputRejected(f"{self.store.location}/{key}: run state is not valid JSON") from None

    def save(self, path: Path, data: Any, *, indent: int | None = 2) -> None:
        """Write a JSON document, refusing to overwrite what another run wrote since this one read it."""
        self.save_bytes(path, _json_bytes(data, indent))

    def save_bytes(self, path: Path, data: bytes) -> None:
        key = self.key(path)
        with self._lock:
            expect = self._versions.get(key)
        if expect is None:  # never read by this run: the write must not race another writer
            current = self.store.get(key)
            expect = current.version if current else NEW
        version = self.store.put(key, data, expect=expect)
        with self._lock:
            self._versions[key] = version
        self._cache(path, data)

    def delete(self, path: Path) -> None:
        key = self.key(path)
        self.store.delete(key)
        with self._lock:
            self._versions[key] = NEW
        self._cache(path, None)

    def documents(self, directory: Path, prefix: str) -> list[Path]:
        """Cache paths of the stored documents in `directory` whose names start with `prefix`,
        oldest change first."""
        found = self.store.keys(f"{self.key(directory)}/{prefix}")
        return [self.root / key for key, _mtime in sorted(found, key=lambda k: (k[1], k[0]))]

    def pull(self, path: Path, *, merge: Callable[[bytes, bytes], bytes] | None = None) -> bool:
        """Copy the stored document at `path` into the cache (removing a stale cached copy when the
        store has none); True when the cache then holds one.

        With `merge(local, stored)`, a cached copy is not simply replaced: a run killed before it
        could store its document (SIGKILL skips every `finally`) left the newer one here, so both
        are merged, and a cached copy the store lacks is kept."""
        key = self.key(path)
        found = self.store.get(key)
        with self._lock:
            self._versions[key] = found.version if found else NEW
        if self._cache_is_store:
            return found is not None
        try:
            local: bytes | None = Path(path).read_bytes()
        except FileNotFoundError:
            local = None
        if merge is not None and local is not None:
            self._cache(path, merge(local, found.data) if found else local)
            return True
        self._cache(path, found.data if found else None)
        return found is not None

    def push(self, path: Path) -> None:
        """Store the cache's file at `path` (a document a library wrote locally), or remove the
        stored one when the file is gone."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            if self.store.get(self.key(path)) is not None:
                self.delete(path)
            return
        if self._cache_is_store:
            return
        self.save_bytes(path, data)

    @property
    def root(self) -> Path:
        return self.project_dir / STATE_DIR_NAME

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def lifecycle_path(self, env: str) -> Path:
        return self.root / "lifecycle" / f"{env}.json"

    def routing_path(self, env: str) -> Path:
        return self.root / "lifecycle" / f"{env}-routing.json"

    def jobs_record_path(self, env: str) -> Path:
        return self.root / "lifecycle" / f"{env}-jobs.json"

    def sync_record_path(self, env: str) -> Path:
        return self.root / "lifecycle" / f"{env}-syncs.json"

    def sync_checkpoint_path(self, env: str, src_region: str, dst_region: str) -> Path:
        return self.root / "sync" / f"{env}-{src_region}-{dst_region}.json"

    def listing_record_path(self, env: str, src_region: str, dst_region: str) -> Path:
        """Counts of the source's last complete registry listing, per region pair: syncs of one source
        to several destinations run at once (the replication stack) and must not contend for one file."""
        return self.root / "sync" / f"{env}-{src_region}-{dst_region}.listings.json"

    def stack_config_path(self, stack: str) -> Path:
        """The backend's copy of `stacks/Pulumi.<stack>.yaml` (what another clone needs to operate it)."""
        return self.root / "stacks" / f"Pulumi.{stack}.yaml"

    def sync_lock_path(self, env: str, src_region: str, dst_region: str) -> Path:
        """The lease of the registry sync of one region pair (`Lease`): one writer per pair."""
        return self.root / "sync" / f"{env}-{src_region}-{dst_region}.lock.json"

    def lease(self, path: Path, what: str, **kwargs: Any) -> Lease:
        """The `Lease` kept at `path` in the store (not cached: only the store's copy counts)."""
        return Lease(self.store, self.key(path), what, **kwargs)

    def sync_versions_path(self, env: str, src_region: str, dst_region: str) -> Path:
        """What the last clean sync saw (thing and shadow versions): the next one skips the rest."""
        return self.root / "sync" / f"{env}-{src_region}-{dst_region}.versions.json"

    def sync_verified_path(self, env: str, src_region: str, dst_region: str) -> Path:
        """The last verification of a region pair (`registry verify`, or a sync's read-back)."""
        return self.root / "sync" / f"{env}-{src_region}-{dst_region}.verified.json"

    @property
    def workspaces_dir(self) -> Path:
        return self.root / "workspaces"

    def workspace_dir(self, stack: str) -> Path:
        return self.workspaces_dir / stack

    def drill_dir(self, env: str, stamp: str) -> Path:
        """One game day's world (logs, certificates, broker configs) and its report."""
        return self.root / "drills" / f"{env}-{stamp}"

    def __repr__(self) -> str:
        return f"StateLayout({str(self.root)!r})"


LEASE_TTL_S = 300.0  # a holder that has not renewed for this long is taken to be dead
LEASE_RENEW_S = 60.0  # how often a live holder renews (several renewals fit in one TTL)


def holder_id() -> str:
    """Who runs this process, as Pulumi names a lock holder: "user@host (pid N)"."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


def lock_age(since: str | None, age_seconds: float | None) -> str:
    """", 12 min old (since 2026-11-30T12:16:36Z)" (empty when the backend did not say)."""
    if since is None:
        return ""
    if age_seconds is None:
        return f", since {since}"
    minutes = age_seconds / 60
    age = f"{age_seconds:.0f} s" if minutes < 2 else f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f", {age} old (since {since})"


class Lease:
    """A run-state lock with a lease: one document in the store, created with a conditional write
    (`If-None-Match: *`), renewed every `renew_every_s` by a background thread (`If-Match` on the
    version it wrote), removed on release.

    A live holder (renewed less than `ttl_s` ago, by the holder's clock: machines are expected to
    keep NTP time, well inside the TTL) refuses a second run with `LeaseHeld` (exit 3) naming the
    holder and its age, before that run writes anything. A holder that died stops renewing; once its
    lease has expired the next run takes it over (a conditional write on the version it read, so of
    two runs taking over at once, one wins). A holder whose renewal finds the document changed has
    lost the lease: `lost` is set and `check()` raises."""

    def __init__(self, store: StateStore, key: str, what: str, *, ttl_s: float = LEASE_TTL_S,
                 renew_every_s: float = LEASE_RENEW_S, clock: Callable[[], float] = time.time,
                 holder: str | None = None) -> None:
        self.store, self.key, self.what = store, key, what
        self.ttl_s, self.renew_every_s, self._clock = ttl_s, renew_every_s, clock
        self.holder = holder or holder_id()
        self.version: str | None = None
        self.taken_over: str | None = None  # the dead holder whose expired lease this one replaced
        self.lost = False
        self.renew_errors = 0
        self._doc: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _held_by(self, doc: dict[str, Any], now: float) -> str:
        from datetime import datetime, timezone

        acquired = float(doc.get("acquired_at", now))
        since = datetime.fromtimestamp(acquired, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        renewed = now - float(doc.get("renewed_at", acquired))
        return (f"{doc.get('holder', 'an unnamed run')}{lock_age(since, max(0.0, now - acquired))}, "
                f"lease renewed {max(0.0, renewed):.0f} s ago")

    def acquire(self) -> Lease:
        """Take the lease (or an expired one over); LeaseHeld when a live holder has it."""
        found = self.store.get(self.key)
        now = self._clock()
        expect = NEW
        if found is not None:
            try:
                doc = json.loads(found.data)
                renewed, ttl = float(doc["renewed_at"]), float(doc.get("ttl_s", self.ttl_s))
            except (ValueError, KeyError, TypeError):  # unreadable: nobody can be named as holding it
                doc, renewed, ttl = {}, float("-inf"), 0.0
            if now - renewed < ttl:
                self._refuse(doc, now)
            expect = found.version
            self.taken_over = str(doc.get("holder") or "an unreadable lease")
        self._doc = {"holder": self.holder, "what": self.what, "acquired_at": now, "renewed_at": now,
                     "ttl_s": self.ttl_s}
        try:
            self.version = self.store.put(self.key, _json_bytes(self._doc, None), expect=expect)
        except StateConflict:  # another run took it between our read and our write
            current = self.store.get(self.key)
            try:
                doc = json.loads(current.data) if current else {}
            except ValueError:
                doc = {}
            self._refuse(doc, self._clock())
        return self

    def _refuse(self, doc: dict[str, Any], now: float) -> None:
        holder = str(doc.get("holder") or "another run")
        raise LeaseHeld(f"{self.what} is running elsewhere: held by {self._held_by(doc, now)}",
                        holder=holder,
                        hint=f"nothing was written; wait for it to finish, or, if that run died, re-run after its "
                             f"lease expires ({float(doc.get('ttl_s', self.ttl_s)):.0f} s after its last renewal; "
                             f"lease in {self.store.location}/{self.key})")

    def renew(self) -> None:
        """Extend the lease; marks it lost (and raises StateConflict) when another run replaced it."""
        with self._mutex:
            if self.lost or self.version is None:
                raise StateConflict(self.key, self.store.location)
            doc = dict(self._doc, renewed_at=self._clock())
            try:
                self.version = self.store.put(self.key, _json_bytes(doc, None), expect=self.version)
            except StateConflict:
                self.lost = True
                raise
            self._doc = doc

    def check(self) -> None:
        """Raise LeaseLost (exit 3) when the lease has expired unrenewed, or the store's document is
        no longer the one this run wrote (another run took it over)."""
        with self._mutex:
            if not self.lost and self._clock() - float(self._doc.get("renewed_at", 0.0)) >= self.ttl_s:
                self.lost = True
            if not self.lost:
                current = self.store.get(self.key)
                self.lost = current is None or current.version != self.version
            if self.lost:
                raise LeaseLost(self.key, self.store.location)

    def guard(self, store: Callable[[Path], None]) -> Callable[[Path], None]:
        """`store` (a running sync's checkpoint copy to the backend) preceded by `check()`: a run
        whose lease was lost stops at its next checkpoint copy instead of writing on."""
        def guarded(path: Path) -> None:
            self.check()
            store(path)

        return guarded

    def _keep_alive(self) -> None:
        from orchestrator.errors import OrchestrateError

        while not self._stop.wait(self.renew_every_s):
            try:
                self.renew()
            except StateConflict:
                return
            except (OrchestrateError, OSError):  # a network blip: the next renewal tries again
                self.renew_errors += 1

    def release(self) -> None:
        """Stop renewing and remove the lease, unless another run has replaced it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:
            if self.version is None or self.lost:
                return
            current = self.store.get(self.key)
            if current is not None and current.version == self.version:
                self.store.delete(self.key)
            self.version = None

    def __enter__(self) -> Lease:
        self.acquire()
        self._thread = threading.Thread(target=self._keep_alive, name=f"lease {self.key}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_workspace_dir(path: Path) -> bool:
    """True for a generated stack workspace (`.orchestrate/workspaces/<stack>`), which is not a project."""
    return path.parent.name == "workspaces" and path.parent.parent.name == STATE_DIR_NAME


def _json_bytes(data: Any, indent: int | None) -> bytes:
    return (json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n").encode("utf-8")


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text` atomically (temp file, fsync, rename); `mode` keeps a file mode."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:  # bytes as given: digests hold
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 2) -> None:
    """`atomic_write_text` of a JSON document (sorted keys, non-JSON values as strings)."""
    atomic_write_bytes(path, _json_bytes(data, indent))


def read_json(path: Path) -> Any | None:
    """The JSON document at `path`, or None when there is none. A corrupt file raises ValueError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)
