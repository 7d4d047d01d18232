"""Issue 22, a first sync's wall: its read-back of attachments runs alongside the apply, a chunk of
things at a time (`run._ReadBack`): a chunk is re-read in the destination as soon as the apply has
resolved every one of its operations, not after the whole apply. Checked here against the fast
fake (bench/fake_iot.py), without timing:

- the destination's ListThingPrincipals of the first chunk comes before the apply's last write,
  and certificates are registered in the order of the chunks of things they are attached to;
- an attachment that fails in the apply fails the run, and one removed in the destination after
  the apply made it but before its chunk is read back fails the read-back; one removed after the
  read-back is not this run's to see (the docstring of `_ReadBack` says so);
- a compared chunk's principals are dropped (no chunk compared earlier is alive when the next one
  is compared), and the verification is the one the read-back after the apply answers.
"""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from bench.fake_iot import FakeIot
from orchestrator.registry import QuotaTable, SyncOptions, sync_clients
from orchestrator.registry.calls import is_write
from orchestrator.registry.sync import run as run_mod
from orchestrator.registry.sync.run import VersionRecord

SRC, DST = "eu-west-1", "eu-central-1"
CHUNK = 5


class _Recording:
    """The destination's client, recording every call in order (`log`: (api, thing name)); the
    attachments of things past the first chunk take a little longer, as a long apply's would."""

    def __init__(self, client: Any, log: list[tuple[str, str]], slow: set[str]) -> None:
        self._client, self._log, self._slow = client, log, slow
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(**kwargs: Any) -> Any:
            thing = str(kwargs.get("thingName", ""))
            if name == "attach_thing_principal" and thing in self._slow:
                threading.Event().wait(0.02)
            out = attr(**kwargs)
            with self._lock:
                self._log.append((name, thing))
            return out
        return call


class _OneApi:
    """A client whose `api` calls go through `wrap(call, **kwargs)`; every other call as it is."""

    def __init__(self, client: Any, api: str, wrap: Any) -> None:
        self._client, self._api, self._wrap = client, api, wrap

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name != self._api:
            return attr
        return lambda **kwargs: self._wrap(attr, **kwargs)


def _names(n: int) -> list[str]:
    return [f"dev-{i:07d}" for i in range(n)]


def _options(tmp: Path | None = None, **kwargs: Any) -> SyncOptions:
    extra: dict[str, Any] = {"state_path": tmp / "versions.json"} if tmp is not None else {}
    return SyncOptions(quotas=QuotaTable().scaled(1000), concurrency=2, shadows=False, stream_chunk=CHUNK,
                       verify_chunk=CHUNK, **extra, **kwargs)


def test_the_first_chunk_is_read_back_before_the_apply_ends() -> None:
    n = 40
    world = FakeIot(scale=1000)
    world.seed(SRC, n)
    log: list[tuple[str, str]] = []
    first = set(_names(n)[:CHUNK])
    dst = _Recording(world.client(DST), log, set(_names(n)) - first)
    report = sync_clients(world.client(SRC), dst, _options())
    assert report.ok and report.verification is not None and report.verification.ok
    assert report.verification.things_reread == n
    writes = [i for i, (api, _) in enumerate(log) if is_write(api)]
    reads_first = [i for i, (api, thing) in enumerate(log) if api == "list_thing_principals" and thing in first]
    assert len(reads_first) == CHUNK  # each of the chunk's things read back once
    # the first chunk's read-back came while the apply was still writing (before: after the last write)
    assert max(reads_first) < writes[-1], (max(reads_first), writes[-1])


