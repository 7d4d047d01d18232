"""Shared plumbing for the stand-in provider plugins in this directory.

TEST FIXTURE ONLY. These plugins let the real Pulumi engine run the project's programs without a
cloud: the product itself always uses the real `aws` and `command` providers.

A resource plugin is a process that the engine starts with its own gRPC address as the last
argument; the plugin serves Pulumi's ResourceProvider gRPC service on a free loopback port and
prints that port as the first line of stdout. Everything else it prints goes to stderr (the
engine shows a plugin's stderr as diagnostics).

Environment understood by every stand-in plugin:

- FAKE_PROVIDER_LOG: a file; each provider call appends one JSON line
  ``{"provider", "op", "urn", "type", "id", "region", "pid", "time"}``.
- FAKE_AWS_FAIL_ON: comma-separated substrings; a create or update of a resource whose URN
  contains one of them fails with an AWS-style error (FAKE_AWS_FAIL_OPS widens or narrows the
  operations: comma-separated among create, update, delete, read; default ``create,update``).
- FAKE_AWS_DELAY: seconds to sleep in every create/update/delete (FAKE_AWS_DELAY_ON restricts it
  to URNs containing one of its comma-separated substrings). Use it to kill an update midway.
- FAKE_AWS_HOLD_ON + FAKE_AWS_HOLD_UNTIL: a create/update/delete of a resource whose URN contains
  one of FAKE_AWS_HOLD_ON's comma-separated substrings waits until the file FAKE_AWS_HOLD_UNTIL
  exists (a barrier the test creates), so the update holds its stack's lock for exactly as long
  as the test needs, however loaded the machine. Bounded: after FAKE_AWS_HOLD_TIMEOUT seconds
  (default 600) without the file the operation fails with an AWS-style error, so a test that never
  releases it cannot hang the tier.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

# Wire markers of Pulumi's property values inside a google.protobuf.Struct.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


class InjectedFailure(Exception):
    """A failure requested through FAKE_AWS_FAIL_ON."""


def to_dict(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    if struct is None:
        return {}
    return json_format.MessageToDict(struct)


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def plain(value: Any) -> Any:
    """The value with Pulumi secret wrappers removed (for computing names and ids)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return plain(value.get("value"))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def is_unknown(value: Any) -> bool:
    return value == UNKNOWN


def _split_env(name: str) -> list[str]:
    return [part for part in os.environ.get(name, "").split(",") if part]


def hold(op: str, urn: str) -> None:
    """Apply FAKE_AWS_HOLD_ON / FAKE_AWS_HOLD_UNTIL: wait for the barrier file (bounded)."""
    hold_on = _split_env("FAKE_AWS_HOLD_ON")
    barrier = os.environ.get("FAKE_AWS_HOLD_UNTIL", "")
    if not (barrier and hold_on and op in ("create", "update", "delete") and any(s in urn for s in hold_on)):
        return
    timeout = float(os.environ.get("FAKE_AWS_HOLD_TIMEOUT", "600") or 600)
    deadline = time.monotonic() + timeout
    while not os.path.exists(barrier):
        if time.monotonic() >= deadline:
            raise InjectedFailure(
                f"operation error: {op} of {urn} held for {timeout:.0f}s and {barrier} never appeared "
                "(FAKE_AWS_HOLD_UNTIL), api error RequestTimeout: simulated AWS fault"
            )
        time.sleep(0.05)


def inject(op: str, urn: str) -> None:
    """Apply FAKE_AWS_HOLD_* / FAKE_AWS_DELAY / FAKE_AWS_FAIL_ON to one operation on one resource."""
    hold(op, urn)
    delay = float(os.environ.get("FAKE_AWS_DELAY", "0") or 0)
    delay_on = _split_env("FAKE_AWS_DELAY_ON")
    if (
        delay > 0
        and op in ("create", "update", "delete")
        and (not delay_on or any(s in urn for s in delay_on))
    ):
        time.sleep(delay)
    fail_on = _split_env("FAKE_AWS_FAIL_ON")
    fail_ops = _split_env("FAKE_AWS_FAIL_OPS") or ["create", "update"]
    if op in fail_ops and any(s in urn for s in fail_on):
        raise InjectedFailure(
            f"operation error: injected failure for {op} of {urn} "
            "(FAKE_AWS_FAIL_ON), api error InternalFailure: simulated AWS fault"
        )


def record(provider: str, op: str, urn: str = "", type_: str = "", id_: str = "", **extra: Any) -> None:
    path = os.environ.get("FAKE_PROVIDER_LOG")
    if not path:
        return
    line = {
        "provider": provider,
        "op": op,
        "urn": urn,
        "type": type_,
        "id": id_,
        "pid": os.getpid(),
        "time": time.time(),
        **extra,
    }
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class BaseProvider(provider_pb2_grpc.ResourceProviderServicer):
    """Accept-all configuration and the RPCs every stand-in answers the same way."""

    name = "base"
    version = "0.0.0"

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}

    # -- plugin identity ------------------------------------------------------------------
    def GetPluginInfo(self, request, context):
        return plugin_pb2.PluginInfo(version=self.version)

    def GetSchema(self, request, context):
        return provider_pb2.GetSchemaResponse(schema=json.dumps({"name": self.name, "version": self.version}))

    def Attach(self, request, context):
        return empty_pb2.Empty()

    def Cancel(self, request, context):
        return empty_pb2.Empty()

    # -- provider configuration -----------------------------------------------------------
    def CheckConfig(self, request, context):
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request, context):
        olds, news = plain(to_dict(request.olds)), plain(to_dict(request.news))
        changed = sorted(k for k in set(olds) | set(news) if olds.get(k) != news.get(k))
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if changed else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed,
        )

    def Configure(self, request, context):
        config: dict[str, Any] = {}
        for key, value in request.variables.items():
            # "aws:region" -> "region"; values arrive as strings (JSON for non-strings)
            config[key.split(":", 1)[-1]] = value
        config.update({k: v for k, v in plain(to_dict(request.args)).items() if v is not None})
        self.config = config
        record(self.name, "configure", region=str(config.get("region", "")))
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True, supportsPreview=True, acceptResources=False, acceptOutputs=False
        )


def serve(provider: BaseProvider) -> None:
    """Serve `provider` on a loopback port, print the port, exit when the engine goes away."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(provider, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()

    # The engine stops plugins with SIGINT (then SIGKILL): leave quietly, no traceback on stderr
    # (a plugin's stderr reaches the user as diagnostics).
    def stop(signum: int, frame: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    parent = os.getppid()

    def watchdog() -> None:
        # The engine normally stops plugins itself; if it was killed, do not linger.
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()
    server.wait_for_termination()
