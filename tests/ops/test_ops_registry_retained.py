"""MQTT retained messages (issue 25, item 3): the strict world's iot-data retained-message API
(orchestrator/drill/world/retained_plane.py) and the product carrying the topology's retained topic
prefixes: `registry sync` (list -> plan -> apply -> read back), `registry verify`, backups and restores
(orchestrator/registry/retained.py), against the moto server."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

from orchestrator.aws import AwsContext, client
from orchestrator.errors import GuardRefused, InputRejected
from orchestrator.registry import SyncSettings, backup_region, restore_registry, sync_registry, verify_registry
from orchestrator.registry.calls import Caller, RetryPolicy
from orchestrator.registry.guards import DeleteBudget, PruneGuard
from orchestrator.registry.retained import read_retained, sync_retained
from tests.moto_server import moto_server
from tests.ops.conftest import DST, SRC, THIRD

DataFactory = Callable[[str], Any]
CONFIG = ("config/",)


@pytest.fixture
def data(ctx: AwsContext) -> DataFactory:
    return lambda region: client(ctx, "iot-data", region)


def retain(d: Any, topic: str, payload: bytes, qos: int = 0) -> None:
    d.publish(topic=topic, payload=payload, qos=qos, retain=True)


def held(d: Any) -> dict[str, bytes]:
    """topic -> payload of every retained message of the region (following every page)."""
    out: dict[str, bytes] = {}
    kwargs: dict[str, Any] = {"maxResults": 2}
    while True:
        page = d.list_retained_messages(**kwargs)
        for row in page["retainedTopics"]:
            out[row["topic"]] = d.get_retained_message(topic=row["topic"])["payload"]
        if "nextToken" not in page:
            return out
        kwargs["nextToken"] = page["nextToken"]


def modified(d: Any) -> dict[str, int]:
    return {r["topic"]: r["lastModifiedTime"] for r in d.list_retained_messages(maxResults=200)["retainedTopics"]}


def settings(**kw: Any) -> SyncSettings:
    return SyncSettings(rate=10_000, uniform=True, retained_topics=CONFIG, **kw)


# -- the strict world ---------------------------------------------------------------------------------

def test_world_stores_lists_pages_gets_and_clears_retained_messages_per_region(data: DataFactory) -> None:
    src = data(SRC)
    retain(src, "config/a", b"alpha", qos=1)
    retain(src, "config/b/c", b"beta")
    retain(src, "config/d", b"delta")
    src.publish(topic="config/transient", payload=b"not kept", retain=False)

    first = src.list_retained_messages(maxResults=2)
    assert [r["topic"] for r in first["retainedTopics"]] == ["config/a", "config/b/c"]
    assert first["retainedTopics"][0]["payloadSize"] == 5 and first["retainedTopics"][0]["qos"] == 1
    assert "payload" not in first["retainedTopics"][0]  # a listing never carries payloads
    assert held(src) == {"config/a": b"alpha", "config/b/c": b"beta", "config/d": b"delta"}
    got = src.get_retained_message(topic="config/a")
    assert got["payload"] == b"alpha" and got["qos"] == 1 and got["lastModifiedTime"] > 0
    assert data(DST).list_retained_messages()["retainedTopics"] == []  # kept per region

    retain(src, "config/a", b"")  # an empty retained publish clears
    with pytest.raises(ClientError) as info:
        src.get_retained_message(topic="config/a")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert set(held(src)) == {"config/b/c", "config/d"}


@pytest.mark.parametrize(("call", "code"), [
    (lambda d: d.publish(topic="config/+", payload=b"x", retain=True), "InvalidRequestException"),
    (lambda d: d.publish(topic="a/b/c/d/e/f/g/h/i", payload=b"x", retain=True), "InvalidRequestException"),
    (lambda d: d.publish(topic="config/big", payload=b"x" * (128 * 1024 + 1), retain=True),
     "RequestEntityTooLargeException"),
    (lambda d: d.list_retained_messages(maxResults=201), "InvalidRequestException"),
    (lambda d: d.list_retained_messages(nextToken="not-a-token"), "InvalidRequestException"),
])
def test_world_refuses_what_iot_core_refuses(data: DataFactory, call: Callable[[Any], Any], code: str) -> None:
    with pytest.raises(ClientError) as info:
        call(data(SRC))
    assert info.value.response["Error"]["Code"] == code
    assert data(SRC).list_retained_messages()["retainedTopics"] == []


@pytest.fixture(scope="module")
def small_quota_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server whose account may hold 3 retained messages per region (the quota is adjustable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["ORCHESTRATE_WORLD_RETAINED_MAX"] = "3"
    with moto_server(tmp_path_factory.mktemp("moto-retained") / "server.log", env) as url:
        yield url


def _bare(url: str, region: str) -> Any:
    return boto3.client("iot-data", region_name=region, endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))


def test_at_the_account_quota_a_new_retained_topic_is_throttled_and_the_sync_says_so(small_quota_world: str) -> None:
    dst = _bare(small_quota_world, DST)
    for i in range(3):
        retain(dst, f"other/{i}", b"x")
    with pytest.raises(ClientError) as info:
        retain(dst, "config/new", b"v")
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    retain(dst, "other/0", b"replaced")  # replacing one is not a new message
    retain(dst, "other/1", b"")  # clearing one makes room

    src = _bare(small_quota_world, SRC)
    for name in ("a", "b"):
        retain(src, f"config/{name}", b"v")
    once = RetryPolicy(max_attempts=1)
    report = sync_retained(Caller(src, retry=once, page_size=200), Caller(dst, retry=once, page_size=200), CONFIG)
    assert not report.ok and report.applied == 1  # one fits, the other is refused and named
    assert [op for op, _ in report.errors] == ["create retained_message config/b"]
    assert "ThrottlingException" in report.errors[0][1] or "throttl" in report.errors[0][1].lower()
    assert dst.get_retained_message(topic="config/a")["payload"] == b"v"


# -- the product: registry sync -----------------------------------------------------------------------

def test_sync_carries_only_the_configured_prefixes_reads_back_and_republishes_nothing_equal(
        ctx: AwsContext, data: DataFactory) -> None:
    src, dst = data(SRC), data(DST)
    retain(src, "config/site-1", b'{"interval": 30}', qos=1)
    retain(src, "config/site-2", b'{"interval": 60}')
    retain(src, "telemetry/last", b"not configured")
    retain(dst, "config/site-2", b'{"interval": 5}')  # stale in the destination
    retain(dst, "local/only", b"the secondary's own")

    report = sync_registry(ctx, SRC, DST, settings=settings())

    assert report.ok, report.errors
    assert report.counts["retained_message"] == {"create": 1, "update": 1}
    assert held(dst) == {"config/site-1": b'{"interval": 30}', "config/site-2": b'{"interval": 60}',
                         "local/only": b"the secondary's own"}
    assert dst.get_retained_message(topic="config/site-1")["qos"] == 1
    before = modified(dst)

    again = sync_registry(ctx, SRC, DST, settings=settings())  # equal now: nothing is published again
    assert again.ok and "retained_message" not in again.counts
    assert modified(dst) == before
    back = sync_registry(ctx, DST, SRC, settings=settings())  # nor the other way: no loop
    assert "retained_message" not in back.counts and held(src)["config/site-2"] == b'{"interval": 60}'


def test_sync_dry_run_plans_without_publishing(ctx: AwsContext, data: DataFactory) -> None:
    from orchestrator.registry import plan_registry_sync

    retain(data(SRC), "config/a", b"1")
    plan = plan_registry_sync(ctx, SRC, DST, settings=settings())
    assert plan.counts["retained_message"] == {"create": 1}
    assert "config/a" in plan.first["retained_message"]
    assert data(DST).list_retained_messages()["retainedTopics"] == []


def test_a_topic_cleared_in_the_source_is_cleared_only_with_prune_and_within_the_guard(
        ctx: AwsContext, data: DataFactory) -> None:
    src, dst = data(SRC), data(DST)
    retain(src, "config/keep", b"k")
    for topic in ("config/keep", "config/retired", "local/x"):
        retain(dst, topic, b"k" if topic == "config/keep" else b"old")

    kept = sync_registry(ctx, SRC, DST, settings=settings())
    assert kept.ok and set(held(dst)) == {"config/keep", "config/retired", "local/x"}

    once = RetryPolicy(max_attempts=1)
    callers = [Caller(data(r), retry=once, page_size=200) for r in (SRC, DST)]
    with pytest.raises(GuardRefused):  # the default budget: 5 % of 2 messages is 0
        sync_retained(*callers, CONFIG, prune=True, guard=PruneGuard(confirm=lambda *a: None))
    assert set(held(dst)) == {"config/keep", "config/retired", "local/x"}
    asked: list[str] = []
    report = sync_retained(*callers, CONFIG, prune=True,
                           guard=PruneGuard(budget=DeleteBudget(count=1), confirm=lambda q, *a: asked.append(q)))
    assert report.ok and report.counts() == {"retained_message": {"delete": 1}}
    assert asked == [f"clear 1 retained messages in {DST}?"]
    assert set(held(dst)) == {"config/keep", "local/x"}  # outside the prefixes: never touched


# -- registry verify ----------------------------------------------------------------------------------

def test_verify_counts_retained_differences_then_parity_after_a_sync(ctx: AwsContext, data: DataFactory) -> None:
    src, dst = data(SRC), data(DST)
    retain(src, "config/a", b"1")
    retain(src, "config/b", b"2")
    retain(dst, "config/b", b"stale")
    retain(dst, "config/c", b"only here")

    def diff() -> Any:
        result = verify_registry(ctx, SRC, DST, shadows=False, retained_topics=CONFIG)
        return next(k for k in result.kinds if k.kind == "retained_message")

    kind = diff()
    assert (kind.in_from, kind.in_to, kind.only_in_from, kind.only_in_to, kind.differ) == (2, 2, 1, 1, 1)
    assert "retained_message config/b: differs" in kind.first
    assert not any(b"stale" in n.encode() or "only here" in n for n in kind.first)  # topics, never payloads
    sync_registry(ctx, SRC, DST, settings=settings())
    assert diff().differences == 1  # config/c: only a prune clears it
    sync_registry(ctx, SRC, DST, settings=settings(prune=True),
                  guard=PruneGuard(budget=DeleteBudget(count=1), confirm=lambda *a: None))
    assert diff().differences == 0


# -- backups -----------------------------------------------------------------------------------------

def test_backup_signs_the_retained_messages_and_restore_puts_them_back(
        ctx: AwsContext, data: DataFactory, tmp_path: Path, signing_key: str) -> None:
    src = data(SRC)
    retain(src, "config/a", b'{"mode": "eco"}', qos=1)
    retain(src, "config/b", bytes(range(256)))  # binary payloads survive
    retain(src, "telemetry/x", b"not configured")

    result = backup_region(ctx, "dev", SRC, tmp_path / "vault", retained_topics=CONFIG)
    where = Path(result.location)
    manifest = json.loads((where / "manifest.json").read_text())
    assert "retained.json" in manifest["files"] and manifest["counts"]["retained_messages"] == 2
    saved = json.loads((where / "retained.json").read_text())
    assert [m["topic"] for m in saved["messages"]] == ["config/a", "config/b"]

    report = restore_registry(ctx, where, THIRD, rate=10_000)
    assert report.ok, report.errors
    assert report.counts["retained_message"] == {"create": 2}
    assert held(data(THIRD)) == {"config/a": b'{"mode": "eco"}', "config/b": bytes(range(256))}
    assert data(THIRD).get_retained_message(topic="config/a")["qos"] == 1

    # additive: a topic the region holds differently keeps its message
    retain(data(DST), "config/a", b"newer here")
    restore_registry(ctx, where, DST, rate=10_000)
    assert held(data(DST)) == {"config/a": b"newer here", "config/b": bytes(range(256))}


def test_a_backup_whose_retained_messages_were_changed_is_refused_before_anything_is_written(
        ctx: AwsContext, data: DataFactory, iot: Callable[[str], Any], tmp_path: Path, signing_key: str) -> None:
    retain(data(SRC), "config/a", b"trusted")
    where = Path(backup_region(ctx, "dev", SRC, tmp_path / "vault", retained_topics=CONFIG).location)
    doc = json.loads((where / "retained.json").read_text())
    doc["messages"][0]["payload"] = "ZXZpbA=="  # "evil"
    (where / "retained.json").write_text(json.dumps(doc))

    with pytest.raises(InputRejected, match="digest"):
        restore_registry(ctx, where, THIRD, rate=10_000)
    assert data(THIRD).list_retained_messages()["retainedTopics"] == []
    assert iot(THIRD).list_things()["things"] == []


# -- the CLI and the topology -------------------------------------------------------------------------

@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str) -> Callable[..., Result]:
    from orchestrator.cli.app import Deps
    from orchestrator.cli.main import cli
    from tests.doubles import InMemoryEngine, project_copy

    project_copy(tmp_path, monkeypatch)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, [*args, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: InMemoryEngine()), catch_exceptions=False)
    return invoke


def _topology(retained: Any) -> None:
    path = Path("stacks/dev.topology.yaml")
    doc = yaml.safe_load(path.read_text())
    doc.update(secondaries=[DST], routing="failover")
    doc["registry"]["retained_topics"] = retained
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_cli_sync_and_verify_carry_the_topologys_retained_topics(run: Callable[..., Result], data: DataFactory) -> None:
    _topology(["config/"])
    retain(data(SRC), "config/fleet", b"v2")

    differs = run("registry", "verify", "--from", SRC, "--to", DST, "--json")
    assert differs.exit_code == 1, differs.output
    kinds = json.loads(differs.stdout)["kinds"]
    assert kinds["retained_message"]["only_in_from"] == 1

    synced = run("registry", "sync", "--from", SRC, "--to", DST, "--rate", "500", "--json")
    assert synced.exit_code == 0, synced.output
    doc = json.loads(synced.stdout)
    assert doc["ok"] and doc["counts"]["retained_message"] == {"create": 1}
    assert "v2" not in synced.stdout  # payloads never reach the output
    assert held(data(DST)) == {"config/fleet": b"v2"}
    assert run("registry", "verify", "--from", SRC, "--to", DST).exit_code == 0


@pytest.mark.parametrize(("value", "message"), [
    ("config/", "must be a list"),
    (["config/#"], "wildcard"),
    (["$aws/things/"], "reserved"),
    (["config/", "config/"], "listed twice"),
    ([""], "non-empty"),
])
def test_cli_bad_retained_topics_are_exit_2_and_touch_nothing(
        run: Callable[..., Result], data: DataFactory, value: Any, message: str) -> None:
    _topology(value)
    retain(data(SRC), "config/fleet", b"v2")
    result = run("registry", "sync", "--from", SRC, "--to", DST, "--rate", "500")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "registry.retained_topics" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error (and at most its hint)
    assert data(DST).list_retained_messages()["retainedTopics"] == []


def test_read_retained_pages_through_more_topics_than_one_page(data: DataFactory) -> None:
    src = data(SRC)
    for i in range(30):
        retain(src, f"config/{i:02d}", b"x")
    caller = Caller(src, page_size=7)
    snap = read_retained(caller, CONFIG)
    assert sorted(snap.messages) == [f"config/{i:02d}" for i in range(30)]
    assert dict(caller.stats.counts().by_api)["list_retained_messages"] == 5  # 30 topics, 7 a page


def test_when_the_retained_messages_cannot_be_read_the_registry_still_syncs_and_the_report_is_not_ok(
        ctx: AwsContext, iot: Callable[[str], Any], data: DataFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An account whose role may not call ListRetainedMessages: the things are carried, the sync says
    the retained messages were not (exit 1 in the CLI), never `ok`."""
    import orchestrator.registry.retained as retained

    def refused(*a: Any, **k: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
                          "ListRetainedMessages")

    monkeypatch.setattr(retained, "sync_retained", refused)
    iot(SRC).create_thing(thingName="device-1")
    retain(data(SRC), "config/a", b"1")
    report = sync_registry(ctx, SRC, DST, settings=settings())
    assert not report.ok
    assert [(e.op, e.code) for e in report.errors] == [("read retained messages", "PlaneApplyFailed")]
    assert "AccessDeniedException" in report.errors[0].message
    assert [t["thingName"] for t in iot(DST).list_things()["things"]] == ["device-1"]