def test_a_first_sync_registers_certificates_in_the_order_of_their_things() -> None:
    """A first sync holds each certificate's registration (and its policy attachments) until the
    reader reaches a thing it is attached to (`_Run.release`): registered in the order of the
    chunks, not of the certificates' ids (a hash), so each chunk's attachments, and its read-back,
    can finish while the apply goes on."""
    from bench.fake_iot import fake_pem, pem_id

    n = 40
    world = FakeIot(scale=1000)
    world.seed(SRC, n)
    order: list[str] = []

    def registering(call: Any, **kwargs: Any) -> Any:
        order.append(pem_id(kwargs["certificatePem"]))
        return call(**kwargs)

    thing_of = {pem_id(fake_pem(f"{SRC}/{t}")): t for t in _names(n)}
    dst = _OneApi(world.client(DST), "register_certificate_without_ca", registering)
    report = sync_clients(world.client(SRC), dst, _options())
    assert report.ok and len(order) == n
    chunks = [_names(n).index(thing_of[c]) // CHUNK for c in order]
    # each chunk's certificates are asked for before the next chunk's (two workers: a call of the
    # previous chunk may still be on its way)
    assert all(b >= a - 1 for a, b in zip(chunks, chunks[1:], strict=False)), chunks
    assert chunks[0] == 0 and chunks[-1] == n // CHUNK - 1, chunks
    # in certificate-id order (before), the chunks would be shuffled
    assert chunks != [_names(n).index(thing_of[c]) // CHUNK for c in sorted(order)]


def _dst_region(world: FakeIot) -> Any:
    return world.region(DST)


def _detach_in_destination(world: FakeIot, thing: str) -> None:
    """Someone else detaches `thing`'s certificates in the destination (straight in the fake's
    state: not through the run's client, so not counted as the run's calls)."""
    r = _dst_region(world)
    with r.lock:
        for arn in list(r.principals.get(thing, {})):
            del r.principals[thing][arn]
            r.principal_things.get(arn, {}).pop(thing, None)
        r.touch()


def test_an_attachment_that_fails_in_the_apply_fails_the_run(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    world = FakeIot(scale=1000)
    world.seed(SRC, 12)
    victim = _names(12)[6]

    def refusing(call: Any, **kwargs: Any) -> Any:
        if kwargs.get("thingName") == victim:
            raise ClientError({"Error": {"Code": "InvalidRequestException", "Message": "no"}},
                              "AttachThingPrincipal")
        return call(**kwargs)

    dst = _OneApi(world.client(DST), "attach_thing_principal", refusing)
    report = sync_clients(world.client(SRC), dst, _options(tmp_path))
    assert not report.ok and [e.code for e in report.errors] == ["InvalidRequestException"]
    # not applied: no read-back is reported (as before), and the version record is not written
    assert report.verification is None
    assert VersionRecord.unfinished(tmp_path / "versions.json") is not None


def test_an_attachment_removed_before_its_chunk_is_read_back_fails_the_read_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Removed in the destination after the apply attached it (its operation resolved) and before
    its chunk was read back: the read-back sees the destination as it is then, without it."""
    world = FakeIot(scale=1000)
    world.seed(SRC, 12)
    victim = _names(12)[7]
    done = run_mod._ReadBack.done

    def resolved(self: run_mod._ReadBack, op: Any, ok: bool) -> None:
        if op.params.get("thing") == victim and ok:
            _detach_in_destination(world, victim)  # before the chunk can be ready
        done(self, op, ok)

    monkeypatch.setattr(run_mod._ReadBack, "done", resolved)
    report = sync_clients(world.client(SRC), world.client(DST), _options())
    assert not report.errors
    v = report.verification
    assert v is not None and not v.ok and not report.ok
    assert v.remaining == 1 and dict(v.counts) == {"thing_principal": 1}
    assert v.first[0].startswith(f"attach thing principal {victim}/")


def test_an_attachment_removed_after_its_chunk_was_read_back_is_not_this_runs_to_see(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The boundary of what a run can tell: a change someone else makes after the chunk was read
    back equal (here: the moment the chunk's comparison ends) is not seen by this run."""
    world = FakeIot(scale=1000)
    world.seed(SRC, 12)
    victim = _names(12)[2]  # in the first chunk
    compare = run_mod._ReadBack._compare

    def comparing(self: run_mod._ReadBack, chunk: Any, *a: Any, **k: Any) -> None:
        compare(self, chunk, *a, **k)
        if chunk.index == 0:
            _detach_in_destination(world, victim)

    monkeypatch.setattr(run_mod._ReadBack, "_compare", comparing)
    report = sync_clients(world.client(SRC), world.client(DST), _options())
    assert report.ok and report.verification is not None and report.verification.ok
    assert not world.client(DST).list_thing_principals(thingName=victim)["principals"]


def test_a_compared_chunk_is_dropped_and_the_answer_is_the_read_back_after_the_apply(
        monkeypatch: pytest.MonkeyPatch) -> None:
    n = 60
    compare = run_mod._ReadBack._compare
    refs: list[weakref.ref[Any]] = []
    alive: list[int] = []
    backs: list[run_mod._ReadBack] = []

    def comparing(self: run_mod._ReadBack, chunk: Any, *a: Any, **k: Any) -> None:
        if not backs:
            backs.append(self)
        gc.collect()
        alive.append(sum(r() is not None for r in refs))
        compare(self, chunk, *a, **k)
        refs.append(weakref.ref(chunk))

    monkeypatch.setattr(run_mod._ReadBack, "_compare", comparing)

    def dropping(call: Any, **kwargs: Any) -> Any:
        """Answers AttachThingPrincipal for one thing without attaching: only a read-back tells."""
        return {} if kwargs.get("thingName") == "dev-0000031" else call(**kwargs)

    world = FakeIot(scale=1000)
    world.seed(SRC, n)
    report = sync_clients(world.client(SRC), _OneApi(world.client(DST), "attach_thing_principal", dropping), _options())
    assert len(alive) == n // CHUNK and max(alive) == 0  # no compared chunk is alive when the next is compared
    assert sorted(backs[0].compared) == list(range(n // CHUNK)) and not backs[0]._chunks
    gc.collect()
    assert all(r() is None for r in refs)

    # the same run with the read-back after the whole apply (`_verify_chunked`) answers the same
    monkeypatch.setattr(run_mod, "_ReadBack", lambda *a, **k: None)
    world_after = FakeIot(scale=1000)
    world_after.seed(SRC, n)
    dst_after = _OneApi(world_after.client(DST), "attach_thing_principal", dropping)
    after = sync_clients(world_after.client(SRC), dst_after, _options())
    assert report.verification == after.verification and report.verification is not None
    assert not report.verification.ok and report.verification.remaining == 1
    assert report.verification.things_reread == n
    assert (report.planned, report.applied, report.counts) == (after.planned, after.applied, after.counts)
    assert report.calls_by_api == after.calls_by_api
