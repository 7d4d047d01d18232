"""A JSON HTTP API on 127.0.0.1, in a thread, for fakes of web services (GitHub's REST API).

The fake supplies one function, `route(request) -> Answer`; this module is the server around it:
one request at a time (a lock), JSON in and out, no logging, stopped when the block ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    payload: Any  # the JSON body, or None


@dataclass(frozen=True)
class Answer:
    status: int
    payload: Any = None  # None: an empty body (a 204)
    headers: dict[str, str] = field(default_factory=dict)


@contextmanager
def serve_json(route: Callable[[Request], Answer]) -> Iterator[str]:
    """Serve `route` on a free port of 127.0.0.1; yields the base URL."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length)) if length else None
            with lock:
                answer = route(Request(self.command, parts.path, parts.query, dict(self.headers.items()), payload))
            raw = b"" if answer.payload is None else json.dumps(answer.payload).encode()
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
