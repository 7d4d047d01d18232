"""Issue 22, the read-back's memory: without --prune a sync's verification compares the regions a
chunk of things at a time (`_Run._verify_chunked`, `SyncOptions.verify_chunk`), re-reading and
dropping each chunk's principals and shadows, with the answer of the whole-registry comparison
(`_Run._verify_whole`): the same remaining operations, counts, first items, re-read counts and
superseded shadows, and a mismatch anywhere (here in the middle chunk) still fails the run."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from bench.fake_iot import FakeIot
from orchestrator.registry import QuotaTable, SyncOptions, sync_clients
from orchestrator.registry.snapshot import (
    CLASSIC,
    Certificate,
    Coverage,
    Policy,
    PolicyTarget,
    RegistrySnapshot,
    Shadow,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
    canonical_state,
)
from orchestrator.registry.sync.run import DetailReads, _Run

SRC, DST = "eu-west-1", "eu-central-1"
DOC = '{"Statement":[{"Action":"iot:Connect","Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}'


def _cert(i: int) -> str:
    return f"{i:064x}"


class _Principals:
    """The destination's `list_thing_principals`, as `read_principals` pages it."""

    region = DST

    def __init__(self, principals: dict[str, list[str]]) -> None:
        self.principals = principals
        self.asked: list[str] = []

    def pages(self, api: str, *, on_page: Any = None, **kwargs: Any) -> Iterator[str]:
        assert api == "list_thing_principals", api
        thing = kwargs["thingName"]
        self.asked.append(thing)
        arns = [f"arn:aws:iot:{DST}:123456789012:cert/{c}" for c in self.principals.get(thing, [])]
        if on_page is not None:
            on_page(len(arns), None, False)
        yield from arns


