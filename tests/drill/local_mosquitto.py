"""A plain mosquitto on 127.0.0.1 for one test (no TLS, no front door): the drill tests' broker."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.drill.world.broker import mosquitto_binary
from orchestrator.drill.world.procs import free_port, wait_for_port


@contextmanager
def mosquitto(tmp_path: Path, *lines: str) -> Iterator[int]:
    """A broker on a free port with `lines` added to its configuration; yields the port, stops it after."""
    port = free_port()
    conf = tmp_path / f"m{port}.conf"
    conf.write_text("\n".join([f"listener {port} 127.0.0.1", "persistence false", *lines, ""]))
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, 10, proc, "mosquitto")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
