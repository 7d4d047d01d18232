"""A region's listing held as columns in memory (issue 22).

An unchanged pass and a `--full` pass hold both regions' listings for the whole run. As objects
(one `Thing` per thing with a dict entry by name, one `Certificate` per certificate with a dict
entry by id, one `PolicyTarget` per attachment) they took ≈ 0.6-0.75 KB per thing for the two
regions, and their small long-lived objects, interleaved with the pages' short-lived ones, kept
more of the heap from being reused: the passes' slope was 1.08-1.16 KB per thing. Spilling them to
disk (`Spilled`, as a first sync does) costs those passes 2-4x their CPU (a look-up per thing).

Here each listing is a few columns instead: the keys (a thing's name, a certificate's id, a policy
target) in a sorted list of the interned strings the rest of the run shares, and the other fields
as small integers in `array`s indexing tables of the distinct values (a fleet's things share a few
types, attribute sets and group combinations; its certificates a few statuses). A record is made
when it is asked for (by position, slice or key: a look-up is a bisection of the sorted keys), so
what stays is ≈ 30 B per thing, 12 B per certificate and 8 B per attachment and region, beside the
strings. The sequences are `snapshot.Keyed`: the sync's planners and read-backs take them as they
take a `Spilled` listing (in key order by construction, `by_key` for look-ups).

`ThingColumns`, `CertificateColumns` and `TargetColumns` are filled a page at a time as the
listing reads (`snapshot.read_listing(packed=True)`) and sorted once at the end; nothing holds a
record per thing on the way.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from itertools import pairwise
from typing import Any, TypeVar, overload

from orchestrator.registry.snapshot import Certificate, Keyed, PolicyTarget, TargetKind, Thing

T = TypeVar("T")
NO_VERSION = -(2 ** 63)  # a thing listed without a version (AWS always gives one; moto too)


class _Packed(Keyed[T]):
    """Records in key order, made from columns when asked for."""

    keys: list[str]

    def make(self, i: int) -> T:
        raise NotImplementedError

    def find(self, key: str) -> int:
        """The position of `key`, or -1."""
        i = bisect_left(self.keys, key)
        return i if i < len(self.keys) and self.keys[i] == key else -1

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self.make(j) for j in range(*i.indices(len(self.keys)))]
        n = len(self.keys)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(i)
        return self.make(j)

    def __iter__(self) -> Iterator[T]:
        return map(self.make, range(len(self.keys)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.keys)} records)"

    def by_key(self) -> PackedIndex[T]:
        return PackedIndex(self)


class _PackedItems(ItemsView[str, T]):
    def __iter__(self) -> Iterator[tuple[str, T]]:
        seq: _Packed[T] = self._mapping.seq  # type: ignore[attr-defined]
        return zip(seq.keys, seq, strict=True)


class PackedIndex(Mapping[str, T]):
    """A packed listing by key: a bisection of its sorted keys per look-up."""

    def __init__(self, seq: _Packed[T]) -> None:
        self.seq = seq

    def __getitem__(self, key: str) -> T:
        i = self.seq.find(key) if isinstance(key, str) else -1
        if i < 0:
            raise KeyError(key)
        return self.seq.make(i)

    def get(self, key: str, default: Any = None) -> Any:  # no KeyError raised and caught per miss
        i = self.seq.find(key) if isinstance(key, str) else -1
        return self.seq.make(i) if i >= 0 else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.seq.find(key) >= 0

    def __iter__(self) -> Iterator[str]:
        return iter(self.seq.keys)

    def __len__(self) -> int:
        return len(self.seq.keys)

    def items(self) -> ItemsView[str, T]:
        return _PackedItems(self)


class _Table:
    """The distinct values of a field, each once, by index (index 0: `first`)."""

    def __init__(self, first: Any) -> None:
        self.values: list[Any] = [first]
        self._index: dict[Any, int] = {}

    def index(self, key: Any, make: Any = None) -> int:
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.values)
            self.values.append(key if make is None else make(key))
        return found


def _order(keys: list[str]) -> list[int] | None:
    """The permutation that sorts `keys`, or None when they are sorted already (no duplicate)."""
    if all(a < b for a, b in pairwise(keys)):
        return None
    return sorted(range(len(keys)), key=keys.__getitem__)


def _pick(column: array[int], order: list[int]) -> array[int]:
    return array(column.typecode, [column[i] for i in order])


class PackedThings(_Packed[Thing]):
    def __init__(self, names: list[str], types: list[str | None], type_of: array[int],
                 attributes: list[dict[str, str]], attributes_of: array[int], groups: list[tuple[str, ...]],
                 groups_of: array[int], versions: array[int]) -> None:
        self.keys = names
        self.types, self.type_of = types, type_of
        self.attributes, self.attributes_of = attributes, attributes_of
        self.groups, self.groups_of = groups, groups_of
        self.versions = versions

    def make(self, i: int) -> Thing:
        v = self.versions[i]
        return Thing(self.keys[i], self.types[self.type_of[i]], self.attributes[self.attributes_of[i]],
                     self.groups[self.groups_of[i]], None if v == NO_VERSION else v)


class ThingColumns:
    """`list_things`'s pages as they come, then the groups' members, then `finish`."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._types = _Table(None)
        self._attributes = _Table({})
        self.type_of = array("I")
        self.attributes_of = array("I")
        self.versions = array("q")

    def add(self, name: str, thing_type: str | None, attributes: Mapping[str, str] | None,
            version: int | None) -> None:
        self.names.append(name)
        self.type_of.append(self._types.index(thing_type) if thing_type else 0)
        self.attributes_of.append(self._attributes.index(tuple(attributes.items()), dict) if attributes else 0)
        self.versions.append(NO_VERSION if version is None else version)

    def finish(self, members: Iterable[tuple[str, Iterable[str]]], leave_out: Iterable[str] = ()) -> PackedThings:
        """Sorted by name, each thing with its static groups (`members`: each group's member names;
        a member that is no thing is not looked up further), without the things `leave_out`."""
        names, type_of, attributes_of, versions = self.names, self.type_of, self.attributes_of, self.versions
        order = _order(names)
        if order is not None:
            names = [names[i] for i in order]
            # a name listed twice (pages that overlapped): kept once, its first record in name order
            keep = [k for k in range(len(names)) if k == 0 or names[k] != names[k - 1]]
            if len(keep) != len(names):
                names = [names[k] for k in keep]
                order = [order[k] for k in keep]
            type_of, attributes_of, versions = (_pick(c, order) for c in (type_of, attributes_of, versions))
            del order
        groups = _Table(())
        groups_of = array("I", bytes(4 * len(names)))
        after: dict[tuple[int, str], int] = {}  # (groups index, a group) -> groups index with it
        for group, things in members:
            for m in things:
                i = bisect_left(names, m)
                if i == len(names) or names[i] != m:
                    continue
                was = groups_of[i]
                now = after.get((was, group))
                if now is None:
                    had = groups.values[was]
                    now = after[(was, group)] = groups.index(tuple(sorted({*had, group})))
                groups_of[i] = now
        gone = {i for n in leave_out for i in [bisect_left(names, n)] if i < len(names) and names[i] == n}
        if gone:
            keep = [k for k in range(len(names)) if k not in gone]
            names = [names[k] for k in keep]
            type_of, attributes_of, versions, groups_of = (_pick(c, keep)
                                                           for c in (type_of, attributes_of, versions, groups_of))
        return PackedThings(names, self._types.values, type_of, self._attributes.values, attributes_of,
                            groups.values, groups_of, versions)


