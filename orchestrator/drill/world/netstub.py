"""The devices' network: each device's stub resolver (a DNS cache honouring TTL) and its route.

A device's SDK opens a TCP connection to the custom domain on every connect attempt. On a laptop
every device shares one resolver, so the drill gives each device its own: the SDK tunnels through
this local HTTP CONNECT stub (`HttpProxyOptions`, the device id as the proxy user name), which
resolves the domain through the drill's DNS server, keeps the answer for its TTL (per device), and
connects to the address it got. TLS (SNI, the server certificate, the device certificate) stays
end to end between the SDK and the broker: the stub only ever sees ciphertext.

Every resolution is recorded (device, time, answer, whether it came from the cache) for the report.
`admit(device, address)`, when given, is asked before each tunnel reaches a broker (IoT Core's
CONNECT quotas, `orchestrator.drill.world.admission`): a refused attempt gets 429 and never reaches it.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Resolve = Callable[[str, str], tuple[str | None, int]]  # (device, name) -> (address or None, ttl seconds)
Admit = Callable[[str, str], bool]  # (device, address) -> let this connection attempt in


@dataclass(frozen=True)
class Resolution:
    device: str
    at: float
    address: str | None
    cached: bool


class DeviceNetwork:
    def __init__(self, resolve: Resolve, host: str = "127.0.0.1", admit: Admit | None = None) -> None:
        self.resolve = resolve
        self.admit = admit
        self.host = host
        self.port = 0
        self.cache: dict[str, tuple[str, float]] = {}  # device -> (address, expires at)
        self.resolutions: list[Resolution] = []
        self.routes: dict[str, str] = {}  # device -> the address its last tunnel reached
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drill-device-network", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the device network stub did not start")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0, backlog=1024))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._started.set()
        loop.run_forever()
        self._server.close()
        loop.run_until_complete(self._server.wait_closed())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- resolution --------------------------------------------------------------------------------
    def lookup(self, device: str, name: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            hit = self.cache.get(device)
        if hit and hit[1] > now:
            self.resolutions.append(Resolution(device, time.time(), hit[0], True))
            return hit[0]
        address, ttl = self.resolve(device, name)
        with self._lock:
            if address is not None:
                self.cache[device] = (address, now + ttl)
            else:
                self.cache.pop(device, None)
        self.resolutions.append(Resolution(device, time.time(), address, False))
        return address

    # -- the CONNECT tunnel ---------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            device = ""
            for line in lines[1:]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "proxy-authorization" and value.strip().lower().startswith("basic "):
                    device = base64.b64decode(value.strip()[6:]).decode().split(":", 1)[0]
            name, _, port = target.rpartition(":")
            if method != "CONNECT" or not device:
                writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                return
            loop = asyncio.get_running_loop()
            address = await loop.run_in_executor(None, self.lookup, device, name)
            if address is None:
                writer.write(b"HTTP/1.1 502 No Answer\r\n\r\n")
                return
            if self.admit is not None and not self.admit(device, address):
                writer.write(b"HTTP/1.1 429 Too Many Requests\r\n\r\n")
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(address, int(port)), 5)
                upstream = up_writer
            except (OSError, asyncio.TimeoutError):
                writer.write(b"HTTP/1.1 502 Connection Refused\r\n\r\n")
                return
            self.routes[device] = address
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            pipes = (_pipe(reader, up_writer), _pipe(up_reader, writer))
            await asyncio.gather(*pipes, return_exceptions=True)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the stub is stopping: end quietly
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
