"""Where a registry sync keeps its checkpoint: `<project>/.orchestrate/sync/<env>-<from>-<to>.json`.

Both callers that sync (the `registry sync` command and the lifecycle's `RegistryPort`) run their
real code down to `registry.api`; only the AWS side is replaced by a stand-in that behaves like a
run stopped half way (throttled until the retries ran out): it records operations in the real
`Checkpoint` at the path it was given, then stops. A second run must find that checkpoint. Before
the fix, callers passed `.orchestrate` as the project, and checkpoints landed in
`.orchestrate/.orchestrate/sync/`, where no run looked for them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from orchestrator.registry import Checkpoint, RetriesExhausted, SyncOptions, SyncReport
from orchestrator.state import StateLayout
from tests.orchestrator.conftest import multi_region

SRC, DST = "eu-west-1", "eu-central-1"


class Throttled(Exception):
    response = {"Error": {"Code": "ThrottlingException"}}


class InterruptedSyncs:
    """Stands in for `sync_clients`: each run resumes the checkpoint it is given, does one more
    operation, and stops resumably, as a throttled run does."""

    def __init__(self) -> None:
        self.paths: list[Path | None] = []
        self.resumed: list[bool] = []

    def __call__(self, src_client: Any, dst_client: Any, options: SyncOptions, **_data: Any) -> SyncReport:
        self.paths.append(options.checkpoint_path)
        assert options.checkpoint_path is not None, "a sync without a checkpoint cannot resume"
        checkpoint = Checkpoint(options.checkpoint_path, src_region=src_client, dst_region=dst_client)
        self.resumed.append(checkpoint.resumed)
        checkpoint.mark_done(f"thing create dev-{len(self.paths):04d}")
        checkpoint.flush()
        raise RetriesExhausted("create_thing", 4, Throttled())


@pytest.fixture
def members(project: Path) -> None:
    """Registry sync runs only between member regions: DST is a secondary of dev here."""
    multi_region(project, "dev", [DST])


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch, members: None) -> InterruptedSyncs:
    import orchestrator.registry.api as api

    fake = InterruptedSyncs()
    monkeypatch.setattr(api, "_iot", lambda ctx, region, concurrency: region)  # no boto3 client
    monkeypatch.setattr(api, "_iot_data", lambda ctx, region, iot, concurrency: None)
    monkeypatch.setattr(api, "sync_clients", fake)
    return fake


def assert_checkpoint_in_the_layout(project: Path, syncs: InterruptedSyncs) -> None:
    expected = project / ".orchestrate" / "sync" / f"dev-{SRC}-{DST}.json"
    assert syncs.paths == [expected, expected]
    assert syncs.resumed == [False, True]  # the second run found what the first one left
    assert expected.is_file()
    assert not (project / ".orchestrate" / ".orchestrate").exists()


def test_registry_sync_command_checkpoints_under_the_project_state_dir(
        run: Callable[..., Result], project: Path, syncs: InterruptedSyncs) -> None:
    for _ in range(2):
        result = run("registry", "sync", "--from", SRC, "--to", DST)
        assert result.exit_code == 1, result.output
        assert "re-run the same command to resume" in result.stderr

    assert_checkpoint_in_the_layout(project, syncs)


def test_registry_sync_dry_run_leaves_no_checkpoint(
        run: Callable[..., Result], project: Path, monkeypatch: pytest.MonkeyPatch, members: None) -> None:
    import orchestrator.registry.api as api
    from orchestrator.registry import SyncPlanSummary

    def plan_only(src_client: Any, dst_client: Any, options: SyncOptions, **_data: Any) -> SyncPlanSummary:
        return SyncPlanSummary(src_client, dst_client, options.prune, 0, {}, {})

    monkeypatch.setattr(api, "_iot", lambda ctx, region, concurrency: region)
    monkeypatch.setattr(api, "_iot_data", lambda ctx, region, iot, concurrency: None)
    monkeypatch.setattr(api, "plan_clients_sync", plan_only)
    monkeypatch.setattr(api, "_plane_callers", lambda settings, *clients: list(clients))
    monkeypatch.setattr(api.plane, "sync_plane", lambda src, dst, **k: api.plane.PlaneReport(src, dst, (), 0,
                                                                                          dry_run=True))
    monkeypatch.setattr(api, "sync_clients", lambda *a, **k: pytest.fail("--dry-run applied the plan"))

    result = run("registry", "sync", "--from", SRC, "--to", DST, "--dry-run")

    assert result.exit_code == 0, result.output
    assert f"dry run {SRC} -> {DST}: 0 changes" in result.stdout
    assert not (project / ".orchestrate" / "sync").exists()


def test_lifecycle_registry_port_checkpoints_under_the_project_state_dir(
        project: Path, syncs: InterruptedSyncs) -> None:
    from orchestrator.aws import AwsContext
    from orchestrator.operations.registry_port import RegistryPort

    port = RegistryPort(AwsContext(), "dev", StateLayout(project), (SRC, DST), rate=100)
    for _ in range(2):
        with pytest.raises(RetriesExhausted):
            port.sync(SRC, DST)

    assert_checkpoint_in_the_layout(project, syncs)
