"""Stand-in `command` resource provider plugin (pulumi-command) for the engine-tier tests.

TEST FIXTURE ONLY: the product always runs the real pulumi-command provider. The real provider's
Go module is not served by the module proxy this project can reach, so the engine tier runs this
one, which implements what the programs use of it, for real, on the local machine:

- `command:local:Command`: Create runs `create`, Update runs `update` (or nothing when it is not
  set), Delete runs `delete`; each through `interpreter` (default ["/bin/sh", "-c"]) in `dir`,
  with `environment` added to the environment and `stdin` on standard input. Outputs are the
  inputs plus `stdout` and `stderr` (one trailing newline stripped, as upstream). A command that
  exits non-zero fails the operation with its stderr. Update and Delete see the previous
  PULUMI_COMMAND_STDOUT / PULUMI_COMMAND_STDERR (unless `addPreviousOutputInEnv` is false).
  A change to `triggers`, `create`, `dir`, `environment`, `interpreter` or `stdin` replaces the
  resource, unless `update` is set, in which case those (except `triggers`) update it.
- invoke `command:local:run`: runs `command` and returns stdout/stderr.

Fault injection: FAKE_AWS_FAIL_ON / FAKE_AWS_DELAY apply here too (see _plugin_base.py).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from _plugin_base import (  # noqa: E402
    UNKNOWN,
    BaseProvider,
    InjectedFailure,
    inject,
    plain,
    record,
    serve,
    to_dict,
    to_struct,
)
from google.protobuf import empty_pb2  # noqa: E402
from pulumi.runtime.proto import provider_pb2  # noqa: E402

VERSION = os.environ.get("FAKE_COMMAND_VERSION", "1.2.1")
COMMAND = "command:local:Command"
REPLACE_ALWAYS = {"triggers"}
REPLACE_UNLESS_UPDATE = {"create", "dir", "environment", "interpreter", "stdin"}


class CommandFailed(Exception):
    pass


def run_command(
    props: dict[str, Any], command: str, previous: dict[str, Any] | None = None
) -> tuple[str, str]:
    p = plain(props)
    interpreter = p.get("interpreter") or ["/bin/sh", "-c"]
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (p.get("environment") or {}).items()})
    if previous is not None and p.get("addPreviousOutputInEnv", True) is not False:
        env["PULUMI_COMMAND_STDOUT"] = str(plain(previous.get("stdout", "")))
        env["PULUMI_COMMAND_STDERR"] = str(plain(previous.get("stderr", "")))
    proc = subprocess.run(
        [*interpreter, command],
        cwd=p.get("dir") or None,
        env=env,
        input=(p.get("stdin") or "").encode(),
        capture_output=True,
        check=False,
    )
    stdout = proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise CommandFailed(
            f"exit status {proc.returncode}: running {command!r}:\nStdout:\n{stdout}\nStderr:\n{stderr}"
        )
    return stdout.removesuffix("\n"), stderr.removesuffix("\n")


def _grpc_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except (InjectedFailure, CommandFailed) as exc:
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        except Exception:  # noqa: BLE001
            context.abort(grpc.StatusCode.INTERNAL, "fake command provider bug:\n" + traceback.format_exc())

    return wrapper


class FakeCommand(BaseProvider):
    name = "command"
    version = VERSION

    @_grpc_errors
    def Check(self, request, context):
        return provider_pb2.CheckResponse(inputs=request.news)

    @_grpc_errors
    def Diff(self, request, context):
        news = to_dict(request.news)
        olds = (
            to_dict(request.old_inputs)
            if request.HasField("old_inputs")
            else {k: v for k, v in to_dict(request.olds).items() if k not in ("stdout", "stderr")}
        )
        has_update = bool(news.get("update"))
        diffs, replaces = [], []
        for key in sorted(set(olds) | set(news)):
            if olds.get(key) == news.get(key):
                continue
            diffs.append(key)
            if key in REPLACE_ALWAYS or (key in REPLACE_UNLESS_UPDATE and not has_update):
                replaces.append(key)
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if diffs else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=diffs,
            replaces=replaces,
        )

    @_grpc_errors
    def Create(self, request, context):
        props = to_dict(request.properties)
        if request.preview:
            return provider_pb2.CreateResponse(
                id="", properties=to_struct({**props, "stdout": UNKNOWN, "stderr": UNKNOWN})
            )
        inject("create", request.urn)
        stdout, stderr = ("", "")
        if plain(props.get("create")):
            stdout, stderr = run_command(props, plain(props["create"]))
        rid = request.urn.rsplit("::", 1)[-1] + "-" + os.urandom(4).hex()
        record("command", "create", request.urn, request.type, rid)
        return provider_pb2.CreateResponse(
            id=rid, properties=to_struct({**props, "stdout": stdout, "stderr": stderr})
        )

    @_grpc_errors
    def Read(self, request, context):
        record("command", "read", request.urn, request.type, request.id)
        return provider_pb2.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

    @_grpc_errors
    def Update(self, request, context):
        news = to_dict(request.news)
        olds = to_dict(request.olds)
        if request.preview:
            out = (
                {"stdout": UNKNOWN, "stderr": UNKNOWN}
                if plain(news.get("update"))
                else {"stdout": olds.get("stdout", ""), "stderr": olds.get("stderr", "")}
            )
            return provider_pb2.UpdateResponse(properties=to_struct({**news, **out}))
        inject("update", request.urn)
        stdout, stderr = olds.get("stdout", ""), olds.get("stderr", "")
        if plain(news.get("update")):
            stdout, stderr = run_command(news, plain(news["update"]), previous=olds)
        record("command", "update", request.urn, request.type, request.id)
        return provider_pb2.UpdateResponse(properties=to_struct({**news, "stdout": stdout, "stderr": stderr}))

    @_grpc_errors
    def Delete(self, request, context):
        props = to_dict(request.properties)
        inject("delete", request.urn)
        if plain(props.get("delete")):
            run_command(props, plain(props["delete"]), previous=props)
        record("command", "delete", request.urn, request.type, request.id)
        return empty_pb2.Empty()

    @_grpc_errors
    def Invoke(self, request, context):
        args = to_dict(request.args)
        result: dict[str, Any] = {}
        if request.tok == "command:local:run":
            stdout, stderr = run_command(args, plain(args.get("command", "")))
            result = {**args, "stdout": stdout, "stderr": stderr}
        record("command", "invoke", request.tok, request.tok, "")
        return provider_pb2.InvokeResponse(**{"return": to_struct(result)})


if __name__ == "__main__":
    serve(FakeCommand())
