"""Lock holders and ages in messages, and `recover` on a shared backend (`--force`).

The lock text and file format below are what Pulumi 3.272's file backend wrote and printed when a
second `pulumi up` met a running one (checked by hand with the CLI the engine tier builds; the
engine tier's test_crash_and_locks.py asserts the same end to end).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

from orchestrator.engine.pulumi import PulumiEngine, _locked
from orchestrator.engine.types import LockInfo
from orchestrator.operations.recovery import may_be_alive
from tests.doubles import InMemoryEngine

CLI_TEXT = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or "
    "delete the lock file with `pulumi cancel`.\n"
    "  file:///tmp/x/lk/state/.pulumi/locks/organization/lk/dev/2cbe86a5-8ec3-4611-bb1b-047725694976.json"
    "?no_tmp_dir=true: created by root@vm (pid 16469) at 2026-11-30T12:16:36Z\n"
)


class CommandError(Exception):
    def __init__(self, stderr: str) -> None:
        super().__init__("code: 255")
        self.stderr = stderr


def iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_lock_error_names_the_holder_and_the_lock_age() -> None:
    exc = _locked("dev-dns", CommandError(CLI_TEXT))
    assert exc.holder == "root@vm (pid 16469)" and exc.since == "2026-11-30T12:16:36Z"
    line = exc.one_line()
    assert line.startswith("dev-dns is locked by another update: held by root@vm (pid 16469), ")
    assert "old (since 2026-11-30T12:16:36Z)" in line and "orchestrate recover dev-dns" in line


def test_a_lock_message_without_a_holder_says_so() -> None:
    exc = _locked("dev-dns", CommandError("error: the stack is currently locked by 1 lock(s)."))
    assert exc.holder is None and "the backend did not say who holds it" in exc.one_line()


def test_the_engine_reads_the_holder_from_the_file_backends_lock_file(tmp_path: Path) -> None:
    locks = tmp_path / "state" / ".pulumi" / "locks" / "organization" / "iot-platform" / "dev-dns"
    locks.mkdir(parents=True)
    (locks / "2cbe86a5-8ec3-4611-bb1b-047725694976.json").write_text(json.dumps(
        {"pid": 17233, "username": "runner", "hostname": "fv-az123", "timestamp": "2026-11-30T12:16:47.888323687Z"}))
    (locks / "2cbe86a5-8ec3-4611-bb1b-047725694976.json.attrs").write_text("{}")
    engine = PulumiEngine(project_dir=tmp_path, stacks_dir=tmp_path / "stacks", backend_url=f"file://{tmp_path}/state",
                          secrets_provider=None, endpoint_url=None, cli=Path("/bin/true"))
    lock = engine.lock("dev-dns")
    assert lock is not None
    assert (lock.holder, lock.since, lock.host, lock.pid) == ("runner@fv-az123 (pid 17233)", "2026-11-30T12:16:47Z",
                                                             "fv-az123", 17233)
    assert engine.lock("dev-region-eu-west-1") is None


def test_up_on_a_locked_stack_names_holder_and_age(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    engine.locked["dev-region-eu-west-1"] = "alice@ci (pid 4242)"
    engine.lock_since["dev-region-eu-west-1"] = iso(timedelta(minutes=12))
    result = run("up", "--region", "eu-west-1", "--yes")
    assert result.exit_code == 3
    assert "alice@ci (pid 4242)" in result.stdout


def test_recover_refuses_a_fresh_lock_held_elsewhere_unless_forced(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--all", "--yes").exit_code == 0
    engine.locked["dev-dns"] = "runner@fv-az123 (pid 4242)"
    engine.lock_since["dev-dns"] = iso(timedelta(minutes=3))
    engine.calls.clear()
    refused = run("recover", "dev-dns", "--yes")
    assert refused.exit_code == 4, refused.output
    assert "locked by runner@fv-az123 (pid 4242), 3 min old (since " in refused.stderr
    assert "may still be running" in refused.stderr and "--force" in refused.stderr
    assert engine.calls == [] and "dev-dns" in engine.locked
    forced = run("recover", "dev-dns", "--yes", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    lock = json.loads(forced.stdout)["lock"]
    assert lock["holder"] == "runner@fv-az123 (pid 4242)" and 170 <= lock["age_seconds"] <= 400
    assert ("cancel", "dev-dns") in engine.ops() and "dev-dns" not in engine.locked


def test_recover_clears_an_old_lock_without_force(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--all", "--yes").exit_code == 0
    engine.locked["dev-dns"] = "runner@fv-az123 (pid 4242)"
    engine.lock_since["dev-dns"] = iso(timedelta(hours=5))
    result = run("recover", "dev-dns", "--yes")
    assert result.exit_code == 0, result.output
    assert "lock of runner@fv-az123 (pid 4242)" in result.stdout and "dev-dns" not in engine.locked


def test_recover_all_handles_only_locked_or_pending_stacks(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--all", "--yes").exit_code == 0
    assert run("recover", "--all", "--yes").stdout.strip() == "env dev: no stack is locked or has pending operations"
    engine.locked["dev-dns"] = "runner@fv-az123 (pid 4242)"
    engine.lock_since["dev-dns"] = iso(timedelta(seconds=30))
    assert run("recover", "--all", "--yes").exit_code == 4
    result = run("recover", "--all", "--yes", "--force", "--json")
    assert result.exit_code == 0, result.output
    assert [r["stack"] for r in json.loads(result.stdout)["recovered"]] == ["dev-dns"]
    assert run("recover").exit_code == 2 and run("recover", "dev-dns", "--all").exit_code == 2


def test_a_lock_of_this_host_whose_process_is_gone_is_dead_whatever_its_age() -> None:
    host = socket.gethostname()
    gone = LockInfo("s", f"me@{host} (pid 999999)", iso(timedelta(seconds=5)), 5.0, host=host, pid=999999)
    alive = LockInfo("s", f"me@{host} (pid {os.getpid()})", iso(timedelta(hours=5)), 5 * 3600.0, host=host,
                     pid=os.getpid())
    elsewhere = LockInfo("s", "ci@other (pid 1)", iso(timedelta(minutes=5)), 300.0, host="other", pid=1)
    unknown_age = LockInfo("s", "ci@other (pid 1)", None, None, host="other", pid=1)
    assert [may_be_alive(x) for x in (gone, alive, elsewhere, unknown_age)] == [False, True, True, True]


def test_recover_force_fails_when_the_lock_survives_the_cancel(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    """`ok` means read back: a backend that keeps the lock file after the cancel is a failure (exit 1)."""
    assert run("up", "--all", "--yes").exit_code == 0
    engine.locked["dev-dns"] = "runner@fv-az123 (pid 4242)"
    engine.lock_since["dev-dns"] = iso(timedelta(minutes=3))
    engine.cancel = lambda stack: None  # type: ignore[method-assign]  # the lock file stays
    result = run("recover", "dev-dns", "--yes", "--force")
    assert result.exit_code == 1, result.output
    assert "recovered" not in result.stdout, result.stdout
    assert "dev-dns is still locked by runner@fv-az123 (pid 4242)" in result.stderr, result.stderr
    assert ("refresh", "dev-dns") not in engine.ops()
    engine.stacks.pop("dev-dns")  # a run killed before its first resource: the other path
    assert run("recover", "dev-dns", "--yes", "--force").exit_code == 1