def test_the_lifecycles_registry_sync_carries_the_retained_messages_too(
        ctx: AwsContext, data: DataFactory, tmp_path: Path) -> None:
    """promote-secondary and failback sync the registry through `RegistryPort`: a new secondary gets
    the retained configuration before DNS sends devices to it."""
    from orchestrator.operations.registry_port import RegistryPort
    from orchestrator.state import StateLayout

    retain(data(SRC), "config/fleet", b"v3")
    port = RegistryPort(ctx, "dev", StateLayout(tmp_path), (SRC, DST), rate=10_000, retained_topics=CONFIG)
    doc = port.sync(SRC, DST)
    assert doc["ok"] and doc["counts"]["retained_message"] == {"create": 1}
    assert held(data(DST)) == {"config/fleet": b"v3"}


def test_an_unchanged_pass_reads_no_payload_and_a_change_on_either_side_is_read_again(
        data: DataFactory, tmp_path: Path) -> None:
    """With the record beside the version record, a second pass lists both regions and reads
    nothing else; a message changed in the source, or overwritten in the destination, is read again
    and made equal; trust=False (--full, after a failed verification) reads everything."""
    import time

    from orchestrator.registry.retained import record_path

    src, dst = data(SRC), data(DST)
    for i in range(5):
        retain(src, f"config/{i}", f"v{i}".encode())
    record = record_path(tmp_path / "dev-a-b.versions.json")

    def run(**kw: Any) -> tuple[Any, dict[str, int]]:
        a, b = Caller(src, page_size=200), Caller(dst, page_size=200)
        report = sync_retained(a, b, CONFIG, record=record, **kw)
        by_api: dict[str, int] = {}
        for c in (a, b):
            for api, n in c.stats.counts().by_api:
                by_api[api] = by_api.get(api, 0) + n
        return report, by_api

    first, _ = run()
    assert first.ok and first.applied == 5 and record.exists()
    quiet, calls = run()
    assert quiet.ok and not quiet.ops and calls == {"list_retained_messages": 2}

    time.sleep(0.01)  # a new lastModifiedTime
    retain(src, "config/1", b"changed at the source")
    retain(dst, "config/3", b"overwritten in the secondary")
    fixed, calls = run()
    assert fixed.ok and sorted(op.name for op in fixed.ops) == ["config/1", "config/3"]
    assert calls["get_retained_message"] == 6  # 2 topics x (source, destination, read-back)
    assert held(dst) == {f"config/{i}": (b"changed at the source" if i == 1 else f"v{i}".encode()) for i in range(5)}

    _, calls = run(trust=False)
    assert calls["get_retained_message"] == 10  # every topic in both regions
    _, calls = run()
    assert calls == {"list_retained_messages": 2}


def test_the_topology_keeps_its_retained_topics_through_a_rewrite(tmp_path: Path) -> None:
    """promote-secondary and failover rewrite the topology file: the prefixes stay as written."""
    from orchestrator import topology as topo

    path = tmp_path / "stacks" / "dev.topology.yaml"
    path.parent.mkdir()
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "stacks" / "dev.topology.yaml").read_text())
    doc["registry"]["retained_topics"] = ["config/", "fleet/settings/"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    loaded = topo.load(path, "dev")
    assert loaded.registry.retained_topics == ("config/", "fleet/settings/")
    topo.save(loaded, path)
    assert yaml.safe_load(path.read_text())["registry"]["retained_topics"] == ["config/", "fleet/settings/"]
    assert topo.load(path, "dev") == loaded
