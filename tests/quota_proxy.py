"""A quota-enforcing proxy on 127.0.0.1 in front of moto: AWS IoT's per-API throttling, for tests
and benchmarks (moto itself never throttles).

Every request is matched to its API by method and path against botocore's service models of `iot`
and `iot-data` (the signing name in the Authorization header tells the two apart), and its region
is read from the credential scope. Each (region, API) has a token bucket at the sourced quota
table's rate (`orchestrator.drill.world.limits`, docs/quotas.md; not the product's own table) times
`scale` (the Device Shadow APIs share one bucket per region, as AWS's account-level 4,000/s
does), holding at most `burst_s` seconds of calls. A request that finds its bucket empty is refused
before it reaches moto, with what AWS answers: `ThrottlingException`, HTTP 400 on the control plane
and 429 on the data plane (the status codes of the service models), message "Rate exceeded".
Everything else is forwarded to moto unchanged. Nothing here talks to any other address than
127.0.0.1.

    with quota_proxy(moto_url, scale=10) as proxy:
        client(AwsContext(endpoint_url=proxy.url), "iot", region)   # throttled at 10x the quotas
        proxy.counts()        # {(region, api): (forwarded, throttled)}
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from orchestrator.drill.world.limits import iot_api_rates, unlisted_rate
from orchestrator.registry.quotas import bucket_of

_SERVICES = {"iot": "iot", "iotdata": "iot-data"}  # signing name -> botocore service
_STATUS = {"iot": 400, "iot-data": 429}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class _Routes:
    """(method, path, query keys) -> boto3 method name, from botocore's service models."""

    def __init__(self) -> None:
        import botocore.session

        session = botocore.session.get_session()
        self.routes: dict[str, list[tuple[str, re.Pattern[str], frozenset[str], int, str]]] = {}
        for service in _SERVICES.values():
            model = session.get_service_model(service)
            entries = []
            for op_name in model.operation_names:
                http = model.operation_model(op_name).http
                uri = http["requestUri"]
                path, _, query = uri.partition("?")
                pattern = "^" + re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.sub(r"\\\{[^}+]+\\\}", "[^/]+",
                                                                          re.escape(path))) + "/?$"
                keys = frozenset(k.split("=")[0] for k in query.split("&") if k)
                literal = len(re.sub(r"\{[^}]+\}", "", path)) + 10 * len(keys)
                entries.append((http["method"], re.compile(pattern), keys, literal, _snake(op_name)))
            self.routes[service] = entries

    def match(self, service: str, method: str, path: str, query_keys: set[str]) -> str | None:
        best: tuple[int, str] | None = None
        for m, pattern, keys, literal, api in self.routes.get(service, []):
            if m == method and pattern.match(path) and keys <= query_keys:
                if best is None or literal > best[0]:
                    best = (literal, api)
        return best[1] if best else None


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class QuotaProxy:
    def __init__(self, upstream: str, *, scale: float = 1.0, quotas: Mapping[str, float] | None = None,
                 burst_s: float = 0.2) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the quota proxy only forwards to 127.0.0.1, not {upstream}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.scale = scale
        self.quotas = dict(quotas or iot_api_rates())
        self.burst_s = burst_s
        self.routes = _Routes()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="quota-proxy", daemon=True)

    # -- accounting -----------------------------------------------------------------------------
    def rate(self, api: str) -> float:
        return self.quotas.get(bucket_of(api), unlisted_rate()) * self.scale

    def admit(self, region: str, api: str) -> bool:
        key = (region, bucket_of(api))
        with self._lock:
            bucket = self._buckets.get(key)
            now = time.monotonic()
            if bucket is None:
                rate = self.rate(api)
                capacity = max(1.0, rate * self.burst_s)
                bucket = self._buckets[key] = _Bucket(rate, capacity, capacity, now)
            ok = bucket.take(now)
            counts = self._counts.setdefault((region, api), [0, 0])
            counts[0 if ok else 1] += 1
            return ok

    def counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(region, api) -> (forwarded, throttled)."""
        with self._lock:
            return {k: (v[0], v[1]) for k, v in self._counts.items()}

    def throttled(self) -> int:
        return sum(t for _, t in self.counts().values())

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._counts.clear()

    # -- HTTP -----------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                scope = _SCOPE.search(self.headers.get("Authorization") or "")
                parts = urlsplit(self.path)
                if scope and scope.group(2) in _SERVICES:
                    region, service = scope.group(1), _SERVICES[scope.group(2)]
                    keys = {q.split("=")[0] for q in parts.query.split("&") if q}
                    api = proxy.routes.match(service, self.command, parts.path, keys)
                    if api is not None and not proxy.admit(region, api):
                        self._throttle(service)
                        return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for k, v in response.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            def _throttle(self, service: str) -> None:
                data = json.dumps({"message": "Rate exceeded"}).encode()
                self.send_response(_STATUS[service])
                self.send_header("x-amzn-ErrorType", "ThrottlingException")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

        return Handler

    def start(self) -> QuotaProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def quota_proxy(upstream: str, **kwargs: Any) -> Iterator[QuotaProxy]:
    proxy = QuotaProxy(upstream, **kwargs).start()
    try:
        yield proxy
    finally:
        proxy.stop()
