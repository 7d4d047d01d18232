"""Every process the drill starts, by its own id, bounded in time, and stopped at the end.

`Processes` is the one owner: it starts each child in its own session (so a signal reaches only
that child), remembers its pid, kills by pid (never by name) and waits for it. `stop_all` runs on
every exit path of a drill, Ctrl-C included; `alive()` is what the tests assert is empty. Each
child runs in the drill's directory and is killed by the kernel if the drill itself dies without
cleaning up (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator.errors import OperationFailed

# A moto server as strict as AWS where moto can be: IoT certificate ids are the SHA-256 of the
# certificate's DER (moto's default hashes the PEM text, an id AWS never gives); the registry sync
# checks each id against its PEM before registering it. moto's config API cannot set this.
# Run as `python -c STRICT_MOTO -H 127.0.0.1 -p PORT` (the drill's world and the test tiers).
STRICT_MOTO = (
    "import sys\n"
    "from moto.core.config import default_user_config\n"
    "default_user_config['iot'] = {'use_valid_cert': True}\n"
    "from orchestrator.drill.world.iot_plane import install\n"  # IoT calls moto lacks (event configs, CA modes)
    "install()\n"
    "from orchestrator.drill.world.iam_strict import install as install_iam\n"  # OIDC client ids (bootstrap)
    "install_iam()\n"
    "from orchestrator.drill.world.retained_plane import install as install_retained\n"  # MQTT retained messages
    "install_retained()\n"
    "from orchestrator.drill.world.global_tables import install as install_global_tables\n"  # replicas, replication
    "install_global_tables()\n"
    "from moto.server import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=self.log_dir.parent, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.children[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 5.0) -> None:
        proc = self.children.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        for name in list(self.children):
            self.kill(name, signal.SIGTERM)

    def alive(self) -> list[int]:
        return [p.pid for p in self.children.values() if p.poll() is None]

    def log_tail(self, name: str, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


def _die_with_parent() -> None:
    """In the child: the kernel kills it when the drill dies, even by SIGKILL (Linux PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free_on(hosts: Sequence[str], port: int) -> bool:
    """Whether a server could listen on `port` at every host. SO_REUSEADDR, as the servers set it
    (socket.create_server, mosquitto): connections of a previous run in TIME_WAIT do not hold the
    port, a listener does."""
    for host in hosts:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                  what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise OperationFailed(f"{what or 'a process'} exited with code {proc.returncode} before listening "
                                  f"on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise OperationFailed(f"{what or 'a process'} did not listen on {host}:{port} within {timeout:.0f} s")