class _Shadows:
    """The destination's `get_thing_shadow` (documents with versions and per-field timestamps)."""

    region = DST

    def __init__(self, docs: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.docs = docs

    def call(self, api: str, **kwargs: Any) -> Any:
        assert api == "get_thing_shadow", api
        doc = self.docs[(kwargs["thingName"], kwargs.get("shadowName", CLASSIC))]
        return {"payload": io.BytesIO(json.dumps(doc).encode())}


def _doc(reported: dict[str, Any], version: int, at: int) -> dict[str, Any]:
    return {"state": {"reported": reported}, "version": version,
            "metadata": {"reported": {k: {"timestamp": at} for k in reported}}}


def _case() -> tuple[DetailReads, RegistrySnapshot, list[str], dict[str, set[str]],
                     dict[str, tuple[int | None, int | None]], _Principals, _Shadows]:
    """A source of 20 things and a destination read back with differences of every kind the
    read-back compares, spread over the fleet (so over the chunks)."""
    n = 20
    names = [f"t{i:02d}" for i in range(n)]
    things = tuple(Thing(t, None, {"n": str(i)}, ("g",)) for i, t in enumerate(names))
    certs = tuple(Certificate(_cert(i), "ACTIVE") for i in range(n + 1))
    src_tp = tuple(sorted([ThingPrincipal(t, _cert(i)) for i, t in enumerate(names)]
                          + [ThingPrincipal("t05", _cert(n))]))
    shadows = tuple(Shadow(f"t{i:02d}", CLASSIC, None, canonical_state({"v": i}), 1) for i in range(1, 7))
    src = RegistrySnapshot(SRC, thing_groups=(ThingGroup("g"),), things=things, policies=(Policy("p", DOC),),
                           certificates=certs, thing_principals=src_tp, shadows=shadows,
                           policy_targets=tuple(PolicyTarget("p", TargetKind.CERTIFICATE, c.id) for c in certs),
                           coverage=Coverage.complete())
    # read back: t07 missing, t03's attributes differ, t15 out of its group, c13 missing, one
    # policy attachment missing (c17)
    dst_things = tuple(Thing(t.name, None, {"n": "changed"} if t.name == "t03" else dict(t.attributes),
                             () if t.name == "t15" else ("g",), version=2)
                       for t in things if t.name != "t07")
    dst_now = RegistrySnapshot(DST, thing_groups=(ThingGroup("g"),), things=dst_things, policies=(Policy("p", DOC),),
                               certificates=tuple(c for c in certs if c.id != _cert(13)),
                               policy_targets=tuple(a for a in src.policy_targets if a.target != _cert(17)))
    touched = [t for i, t in enumerate(names) if i % 2 == 0]  # attachments were planned for the even things
    # re-read: t04 lacks its certificate, t10 has one more (a detachment), the others equal
    reread = {t: [_cert(i)] for i, t in enumerate(names) if i % 2 == 0}
    reread["t04"] = []
    reread["t10"] = [_cert(10), _cert(20)]
    # as read before the apply, for the untouched (odd) things: t11 lacks its certificate
    before = tuple(ThingPrincipal(t, _cert(i)) for i, t in enumerate(names) if i % 2 and t != "t11")
    before += (ThingPrincipal("t05", _cert(n)),)
    # shadows written: t01 (reads back equal), t02 (a device wrote later: superseded), t06 (differs);
    # t03's was not written and differs as read before
    written = {"t01": {CLASSIC}, "t02": {CLASSIC}, "t06": {CLASSIC}}
    docs = {("t01", CLASSIC): _doc({"v": 1}, 5, 1000), ("t02", CLASSIC): _doc({"v": "device"}, 9, 2000),
            ("t06", CLASSIC): _doc({"v": "other"}, 5, 1000)}
    writes: dict[str, tuple[int | None, int | None]] = {"t01/$classic": (5, 1000), "t02/$classic": (5, 1000),
                                                        "t06/$classic": (5, 1000)}
    dst_before = RegistrySnapshot(DST, thing_principals=tuple(sorted(before)),
                                  shadows=(Shadow("t03", CLASSIC, None, canonical_state({"v": "old"}), 1),
                                           Shadow("t04", CLASSIC, None, canonical_state({"v": 4}), 1)))
    reads = DetailReads(src, dst_before, frozenset(names), shadows, True)
    return reads, dst_now, touched, written, writes, _Principals(reread), _Shadows(docs)


def _run(chunk: int, principals: _Principals, shadows: _Shadows) -> _Run:
    options = SyncOptions(verify_chunk=chunk, concurrency=2)
    return _Run(options, None, principals, None, None, shadows, 0.0, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk", [1, 3, 7, 20, 10_000])
def test_a_chunked_read_back_answers_what_the_whole_registry_comparison_answers(chunk: int) -> None:
    reads, dst_now, touched, names, writes, principals, shadows = _case()
    whole_run = _run(10_000, principals, shadows)
    whole = whole_run._verify_whole(reads, dst_now, touched, names, writes)
    asked_whole = sorted(principals.asked)
    principals.asked.clear()
    run = _run(chunk, principals, shadows)
    chunked = run._verify_chunked(reads, dst_now, touched, names, writes)
    assert chunked == whole
    assert not whole.ok
    # the differences planted above, each found once: t07 with its membership and attachment, t03's
    # attributes, t15's membership, c13 (and its attachment to t13, which the planner makes wait for it), the
    # policy attachment of c17, t04's and t11's attachments, t10's extra one, the shadows of t03 and
    # t06 (they differ) and t05 (missing); t02's shadow is superseded, t01's reads back equal
    assert dict(whole.counts) == {"certificate": 1, "thing": 2, "group_membership": 2, "thing_principal": 4,
                                  "shadow": 3, "policy_attachment": 1}, whole.counts
    assert whole.remaining == 13 and whole.superseded == 1
    assert whole.things_reread == len(touched) and whole.shadows_reread == 3
    assert run._memo["written"] == whole_run._memo["written"] == {"t01/$classic": 5}
    assert sorted(principals.asked) == asked_whole == sorted(touched)  # each touched thing re-read once


def test_a_chunked_read_back_of_equal_regions_is_ok() -> None:
    reads, dst_now, touched, names, writes, principals, shadows = _case()
    src = reads.src
    equal_now = RegistrySnapshot(DST, thing_groups=src.thing_groups, things=src.things, policies=src.policies,
                                 certificates=src.certificates, policy_targets=src.policy_targets)
    principals.principals = {t: [a.certificate_id for a in src.thing_principals if a.thing == t] for t in touched}
    before = RegistrySnapshot(DST, thing_principals=tuple(a for a in src.thing_principals if a.thing not in touched),
                              shadows=tuple(sh for sh in src.shadows if sh.thing not in names))
    shadows.docs = {(sh.thing, sh.name): _doc(json.loads(sh.reported or "{}"), 5, 1000)
                    for sh in src.shadows if sh.thing in names}
    equal = DetailReads(src, before, reads.checked, reads.src_shadows, True)
    for chunk in (1, 3, 10_000):
        got = _run(chunk, principals, shadows)._verify_chunked(equal, equal_now, touched, names, writes)
        assert got.ok and got.remaining == 0 and got.things_reread == len(touched), (chunk, got)


# -- end to end, against the fast fake (bench/fake_iot.py: AWS paging and per-API quotas) -----------

def _sync(n: int, chunk: int, dst_client: Any = None) -> Any:
    world = FakeIot(scale=1000)
    world.seed(SRC, n)
    options = SyncOptions(quotas=QuotaTable().scaled(1000), concurrency=2, shadows=False, stream_chunk=chunk,
                          verify_chunk=chunk)
    return sync_clients(world.client(SRC), dst_client(world.client(DST)) if dst_client else world.client(DST),
                        options)


def test_a_first_sync_in_chunks_of_three_reports_what_an_unchunked_one_reports() -> None:
    small, whole = _sync(11, 3), _sync(11, 10_000)
    assert small.ok and whole.ok
    assert small.verification == whole.verification and small.verification is not None
    assert small.verification.things_reread == 11
    assert (small.planned, small.applied, small.counts) == (whole.planned, whole.applied, whole.counts)
    assert small.calls_by_api == whole.calls_by_api


class _Dropping:
    """A destination that answers AttachThingPrincipal for one thing without attaching (a write
    that did not take): only the read-back can tell."""

    def __init__(self, client: Any, thing: str) -> None:
        self._client, self._thing = client, thing

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name != "attach_thing_principal":
            return attr

        def call(**kwargs: Any) -> Any:
            if kwargs.get("thingName") == self._thing:
                return {"ResponseMetadata": {"HTTPStatusCode": 200}}
            return attr(**kwargs)
        return call


def test_a_mismatch_in_the_middle_chunk_still_fails_the_run() -> None:
    # 9 things in chunks of 3: dev-0000003..5 are the middle chunk
    report = _sync(9, 3, lambda client: _Dropping(client, "dev-0000004"))
    assert not report.errors  # every write was answered
    v = report.verification
    assert v is not None and not v.ok and not report.ok
    assert v.remaining == 1 and dict(v.counts) == {"thing_principal": 1}
    assert v.first[0].startswith("attach thing principal dev-0000004/")
