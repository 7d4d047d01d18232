"""DynamoDB global tables (version 2019.11.21), which moto 5.2.5 does not make, added to the local AWS world.

Loaded into the moto server by `procs.STRICT_MOTO` (the drill's world and every test tier), never by
the orchestrator itself. moto ignores `ReplicaUpdates` on UpdateTable, so a table declared with
replicas (`aws.dynamodb.Table(replicas=[...])`: terraform-provider-aws creates the table, then sends
one UpdateTable with `ReplicaUpdates: [{"Create": {"RegionName": ...}}]` per replica) stays a
single-region table and a region that fails over reads an empty replica. Here (rules and sources in
docs/field-notes-iot.md, "DynamoDB global tables in the local world"):

- UpdateTable `ReplicaUpdates` `Create` makes the replica: a table of the same name, key schema,
  attributes, billing mode and stream in that region, holding a copy of the items (version
  2019.11.21 adds replicas to tables that hold data). Refused with ValidationException: a replica
  in the table's own region or one it already has; ResourceInUseException: a table of that name
  already in the target region. `Delete` detaches the region's replica (the replica table is
  deleted, as DeleteTable of a replica does). DescribeTable lists `Replicas` (RegionName,
  ReplicaStatus ACTIVE) and `GlobalTableVersion` 2019.11.21 on every member.
- Every write to a member (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems:
  whatever reaches the table's stream) is replicated to every other member, item by item ("items
  are replicated individually"; a transaction's items are not replicated together), asynchronously,
  after the world's replication delay: `DEFAULT_DELAY_S` = 1 s ("a newly written item is usually
  propagated to all replica tables within a second", DynamoDB developer guide, "Global tables: how
  it works"), or `ORCHESTRATE_WORLD_REPLICATION_DELAY_S`, or what the control endpoint sets. A
  request that fails replicates nothing.
- Conflicts: last writer wins, by the time of the write (the developer guide's "last writer wins
  reconciliation"); an older replicated change never overwrites a newer local one. Ties go to the
  region that sorts first (an assumption: AWS names no tie rule).
- A region's outage (the control endpoint): nothing replicates out of it or into it while it is
  down; what it wrote before it died and had not replicated yet is held and reaches the others only
  when it comes back (asynchronous replication's RPO: AWS's replication latency is what a regional
  failure loses). The region's own API keeps answering here: the drill kills the region's broker,
  not moto; nothing in the drill writes to a dead region's table.

Control (the world's, never AWS's): `GET /moto-api/orchestrate/global-tables` -> {"delay_s",
"down", "pending", "held", "replicated", "superseded"}; `POST` the same path with {"delay_s": x}
and/or {"region": R, "available": false|true}.

Not modelled: the replica's own stream records of replicated writes, TTL deletions (moto runs no
TTL), per-replica settings (throughput, PITR, KMS key, tags), ReplicationLatency metrics.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DELAY_S = 1.0  # "usually propagated to all replica tables within a second"
DELAY_ENV = "ORCHESTRATE_WORLD_REPLICATION_DELAY_S"
CONTROL_PATH = "/moto-api/orchestrate/global-tables"
VERSION = "2019.11.21"
_REPLICAS = "_orchestrate_replicas"  # on a moto Table: the set of member regions of its global table
_WRITTEN = "_orchestrate_written"  # on a moto Table: key -> (time, region) of the last write it applied


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    account: str = field(compare=False)
    table: str = field(compare=False)
    source: str = field(compare=False)
    target: str = field(compare=False)
    key: tuple[str, str] = field(compare=False)
    image: Any = field(compare=False)  # a copy of the item as written (moto's Item); None: deleted
    written: float = field(compare=False)
    gone: Any = field(compare=False, default=None)  # a deleted item's last image (its keys)


class World:
    """The replication engine of the server process: one lock for every DynamoDB request and apply."""

    def __init__(self, delay_s: float) -> None:
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.delay_s = delay_s
        self.down: set[str] = set()
        self.queue: list[_Delivery] = []
        self.held: list[_Delivery] = []
        self.counts = {"replicated": 0, "superseded": 0}
        self._seq = itertools.count()
        self._local = threading.local()
        self._thread: threading.Thread | None = None

    # -- capture: what one request wrote ---------------------------------------------------------
    def begin(self) -> None:
        self._local.changes = []

    def captured(self) -> list[tuple[Any, Any, Any, Any]] | None:
        return getattr(self._local, "changes", None)

    def end(self, ok: bool) -> None:
        changes, self._local.changes = getattr(self._local, "changes", None) or [], None
        if not ok:
            return
        for table, key, image, gone in changes:
            written = time.time()
            getattr(table, _WRITTEN)[key] = (written, table.region_name)
            for target in sorted(getattr(table, _REPLICAS) - {table.region_name}):
                heapq.heappush(self.queue, _Delivery(written + self.delay_s, next(self._seq), table.account_id,
                                                     table.name, table.region_name, target, key, image, written,
                                                     gone))
        if changes:
            self.wake.notify_all()
            self._ensure_thread()

    # -- delivery --------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="world-global-tables", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self.lock:
            while True:
                now = time.time()
                while self.queue and self.queue[0].due <= now:
                    self._deliver(heapq.heappop(self.queue))
                self.wake.wait(None if not self.queue else max(0.0, self.queue[0].due - time.time()))

    def _deliver(self, d: _Delivery) -> None:
        if d.source in self.down or d.target in self.down:
            self.held.append(d)
            return
        import copy

        from moto.dynamodb.models import dynamodb_backends

        table = dynamodb_backends[d.account][d.target].tables.get(d.table)
        if table is None or d.source not in getattr(table, _REPLICAS, set()):
            return  # the replica went (or the world was reset): nothing to apply to
        written = getattr(table, _WRITTEN)
        if written.get(d.key, (0.0, "")) >= (d.written, d.source):
            self.counts["superseded"] += 1  # a newer write is already there: last writer wins
            return
        written[d.key] = (d.written, d.source)
        item = copy.deepcopy(d.image if d.image is not None else d.gone)
        if d.image is None:
            if item.range_key is not None:
                table.items.get(item.hash_key, {}).pop(item.range_key, None)
            else:
                table.items.pop(item.hash_key, None)
        elif item.range_key is not None:
            table.items[item.hash_key][item.range_key] = item
        else:
            table.items[item.hash_key] = item
        self.counts["replicated"] += 1

    # -- control ---------------------------------------------------------------------------------
    def set_available(self, region: str, available: bool) -> None:
        if available:
            self.down.discard(region)
            back, self.held = ([d for d in self.held if d.source not in self.down and d.target not in self.down],
                               [d for d in self.held if d.source in self.down or d.target in self.down])
            now = time.time()
            for d in back:
                d.due = now
                heapq.heappush(self.queue, d)
            self.wake.notify_all()
            self._ensure_thread()
        else:
            self.down.add(region)

    def status(self) -> dict[str, Any]:
        return {"delay_s": self.delay_s, "down": sorted(self.down), "pending": len(self.queue),
                "held": len(self.held), **self.counts}


WORLD: World | None = None


def _error(code: str, message: str) -> Exception:
    from moto.dynamodb.exceptions import MockValidationException, ResourceInUseException

    if code == "ResourceInUseException":
        return ResourceInUseException(message)
    return MockValidationException(message)


def _key_of(table: Any, item: Any) -> tuple[str, str]:
    return (json.dumps(item.hash_key.to_json(), sort_keys=True),
            json.dumps(item.range_key.to_json(), sort_keys=True) if item.range_key is not None else "")


def _members(table: Any) -> set[str]:
    found: set[str] = getattr(table, _REPLICAS, None) or set()
    return found


def _add_replica(backends: Any, table: Any, region: str) -> None:
    """ReplicaUpdates Create: the replica table in `region`, a copy of the items, one member set."""
    import copy

    from moto.dynamodb.models.table import Table

    members = _members(table) or {table.region_name}
    if region == table.region_name or region in members:
        raise _error("ValidationException", f"Failed to create a replica in {region}: the table already has a "
                                            f"replica there")
    target = backends[table.account_id][region]
    if table.name in target.tables:
        raise _error("ResourceInUseException", f"Table already exists: {table.name} in {region}")
    stream = table.stream_specification if (table.stream_specification or {}).get("StreamEnabled") else None
    if stream is None:  # replication runs on the stream: a global table has one (NEW_AND_OLD_IMAGES)
        table.set_stream_specification({"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        stream = table.stream_specification
    replica = Table(  # type: ignore[abstract]
                    table.name, account_id=table.account_id, region=region, schema=table.schema,
                    throughput=table.throughput, attr=table.attr, global_indexes=None, indexes=None,
                    streams=dict(stream), billing_mode=table.billing_mode, sse_specification=None, tags=[],
                    deletion_protection_enabled=False, warm_throughput=None)
    replica.items = copy.deepcopy(table.items)
    replica.ttl = dict(table.ttl)
    target.tables[table.name] = replica
    members = members | {region}
    written = dict(getattr(table, _WRITTEN, {}))
    for t in [target.tables[table.name], *[backends[table.account_id][r].tables.get(table.name)
                                           for r in members if r != region]]:
        if t is not None:
            setattr(t, _REPLICAS, set(members))
            if not hasattr(t, _WRITTEN):
                setattr(t, _WRITTEN, {})
    setattr(replica, _WRITTEN, written)


def _remove_replica(backends: Any, table: Any, region: str) -> None:
    members = _members(table)
    if region not in members:
        raise _error("ValidationException", f"Failed to remove the replica in {region}: no replica there")
    backends[table.account_id][region].tables.pop(table.name, None)
    rest = members - {region}
    for r in rest:
        t = backends[table.account_id][r].tables.get(table.name)
        if t is not None:
            setattr(t, _REPLICAS, set(rest) if len(rest) > 1 else set())


def install(delay_s: float | None = None) -> World:
    """Patch moto's DynamoDB handler and models (idempotent); returns the world's replication engine."""
    global WORLD
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.table import StreamShard, Table
    from moto.dynamodb.responses import DynamoHandler

    if WORLD is not None:
        return WORLD
    world = WORLD = World(float(os.environ.get(DELAY_ENV) or DEFAULT_DELAY_S) if delay_s is None else delay_s)

    original_call: Callable[..., Any] = DynamoHandler.call_action
    original_update: Callable[..., Any] = DynamoHandler.update_table
    original_add: Callable[..., Any] = StreamShard.add
    original_describe: Callable[..., Any] = Table.describe

    def call_action(self: Any) -> Any:
        with world.lock:
            world.begin()
            ok = False
            try:
                answer = original_call(self)
                ok = int(answer[0]) < 400
                return answer
            finally:
                world.end(ok)

    def add(self: Any, old: Any, new: Any) -> None:
        original_add(self, old, new)
        changes = world.captured()
        if changes is None or not _members(self.table):
            return
        import copy

        item = new if new is not None else old
        image = None if new is None else copy.deepcopy(new)  # UpdateItem changes its item in place later
        changes.append((self.table, _key_of(self.table, item), image, None if new is not None else copy.deepcopy(old)))

    def update_table(self: Any) -> Any:
        updates = self.body.get("ReplicaUpdates")
        if not updates:
            return original_update(self)
        table = self.dynamodb_backend.get_table(self.body["TableName"])
        for update in updates:
            if "Create" in update:
                _add_replica(dynamodb_backends, table, str(update["Create"]["RegionName"]))
            elif "Delete" in update:
                _remove_replica(dynamodb_backends, table, str(update["Delete"]["RegionName"]))
            elif "Update" not in update:
                raise _error("ValidationException", "a replica update is one of Create, Update or Delete")
        rest = {k for k in self.body if k not in ("TableName", "ReplicaUpdates")}
        if rest:
            return original_update(self)
        from moto.dynamodb.responses import DynamoResult

        return DynamoResult(table.describe())

    def describe(self: Any, base_key: str = "TableDescription") -> dict[str, Any]:
        result: dict[str, Any] = original_describe(self, base_key)
        members = _members(self)
        if members:
            result[base_key]["GlobalTableVersion"] = VERSION
            result[base_key]["Replicas"] = [{"RegionName": r, "ReplicaStatus": "ACTIVE"}
                                            for r in sorted(members - {self.region_name})]
        return result

    for owner, fn in ((DynamoHandler, call_action), (DynamoHandler, update_table), (StreamShard, add),
                      (Table, describe)):
        setattr(owner, fn.__name__, fn)
    _install_control(world)
    return world


def _install_control(world: World) -> None:
    from moto.moto_api._internal import urls

    def control(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        if request.method == "POST":
            raw = request.data if hasattr(request, "data") else request.body
            body = json.loads(raw or b"{}")
            with world.lock:
                if "delay_s" in body:
                    delay = float(body["delay_s"])
                    if not 0 <= delay <= 3600:
                        return 400, {}, json.dumps({"message": "delay_s: 0 to 3600"})
                    world.delay_s = delay
                if "region" in body:
                    world.set_available(str(body["region"]), bool(body.get("available", True)))
        with world.lock:
            return 200, {"Content-Type": "application/json"}, json.dumps(world.status())

    urls.url_paths["{0}" + CONTROL_PATH] = control


# -- the client side (the drill and the tests) ------------------------------------------------------
def control(endpoint: str, **body: Any) -> dict[str, Any]:
    """POST (with `body`) or GET the world's global-table control; returns its status."""
    import urllib.request

    data = json.dumps(body).encode() if body else None
    request = urllib.request.Request(f"{endpoint}{CONTROL_PATH}", data=data, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local world on 127.0.0.1
        answer: dict[str, Any] = json.loads(response.read())
        return answer
