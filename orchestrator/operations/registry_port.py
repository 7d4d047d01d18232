"""The registry operations the lifecycle needs: a verified boto3 registry sync between two regions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import OperationFailed, OrchestrateError
from orchestrator.state import StateLayout

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.aws import AwsContext


class RegistryPort:
    """Registry operations the lifecycle needs: the boto3 registry sync, and a check of its result."""

    def __init__(self, ctx: AwsContext, env: str, state: StateLayout, residency: tuple[str, ...],
                 rate: float | None = None, retained_topics: tuple[str, ...] = ()) -> None:
        self.ctx, self.env, self.state, self.residency, self.rate = ctx, env, state, residency, rate
        self.retained_topics = retained_topics  # MQTT retained messages carried with the registry

    def sync(self, src: str, dst: str) -> dict[str, Any]:
        from orchestrator.registry import SyncSettings, sync_registry

        checkpoint = self.state.sync_checkpoint_path(self.env, src, dst)
        versions = self.state.sync_versions_path(self.env, src, dst)
        from orchestrator.registry.checkpoint import pull_checkpoint, push_checkpoint

        with self.state.lease(self.state.sync_lock_path(self.env, src, dst),
                              f"registry sync {src} -> {dst} (env {self.env})") as lease:  # before any write
            pull_checkpoint(self.state, checkpoint)  # a sync interrupted elsewhere resumes here
            self.state.pull(versions)  # what the last clean sync saw, wherever it ran
            from orchestrator.registry.retained import record_path

            self.state.pull(record_path(versions))
            try:
                report = sync_registry(self.ctx, src, dst, residency=self.residency,
                                       settings=SyncSettings(rate=self.rate, retained_topics=self.retained_topics),
                                       checkpoint_path=checkpoint,
                                       state_path=versions, checkpoint_store=lease.guard(self.state.push),
                                       state_store=lease.guard(self.state.push))
            except OrchestrateError as exc:
                # the lifecycle commands call the write cap --sync-rate; the registry command --rate
                if exc.hint and "--rate" in exc.hint:
                    exc.hint = exc.hint.replace("--rate", "--sync-rate")
                raise
            finally:
                push_checkpoint(self.state, checkpoint)
                self.state.push(versions)
                self.state.push(record_path(versions))
            lease.check()
        if not report.ok:
            prefix = f"registry sync {src} -> {dst}: "  # said once, not again inside each error
            first = "; ".join(str(e).removeprefix(prefix) for e in report.errors[:3])
            check = report.verification
            unequal = (f", {check.remaining} not equal when read back (first: {', '.join(check.first[:3])})"
                       if check is not None and not check.ok else "")
            raise OperationFailed(f"registry sync {src} -> {dst}: {len(report.errors)} errors, "
                                  f"{report.blocked} blocked ({first}){unequal}")
        return dict(report.to_json())

    def verify(self, src: str, dst: str) -> dict[str, int]:
        """Every thing and certificate id of `src` exists in `dst` (counts returned)."""
        from orchestrator.aws import aws_errors, client
        from orchestrator.registry import read_snapshot

        with aws_errors(f"verifying the registry {src} -> {dst}"):
            a = read_snapshot(client(self.ctx, "iot", src), pems=False)
            b = read_snapshot(client(self.ctx, "iot", dst), pems=False)
        for what, left, right in (("things", a.things_by_name, b.things_by_name),
                                  ("certificates", a.certificates_by_id, b.certificates_by_id),
                                  ("policies", a.policies_by_name, b.policies_by_name)):
            missing = sorted(set(left) - set(right))
            if missing:
                raise OperationFailed(f"registry of {dst} lacks {len(missing)} {what} of {src} "
                                      f"(first: {', '.join(missing[:5])})")
        return {"things": len(a.things), "certificates": len(a.certificates)}