class PackedCertificates(_Packed[Certificate]):
    """Certificates by id; an ARN is held only when it is not the listing's prefix and the id
    (`RegistrySnapshot.certificate_arn` makes those)."""

    def __init__(self, ids: list[str], kinds: list[tuple[str, str | None, str | None]], kind_of: array[int],
                 arns: dict[str, str]) -> None:
        self.keys = ids
        self.kinds, self.kind_of = kinds, kind_of
        self.arns = arns

    def make(self, i: int) -> Certificate:
        cert_id = self.keys[i]
        status, mode, ca = self.kinds[self.kind_of[i]]
        return Certificate(cert_id, status, None, mode, ca, self.arns.get(cert_id))


class CertificateColumns:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self._kinds = _Table(("", None, None))
        self.kind_of = array("I")
        self.arns: dict[str, str] = {}

    def add(self, cert_id: str, status: str, mode: str | None, ca: str | None, arn: str | None) -> None:
        self.ids.append(cert_id)
        self.kind_of.append(self._kinds.index((status, mode, ca)))
        if arn:
            self.arns[cert_id] = arn

    def finish(self, leave_out: Iterable[str] = ()) -> PackedCertificates:
        ids, kind_of = self.ids, self.kind_of
        gone = set(leave_out)
        order = _order(ids)
        if order is not None or gone:
            # in id order, an id listed twice kept once (its first record), those `leave_out` left out
            keep: list[int] = []
            last = None
            for i in order if order is not None else range(len(ids)):
                if ids[i] != last and ids[i] not in gone:
                    keep.append(i)
                last = ids[i]
            ids, kind_of = [ids[i] for i in keep], _pick(kind_of, keep)
        return PackedCertificates(ids, self._kinds.values, kind_of,
                                  {k: v for k, v in self.arns.items() if k not in gone})


