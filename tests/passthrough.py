"""A pass-through HTTP proxy on 127.0.0.1 in front of a test endpoint (the moto server), in a thread.

Each request goes to `intercept(method, path, headers, body)` first: an `Answer` it returns is sent
instead of forwarding (a fault the test injects), None forwards the request unchanged (headers and
body) and relays the upstream's answer. The tests of the deployed function zips point the code under
test at the proxy's URL to count what it sends or make AWS refuse some of it.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body
Intercept = Callable[[str, str, Mapping[str, str], bytes], Answer | None]

_HOP = {"content-length", "transfer-encoding", "connection", "server", "date"}


@contextmanager
def passthrough(upstream: str, intercept: Intercept) -> Iterator[str]:
    """Serve the proxy on a free loopback port until the block ends; yields its base URL."""
    up = urllib.parse.urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = intercept(self.command, self.path, dict(self.headers.items()), body)
            if answer is None:
                conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body or None, headers={
                        k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")})
                    got = conn.getresponse()
                    answer = got.status, got.getheaders(), got.read()
                finally:
                    conn.close()
            status, headers, data = answer
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
