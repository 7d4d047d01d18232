"""The quota-enforcing proxy (tests/quota_proxy.py) in front of moto, and a sync that obeys it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.aws import AwsContext, client
from orchestrator.registry import QuotaTable, SyncOptions, read_snapshot, sync_clients
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import seed
from tests.quota_proxy import QuotaProxy, quota_proxy

SCALE = 5.0


@pytest.fixture
def proxy(endpoint: str) -> Iterator[QuotaProxy]:
    with quota_proxy(endpoint, scale=SCALE) as p:
        yield p


def via(proxy: QuotaProxy, service: str, region: str) -> Any:
    return client(AwsContext(endpoint_url=proxy.url), service, region, own_retries=True, max_pool_connections=16)


def test_the_proxy_throttles_one_api_at_its_quota_as_aws_answers(endpoint: str,
                                                                   iot: Callable[[str], Any]) -> None:
    iot(SRC).create_thing(thingName="t")
    with quota_proxy(endpoint, scale=0.5) as proxy:  # 5 calls/s
        _throttles(proxy)


def _throttles(proxy: QuotaProxy) -> None:
    c = via(proxy, "iot", SRC)
    codes = []
    for _ in range(30):  # faster than 5/s
        try:
            c.list_thing_principals(thingName="t")
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "ThrottlingException" in codes and codes[0] == "ok"
    c.describe_thing(thingName="t")  # another API, another bucket: admitted
    assert proxy.counts()[(SRC, "describe_thing")] == (1, 0)
    other = via(proxy, "iot", DST)  # another region, another bucket
    other.list_things()
    assert proxy.counts()[(DST, "list_things")] == (1, 0)


def test_the_data_plane_is_throttled_with_429(proxy: QuotaProxy, iot: Callable[[str], Any]) -> None:
    iot(SRC).create_thing(thingName="t")
    slow = QuotaProxy(f"http://127.0.0.1:{proxy.upstream[1]}", quotas={"shadow": 2.0})
    slow.start()
    try:
        d = client(AwsContext(endpoint_url=slow.url), "iot-data", SRC, own_retries=True)
        statuses = []
        for _ in range(10):
            try:
                d.get_thing_shadow(thingName="t")
            except ClientError as exc:
                statuses.append((exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]))
        assert ("ThrottlingException", 429) in statuses
    finally:
        slow.stop()


def test_a_sync_at_the_quotas_with_concurrency_4_finishes_without_abort(proxy: QuotaProxy,
                                                                        iot: Callable[[str], Any]) -> None:
    seed(iot(SRC), 20, workers=4)
    table = QuotaTable().scaled(SCALE)
    report = sync_clients(via(proxy, "iot", SRC), via(proxy, "iot", DST),
                          SyncOptions(quotas=table, concurrency=4))
    assert report.ok, report.errors
    assert read_snapshot(iot(DST), pems=False).listing() == read_snapshot(iot(SRC), pems=False).listing()
    # the budgets held: what the proxy throttled is a small share, and every throttled call was retried
    forwarded = sum(f for f, _ in proxy.counts().values())
    assert proxy.throttled() <= 0.1 * forwarded
    assert report.throttled == proxy.throttled()
