"""One way to run a real moto server on 127.0.0.1 for tests and benchmarks.

A subprocess (`python -m moto.server`) on a free loopback port, ready when `POST /moto-api/reset`
answers (bounded wait), terminated (then killed) on exit. Nothing here talks to any other address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from orchestrator.drill.world.procs import STRICT_MOTO  # moto with AWS's certificate ids

STARTUP_TIMEOUT_S = 30.0


class MotoUnavailable(RuntimeError):
    """The server did not start (it exited, or did not answer in time)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
        return int(response.status)


def reset(url: str) -> None:
    """Empty every region of the server."""
    post(f"{url}/moto-api/reset")


@contextmanager
def moto_server(log: Path, env: Mapping[str, str], timeout: float = STARTUP_TIMEOUT_S) -> Iterator[str]:
    """Run a moto server; yields its URL. `log` receives its output; `env` is its whole environment."""
    port = free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", STRICT_MOTO, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=sink, stderr=subprocess.STDOUT, env=dict(env))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise MotoUnavailable(f"moto server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                post(f"{url}/moto-api/reset", timeout=1.0)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise MotoUnavailable(f"moto server not ready on {url} after {timeout:.0f}s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def threaded_moto() -> Iterator[str]:
    """moto's own threaded server inside this process on a free loopback port; yields its URL.

    Plain moto (not `STRICT_MOTO`'s planes): for tests of a double that sits in front of moto's
    Route 53, ARC or storage APIs and needs no IoT certificate ids."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