class PackedTargets(_Packed[PolicyTarget]):
    """Policy targets in (policy, kind, target) order: each (policy, kind)'s targets a sorted run
    of `keys` (the targets' own strings, a certificate id or a group name)."""

    def __init__(self, starts: list[int], owners: list[tuple[str, TargetKind]], targets: list[str]) -> None:
        self.keys = targets  # sorted within each run, not across: look-ups go through `find_target`
        self.starts, self.owners = starts, owners

    def make(self, i: int) -> PolicyTarget:
        policy, kind = self.owners[bisect_right(self.starts, i) - 1]
        return PolicyTarget(policy, kind, self.keys[i])

    def __getitem__(self, i: int | slice) -> Any:
        if not isinstance(i, slice):
            return super().__getitem__(i)
        start, stop, step = i.indices(len(self.keys))
        if step != 1:
            return super().__getitem__(i)
        out: list[PolicyTarget] = []
        run = bisect_right(self.starts, start) - 1
        while start < stop:
            end = min(stop, self.starts[run + 1] if run + 1 < len(self.starts) else len(self.keys))
            policy, kind = self.owners[run]
            out += [PolicyTarget(policy, kind, t) for t in self.keys[start:end]]
            start, run = end, run + 1
        return out

    def __iter__(self) -> Iterator[PolicyTarget]:
        return iter(self[0:len(self.keys)]) if len(self.keys) <= 4096 else self._pages()

    def _pages(self) -> Iterator[PolicyTarget]:
        for i in range(0, len(self.keys), 4096):
            yield from self[i:i + 4096]

    def find(self, key: str) -> int:
        raise TypeError("policy targets have no single key: use `of`")

    def by_key(self) -> PackedIndex[PolicyTarget]:
        raise TypeError("policy targets have no single key: use `of`")

    def of(self, policy: str, kind: TargetKind) -> list[str]:
        """The targets of `policy` of `kind`, sorted."""
        i = bisect_left(self.owners, (policy, kind))
        if i == len(self.owners) or self.owners[i] != (policy, kind):
            return []
        end = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.keys)
        return self.keys[self.starts[i]:end]


class TargetColumns:
    def __init__(self) -> None:
        self.runs: dict[tuple[str, TargetKind], list[str]] = {}

    def add(self, policy: str, kind: TargetKind, target: str) -> None:
        self.runs.setdefault((policy, kind), []).append(target)

    def sorted_run(self, policy: str, kind: TargetKind) -> list[str]:
        """The targets of `policy` of `kind` so far, sorted (in place)."""
        run = self.runs.get((policy, kind), [])
        run.sort()
        return run

    def finish(self, leave_out: Iterable[str] = ()) -> PackedTargets:
        """`leave_out`: policies whose targets are left out."""
        gone = set(leave_out)
        starts: list[int] = []
        owners: list[tuple[str, TargetKind]] = []
        targets: list[str] = []
        for owner in sorted(self.runs):
            if owner[0] in gone:
                continue
            run = self.runs[owner]
            run.sort()
            starts.append(len(targets))
            owners.append(owner)
            targets += run
        self.runs.clear()
        return PackedTargets(starts, owners, targets)


__all__ = ["CertificateColumns", "NO_VERSION", "PackedCertificates", "PackedIndex", "PackedTargets",
           "PackedThings", "TargetColumns", "ThingColumns"]
