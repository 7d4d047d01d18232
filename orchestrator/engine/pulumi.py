"""The Pulumi engine: with `events.py` beside it, the only code that imports `pulumi.automation`.

Every stack operation (up, preview, refresh, destroy, outputs, info, cancel, export, import) goes
through `PulumiEngine._run`, so error translation, logging and timing live in one place.

Each stack gets its own workspace directory (`StateLayout.workspace_dir`, under `.orchestrate/`)
holding a generated `Pulumi.yaml` whose `stackConfigDir` points back at the project's `stacks/`: the stack's
config stays in `stacks/Pulumi.<stack>.yaml`, where plain `pulumi -s <stack>` reads it too, while
parallel stacks never share workspace files. The program is inline (`programs.main.run`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.engine.types import (
    LockInfo,
    Operation,
    Outcome,
    OutputValue,
    ProgressFn,
    PropertyDrift,
    StackDrift,
    StackInfo,
    StackResult,
    StackSpec,
)
from orchestrator.errors import InputRejected, OperationFailed, StackLocked
from orchestrator.state import StateLayout

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context
    from orchestrator.preview.model import StackPreview

T = TypeVar("T")

# Services the programs use: --endpoint-url points each of them at LocalStack or moto.
ENDPOINT_SERVICES = ("acm", "dynamodb", "firehose", "iam", "iot", "kinesis", "kms", "logs", "route53",
                     "s3", "sts")
_COUNTED_OPS = {"create": "create", "update": "update", "delete": "delete", "replace": "replace",
                "create-replacement": "replace", "same": "same"}

INSTALL_HINT = ("install it from https://www.pulumi.com/docs/iac/download-install/, or, offline, build it with "
                "tests/engine/build_pulumi.sh (found there without PATH), or put it on PATH")
INSTALL_OFF = "ORCHESTRATE_PULUMI_INSTALL"  # "0": never download the CLI (air-gapped machines, strict CI)


# The Python SDK's lazy submodules (`pulumi._utils._LazyModule`, behind `pulumi_aws.s3` etc.) are
# not thread-safe: two stacks whose programs touch `aws.s3` for the first time at once fail with
# "module 'pulumi_aws.s3' has no attribute 'Bucket'". Inline programs of parallel stacks run in
# threads of this process, so their declaration bodies (synchronous and short: they only queue
# registrations) take turns; the engine work itself stays parallel.
_PROGRAM_LOCK = threading.Lock()


def _program() -> None:
    """The inline Pulumi program of every stack (`programs.main.run`), one declaration at a time."""
    from programs.main import run

    with _PROGRAM_LOCK:
        run()


def pinned_cli_version() -> str:
    """The CLI version the orchestrator is tested with: the installed `pulumi` SDK's (pinned in
    constraints.txt), as tests/engine/build_pulumi.sh builds it."""
    import importlib.metadata

    return importlib.metadata.version("pulumi")


def tools_cli_root(version: str) -> Path:
    """`${ORCHESTRATE_TOOLS_DIR:-~/.cache/orchestrate-tools}/pulumi-<version>`: where both the
    download (`PulumiCommand.install`) and the offline Go build put `bin/pulumi`."""
    tools = os.environ.get("ORCHESTRATE_TOOLS_DIR") or str(Path.home() / ".cache" / "orchestrate-tools")
    return Path(tools) / f"pulumi-{version}"


def find_pulumi_cli() -> Path | None:
    """`pulumi` on PATH, else `$PULUMI_HOME/bin/pulumi`, else the pinned version in the tools cache."""
    found = shutil.which("pulumi")
    if found:
        return Path(found)
    home = Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi"))
    for candidate in (home / "bin" / "pulumi", tools_cli_root(pinned_cli_version()) / "bin" / "pulumi"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_pulumi_cli(notify: Callable[[str], None], install: Callable[..., Any] | None = None) -> Path:
    """The Pulumi CLI to run: one found (`find_pulumi_cli`), else the pinned version downloaded with
    the Automation API's `PulumiCommand.install` into the tools cache (where the network allows and
    ORCHESTRATE_PULUMI_INSTALL is not 0). Neither: InputRejected (exit 2) naming the download
    page and the offline fallback, the Go build (tests/engine/build_pulumi.sh)."""
    found = find_pulumi_cli()
    if found is not None:
        return found
    version = pinned_cli_version()
    root = tools_cli_root(version)
    if os.environ.get(INSTALL_OFF, "").strip().lower() in ("0", "false", "no", "off"):
        raise InputRejected("the Pulumi CLI was not found on PATH",
                            hint=f"downloading it is off ({INSTALL_OFF}=0); {INSTALL_HINT}")
    if install is None:
        from pulumi import automation as auto

        install = auto.PulumiCommand.install
    from semver import VersionInfo

    notify(f"the Pulumi CLI was not found: installing Pulumi {version} into {root} (PulumiCommand.install)")
    try:
        install(version=VersionInfo.parse(version), root=str(root), skip_version_check=True)
    except Exception as exc:  # noqa: BLE001 - a download fails in many ways (no network, proxy, disk)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputRejected("the Pulumi CLI was not found on PATH",
                            hint=f"installing Pulumi {version} with PulumiCommand.install failed: {reason}; "
                                 f"{INSTALL_HINT}") from None
    cli = root / "bin" / "pulumi"
    if not (cli.is_file() and os.access(cli, os.X_OK)):
        raise InputRejected("the Pulumi CLI was not found on PATH",
                            hint=f"PulumiCommand.install left no executable {cli}; {INSTALL_HINT}")
    return cli


class PulumiEngine:
    def __init__(self, *, project_dir: Path, stacks_dir: Path, backend_url: str, secrets_provider: str | None,
                 endpoint_url: str | None, cli: Path, log: Callable[[str], None] = lambda _m: None,
                 config_path: Path | None = None, run_state: StateLayout | None = None) -> None:
        self.project_dir = project_dir
        self.stacks_dir = stacks_dir
        self.backend_url = backend_url
        self.secrets_provider = secrets_provider if secrets_provider not in (None, "passphrase") else None
        self.endpoint_url = endpoint_url
        self.cli = cli
        self.log = log
        self.config_path = config_path
        self.state = StateLayout(project_dir)
        self.run_state = run_state  # the backend's run state: where stack config files travel
        self._setup_lock = threading.Lock()
        self._pulumi_command: Any = None

    @classmethod
    def from_context(cls, app: Context) -> PulumiEngine:
        """Check everything the engine needs before anything runs (bad setup is exit code 2)."""
        cli = ensure_pulumi_cli(app.notify)
        provider = app.secrets_provider
        if provider is not None and not (provider == "passphrase" or provider.startswith(_PROVIDER_SCHEMES)):
            raise InputRejected(f"unknown secrets provider {provider!r}",
                                hint="passphrase, awskms://…, gcpkms://…, azurekeyvault://… or hashivault://…")
        for restored in restore_stack_configs(app.state, app.stacks_dir, app.env):
            app.console.debug(f"stacks/{restored.name}: restored from the backend's copy")
        current = stack_secrets_providers(app.stacks_dir, app.env)
        if provider is not None:
            # Pulumi takes --secrets-provider only when it creates a stack: for an existing stack it
            # would be ignored without a word. Changing it is an explicit command.
            differ = sorted(name for name, used in current.items() if not _same_provider(used, provider))
            if differ:
                raise InputRejected(
                    f"{', '.join(differ)} {'uses' if len(differ) == 1 else 'use'} "
                    f"{_provider_label(current[differ[0]])} secrets, not {_provider_label(provider)}: "
                    "the secrets provider of an existing stack is not changed by --secrets-provider",
                    hint=f"run `orchestrate secrets change-provider --to {provider}` to change it, "
                         "or drop --secrets-provider")
        needs_passphrase = provider == "passphrase" or (
            provider is None and (not current or any(used == "passphrase" for used in current.values())))
        if needs_passphrase:
            _require_passphrase()
        if not (app.project_dir / "Pulumi.yaml").is_file():
            raise InputRejected(f"{app.project_dir}: no Pulumi.yaml here", hint="run from the project root")
        backend = app.backend_url
        if backend.startswith("file://"):
            Path(backend[len("file://"):]).mkdir(parents=True, exist_ok=True)
        return cls(project_dir=app.project_dir, stacks_dir=app.stacks_dir, config_path=app.config_path,
                   backend_url=backend,
                   secrets_provider=provider, endpoint_url=app.endpoint_url, cli=cli, log=app.console.debug,
                   run_state=app.state)

    def change_secrets_provider(self, stack: str, provider: str) -> None:
        """Re-encrypt `stack`'s secrets (config and state) with `provider` (`pulumi stack
        change-secrets-provider`): needs the current provider's key and the new one."""
        def go() -> None:
            self._cli(self._stack(stack, create=False), "stack", "change-secrets-provider", provider)
            self._keep_config(stack)

        self._run("change-secrets-provider", stack, go)

    # -- the one place every operation goes through -------------------------------------------
    def _run(self, operation: str, stack: str, fn: Callable[[], T]) -> T:
        from pulumi.automation import errors as auto_errors

        started = time.monotonic()
        self.log(f"[{stack}] {operation} starting")
        repaired = False
        try:
            while True:
                try:
                    return fn()
                except auto_errors.ConcurrentUpdateError as exc:
                    raise _locked(stack, exc) from None
                except auto_errors.StackNotFoundError:
                    raise OperationFailed(f"{stack} does not exist in {self.backend_url}") from None
                except auto_errors.CommandError as exc:
                    text = str(exc)
                    if "locked by" in text or "currently locked" in text:
                        raise _locked(stack, exc) from None
                    if "EOF" in text and not repaired:
                        torn = self._repair_torn_sidecars(stack)
                        if torn:  # once: the operation had not started (it could not read the state)
                            repaired = True
                            self.log(f"[{stack}] removed torn state metadata left by a killed run: "
                                     f"{', '.join(p.name for p in torn)}; retrying")
                            continue
                    raise OperationFailed(f"{operation} of {stack} failed: {_last_line(exc)}") from None
        finally:
            self.log(f"[{stack}] {operation} finished in {time.monotonic() - started:.1f}s")

    def _repair_torn_sidecars(self, stack: str) -> list[Path]:
        """A file backend keeps each checkpoint's metadata in a `<stack>.json.attrs` sidecar,
        written after the checkpoint itself (gocloud fileblob). A CLI killed between the two leaves
        it empty or cut short, and every later command fails with "failed to load checkpoint: EOF"
        although the checkpoint is whole (the same goes for the update history's files). Such a
        sidecar holds nothing worth keeping (no sidecar means default metadata, and the next
        checkpoint writes a new one): remove it."""
        if not self.backend_url.startswith("file://"):
            return []
        root = Path(self.backend_url[len("file://"):].split("?", 1)[0]) / ".pulumi"
        torn = []
        candidates = [*root.glob(f"stacks/**/{stack}.json*.attrs"), *root.glob(f"history/**/{stack}/*.attrs")]
        for path in candidates:
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                torn.append(path)
        return torn

    # -- workspaces ------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {"PULUMI_BACKEND_URL": self.backend_url, "PULUMI_SKIP_UPDATE_CHECK": "true"}
        if self.config_path is not None:
            # the replication stack's `orchestrate registry sync` reads the same topology file
            env["ORCHESTRATE_CONFIG"] = str(self.config_path)
        if self.endpoint_url:
            # what the programs run themselves (the replication stack's `orchestrate registry
            # sync`, through the command provider) reaches the same endpoint: boto3 honours it
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
            env.setdefault("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", "testing"))
            env.setdefault("AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))
        return env

    def _workdir(self, stack: str) -> Path:
        work = self.state.workspace_dir(stack)
        with self._setup_lock:
            work.mkdir(parents=True, exist_ok=True)
            rel = os.path.relpath(self.stacks_dir, work)
            # The program is inline (served by this process): no `main`, which the CLI would stat and
            # which need not exist where the orchestrator is installed rather than checked out.
            text = f"name: iot-platform\nruntime: python\nstackConfigDir: {rel}\n"
            target = work / "Pulumi.yaml"
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
        return work

    def _command(self) -> Any:
        """The CLI found on PATH (`find_pulumi_cli`), not whatever `pulumi` the SDK would look up:
        made once per engine (the SDK's default runs `pulumi version` for every workspace)."""
        from pulumi import automation as auto

        with self._setup_lock:
            if self._pulumi_command is None:
                if self.cli.parent.name == "bin":  # <root>/bin/pulumi: the layout the SDK expects
                    self._pulumi_command = auto.PulumiCommand(root=str(self.cli.parent.parent),
                                                              skip_version_check=True)
                else:  # e.g. the release tarball's pulumi/pulumi, found on PATH
                    self._pulumi_command = auto.PulumiCommand()
            return self._pulumi_command

    def _stack(self, name: str, *, create: bool) -> Any:
        from pulumi import automation as auto

        opts = auto.LocalWorkspaceOptions(
            work_dir=str(self._workdir(name)),
            env_vars=self._env(),
            secrets_provider=self.secrets_provider,
            pulumi_command=self._command(),
        )
        if create:
            return auto.create_or_select_stack(name, project_name="iot-platform", program=_program, opts=opts)
        return auto.select_stack(name, project_name="iot-platform", program=_program, opts=opts)

    def _cli(self, stack: Any, *args: str) -> str:
        """A CLI command the Automation API has no (safe) method for, in the stack's workspace."""
        ws = stack.workspace
        out: str = ws.pulumi_command.run([*args, "--stack", stack.name], ws.work_dir, ws.env_vars).stdout
        return out

    def _export(self, stack: Any) -> dict[str, Any]:
        """The stack's state with secrets still encrypted. (`Stack.export_stack` passes
        --show-secrets: its result would carry every secret in plain text, into backups too.)"""
        state: dict[str, Any] = json.loads(self._cli(stack, "stack", "export"))
        return state

    def _config_file(self, name: str) -> Path:
        return self.stacks_dir / f"Pulumi.{name}.yaml"

    def _configure(self, stack: Any, spec: StackSpec) -> str | None:
        """Write the spec's config into `stacks/Pulumi.<stack>.yaml` (committed: it carries the
        stack's secrets key and the config it was applied with). `--endpoint-url` overrides never go
        there: they live in a scratch copy under the workspace, passed as `--config-file`
        (returned; None without an endpoint)."""
        from pulumi import automation as auto

        desired = {k: auto.ConfigValue(v, secret=k in spec.secret_keys) for k, v in spec.config.items()}
        current = stack.get_all_config()
        # only keys the orchestrator owns and no longer wants go: a user's own keys (aws:defaultTags,
        # aws:assumeRoles, aws:allowedAccountIds …) stay in the file across every `up`
        stale = [k for k in current if k not in desired and orchestrator_owns(k)]
        if stale:
            stack.remove_all_config(stale)
        stack.set_all_config(desired)
        return self._endpoint_config(spec.name)

    def _configure_for_up(self, stack: Any, spec: StackSpec) -> str | None:
        """`_configure`, then the file's copy in the backend (before the update: a failed `up` has
        created the stack all the same). A preview's config is put back, so it never goes there."""
        config_file = self._configure(stack, spec)
        self._keep_config(spec.name)
        return config_file

    def _keep_config(self, name: str) -> None:
        """Copy `stacks/Pulumi.<stack>.yaml` (secrets provider, encrypted key, config) into the
        backend's run state, from where a clone without the file restores it."""
        source = self._config_file(name)
        if self.run_state is None or not source.is_file():
            return
        data = source.read_bytes()
        path = self.run_state.stack_config_path(name)
        stored = self.run_state.store.get(self.run_state.key(path))
        if stored is None or stored.data != data:
            self.run_state.save_bytes(path, data)

    def _endpoint_config(self, name: str) -> str | None:
        """With `--endpoint-url`: `.orchestrate/workspaces/<stack>/endpoint-config.yaml`, the
        committed config file plus the provider overrides that point AWS at the endpoint (git
        ignores .orchestrate/). Without: None (the committed file is used as it is)."""
        if not self.endpoint_url:
            return None
        import yaml

        from orchestrator.state import atomic_write_text

        source = self._config_file(name)
        try:
            doc = yaml.safe_load(source.read_text(encoding="utf-8")) or {} if source.exists() else {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputRejected(f"{source}: cannot read the stack config: {exc}") from None
        config = dict(doc.get("config") or {})
        config.update(endpoint_overrides(self.endpoint_url, config))
        doc["config"] = config
        target = self._workdir(name) / "endpoint-config.yaml"
        atomic_write_text(target, yaml.safe_dump(doc, sort_keys=True), mode=0o600)
        return str(target)

    def _remove_stack_if_empty(self, stack: Any, name: str) -> bool:
        """After a destroy that left nothing: remove the stack from the backend and its config file
        (nothing would ever read them again; a new `up` creates both afresh)."""
        deployment = self._export(stack).get("deployment") or {}
        left = [r for r in deployment.get("resources", []) or [] if not str(r.get("type", "")).startswith("pulumi:")]
        if left:
            return False
        stack.workspace.remove_stack(name)
        self._config_file(name).unlink(missing_ok=True)
        if self.run_state is not None:
            self.run_state.delete(self.run_state.stack_config_path(name))
        (self.state.workspace_dir(name) / "endpoint-config.yaml").unlink(missing_ok=True)
        self.log(f"[{name}] destroyed: stack and stacks/Pulumi.{name}.yaml removed")
        return True

    # -- Engine interface ------------------------------------------------------------------------
    def up(self, spec: StackSpec, on_progress: ProgressFn | None = None) -> StackResult:
        counts: dict[str, int] = {}

        def on_event(event: Any) -> None:
            meta = getattr(getattr(event, "res_outputs_event", None), "metadata", None)
            if meta is None:
                return
            key = _COUNTED_OPS.get(str(getattr(meta.op, "value", meta.op)))
            if key:
                counts[key] = counts.get(key, 0) + 1
                if on_progress and key != "same":
                    on_progress(spec.name, dict(counts))

        def go() -> StackResult:
            started = time.monotonic()
            stack = self._stack(spec.name, create=True)
            config_file = self._configure_for_up(stack, spec)
            result = stack.up(on_event=on_event, color="never", config_file=config_file)
            return StackResult(spec.name, Operation.UP, Outcome.SUCCEEDED, counts=_op_counts(result.summary),
                               outputs=_outputs(result.outputs), seconds=time.monotonic() - started)

        return self._run("up", spec.name, go)

    def preview(self, spec: StackSpec) -> StackPreview:
        """Preview with the spec's config; the stack's previous config is put back afterwards, so
        placeholders of a preview never stay in `stacks/Pulumi.<stack>.yaml`."""
        from pulumi.automation import errors as auto_errors

        from orchestrator.engine.events import Collector
        from orchestrator.preview.model import StackPreview, placeholders_in_config

        def go() -> StackPreview:
            collector = Collector()
            try:
                stack, created = self._stack(spec.name, create=False), False
            except auto_errors.StackNotFoundError:
                stack, created = self._stack(spec.name, create=True), True
            config_file = self._config_file(spec.name)
            before = config_file.read_bytes() if config_file.exists() and not created else None
            failure: str | None = None
            try:
                scratch = self._configure(stack, spec)
                stack.preview(on_event=collector, color="never", config_file=scratch)
            except auto_errors.ConcurrentUpdateError:
                raise
            except auto_errors.CommandError as exc:
                failure = _last_line(exc)
            finally:
                # Byte for byte what was there (re-setting secrets through the CLI would re-encrypt
                # them); a stack that exists only because of this preview goes again, file and all.
                if created:
                    stack.workspace.remove_stack(spec.name)
                    config_file.unlink(missing_ok=True)
                elif before is None:
                    config_file.unlink(missing_ok=True)
                else:
                    config_file.write_bytes(before)
            changes, counts, error = collector.result()
            env = spec.config.get("iot-platform:env", "")
            return StackPreview(spec.name, spec.kind, spec.region, changes, counts,
                                placeholders_in_config(spec.config, env), error or failure)

        return self._run("preview", spec.name, go)

    def destroy(self, spec: StackSpec, *, include_protected: bool = False,
                on_progress: ProgressFn | None = None) -> StackResult:
        from pulumi.automation import errors as auto_errors

        def go() -> StackResult:
            started = time.monotonic()
            try:
                stack = self._stack(spec.name, create=False)
            except auto_errors.StackNotFoundError:  # never created, or destroyed and removed before
                self._config_file(spec.name).unlink(missing_ok=True)
                if self.run_state is not None:
                    self.run_state.delete(self.run_state.stack_config_path(spec.name))
                return StackResult(spec.name, Operation.DESTROY, Outcome.SUCCEEDED, message="no such stack")
            if include_protected:
                self._cli(stack, "state", "unprotect", "--all", "--yes")
            result = stack.destroy(exclude_protected=not include_protected, color="never",
                                   config_file=self._endpoint_config(spec.name))
            self._remove_stack_if_empty(stack, spec.name)
            return StackResult(spec.name, Operation.DESTROY, Outcome.SUCCEEDED, counts=_op_counts(result.summary),
                               seconds=time.monotonic() - started)

        return self._run("destroy", spec.name, go)

    def refresh(self, spec: StackSpec, *, clear_pending_creates: bool = False) -> StackResult:
        def go() -> StackResult:
            started = time.monotonic()
            stack = self._stack(spec.name, create=False)
            result = stack.refresh(clear_pending_creates=clear_pending_creates or None, color="never",
                                   config_file=self._endpoint_config(spec.name))
            return StackResult(spec.name, Operation.REFRESH, Outcome.SUCCEEDED, counts=_op_counts(result.summary),
                               seconds=time.monotonic() - started)

        return self._run("refresh", spec.name, go)

    def outputs(self, stack: str) -> Mapping[str, OutputValue] | None:
        from pulumi.automation import errors as auto_errors

        def go() -> Mapping[str, OutputValue] | None:
            try:
                s = self._stack(stack, create=False)
            except auto_errors.StackNotFoundError:
                return None
            values = s.outputs()
            return _outputs(values) if values else None

        return self._run("outputs", stack, go)

    def info(self, stack: str) -> StackInfo:
        from pulumi.automation import errors as auto_errors

        def go() -> StackInfo:
            try:
                s = self._stack(stack, create=False)
            except auto_errors.StackNotFoundError:
                return StackInfo(stack, deployed=False)
            deployment = self._export(s).get("deployment") or {}
            resources = [r for r in deployment.get("resources", []) or []
                         if not str(r.get("type", "")).startswith("pulumi:")]
            pending = tuple(f"{p.get('type', '?')} {p.get('resource', {}).get('urn', '?')}"
                            for p in deployment.get("pending_operations", []) or [])
            summary = s.info(show_secrets=False)
            return StackInfo(
                stack, deployed=bool(resources), resource_count=len(resources),
                last_result=getattr(summary, "result", None),
                last_update=summary.end_time.isoformat() if summary and summary.end_time else None,
                pending_operations=pending,
            )

        return self._run("info", stack, go)

    def cancel(self, stack: str) -> None:
        def go() -> None:
            try:
                self._stack(stack, create=False).cancel()
            except Exception as exc:  # noqa: BLE001 - nothing to cancel is fine; report the rest
                self.log(f"[{stack}] cancel: {_last_line(exc)}")

        self._run("cancel", stack, go)

    def drift(self, stack: str) -> StackDrift:
        """`pulumi refresh --preview-only`: what the providers read differs from the state (the
        state and the cloud are left as they are)."""
        from pulumi.automation import errors as auto_errors

        from orchestrator.engine.events import DriftCollector

        def go() -> StackDrift:
            try:
                s = self._stack(stack, create=False)
            except auto_errors.StackNotFoundError:
                return StackDrift(stack, deployed=False)
            # PULUMI_SKIP_CONFIRMATIONS=true (common on CI) means --yes to the CLI, which refuses
            # it with --preview-only ("--yes and --preview-only cannot be used together")
            s.workspace.env_vars["PULUMI_SKIP_CONFIRMATIONS"] = "false"
            collector = DriftCollector()
            failure: str | None = None
            try:
                s.preview_refresh(on_event=collector, color="never", config_file=self._endpoint_config(stack))
            except auto_errors.ConcurrentUpdateError:
                raise
            except auto_errors.CommandError as exc:
                if "locked" in str(exc):
                    raise
                failure = _last_line(exc)
            rows, error = collector.result()
            return StackDrift(stack, True, tuple(PropertyDrift(*row) for row in rows), error or failure)

        return self._run("drift", stack, go)

    def lock(self, stack: str) -> LockInfo | None:
        """The newest lock file of `stack` in the backend (`.pulumi/locks/<org>/<project>/<stack>/
        <id>.json`, written by the CLI as {"pid", "username", "hostname", "timestamp"})."""
        found = [info for doc in self._lock_documents(stack) if (info := _lock_info(stack, doc)) is not None]
        return max(found, key=lambda f: f.since or "") if found else None

    def _lock_documents(self, stack: str) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        if self.backend_url.startswith("file://"):
            root = Path(self.backend_url[len("file://"):].split("?", 1)[0]).expanduser() / ".pulumi" / "locks"
            for lock_file in [*root.glob(f"*/*/{stack}/*.json"), *root.glob(f"{stack}/*.json")]:
                try:
                    docs.append(json.loads(lock_file.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    continue
        elif self.backend_url.startswith("s3://"):
            from orchestrator.aws import aws_errors
            from orchestrator.state import s3_backend

            s3, bucket, path = s3_backend(self.backend_url, endpoint_url=self.endpoint_url)
            prefix = f"{path}/.pulumi/locks/".lstrip("/")
            with aws_errors(f"reading the locks of {stack}"):
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    for obj in page.get("Contents", []) or []:
                        key = obj["Key"]
                        if key.endswith(".json") and key.rsplit("/", 2)[-2] == stack:
                            try:
                                docs.append(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
                            except ValueError:
                                continue
        return docs

    def export(self, stack: str) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            state = self._export(self._stack(stack, create=False))
            return {"version": state.get("version", 3), "deployment": state.get("deployment")}

        return self._run("export", stack, go)

    def import_(self, stack: str, state: dict[str, Any]) -> None:
        import tempfile

        def go() -> None:
            s = self._stack(stack, create=True)
            # our own private file, removed whatever happens (`Stack.import_stack` leaves a
            # world-readable temp file behind when the import fails)
            with tempfile.TemporaryDirectory(prefix="orchestrate-import-") as tmp:
                path = Path(tmp) / "state.json"
                path.write_text(json.dumps({"version": state.get("version", 3),
                                            "deployment": state.get("deployment")}))
                self._cli(s, "stack", "import", "--file", str(path))

        self._run("import", stack, go)


_PROVIDER_SCHEMES = ("awskms://", "gcpkms://", "azurekeyvault://", "hashivault://", "default")


# Config keys the orchestrator writes: its own project's namespace and `aws:region` (from the
# topology), and the endpoint overrides older versions wrote into the committed file. Every other key
# in `stacks/Pulumi.<stack>.yaml` is the user's and is kept.
_LEGACY_OVERRIDES = frozenset({"aws:endpoints", "aws:skipCredentialsValidation", "aws:skipRequestingAccountId",
                               "aws:skipMetadataApiCheck", "aws:s3UsePathStyle"})
_OPERATING_KEYS = ("secretsprovider", "encryptedkey", "encryptionsalt")  # what opens the stack's secrets


def orchestrator_owns(key: str) -> bool:
    from programs.contract import NAMESPACE

    return key.startswith(f"{NAMESPACE}:") or key == "aws:region" or key in _LEGACY_OVERRIDES


def restore_stack_configs(state: StateLayout, stacks_dir: Path, env: str) -> list[Path]:
    """Bring the backend's copies of `env`'s stack config files into `stacks/` where the clone has
    none (a fresh checkout, a CI job): the whole file when it is missing; only the secrets keys
    (`secretsprovider`, `encryptedkey`, `encryptionsalt`) when the file is there without any of
    them. A local file that has them is never touched. Returns the files written."""
    import yaml

    from orchestrator.state import atomic_write_bytes

    prefix = f"Pulumi.{env}-"
    written = []
    for key, _mtime in state.store.keys(f"stacks/{prefix}"):
        name = key.rsplit("/", 1)[-1]
        suffix = name[len(prefix):-len(".yaml")] if name.endswith(".yaml") else ""
        if suffix not in ("dns", "replication") and not suffix.startswith("region-"):
            continue  # another environment whose name starts with `env-`
        target = stacks_dir / name
        stored = state.store.get(key)
        if stored is None:
            continue
        if not target.exists():
            atomic_write_bytes(target, stored.data)
            written.append(target)
            continue
        try:
            local = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
            theirs = yaml.safe_load(stored.data) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(local, dict) or not isinstance(theirs, dict) or any(k in local for k in _OPERATING_KEYS):
            continue
        keys = {k: theirs[k] for k in _OPERATING_KEYS if theirs.get(k)}
        if keys:  # top-level keys appended: the user's text (comments, order) stays as it is
            text = target.read_text(encoding="utf-8")
            extra = yaml.safe_dump(keys, sort_keys=True, width=10_000)
            atomic_write_bytes(target, (text if text.endswith("\n") or not text else text + "\n").encode()
                               + extra.encode())
            written.append(target)
    return written


def stack_secrets_providers(stacks_dir: Path, env: str) -> dict[str, str]:
    """The secrets provider of each existing stack of `env`, from its `Pulumi.<stack>.yaml`
    (`secretsprovider:`, else "passphrase" when it has an `encryptionsalt`)."""
    import yaml

    found: dict[str, str] = {}
    for path in sorted(stacks_dir.glob(f"Pulumi.{env}-*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        name = path.name[len("Pulumi."):-len(".yaml")]
        if doc.get("secretsprovider") and doc["secretsprovider"] != "passphrase":
            found[name] = str(doc["secretsprovider"])
        elif doc.get("encryptionsalt") or doc.get("secretsprovider") == "passphrase":
            found[name] = "passphrase"
    return found


def _same_provider(used: str, wanted: str) -> bool:
    return used == wanted or (used.split("?", 1)[0] == wanted.split("?", 1)[0] and used != "passphrase")


def _provider_label(provider: str) -> str:
    return provider if provider == "passphrase" else provider.split("?", 1)[0]


def _require_passphrase() -> None:
    value = os.environ.get("PULUMI_CONFIG_PASSPHRASE")
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return
    if value is None:
        raise InputRejected("no passphrase for the stack secrets",
                            hint="set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE, "
                                 "or use --secrets-provider awskms://… (ORCHESTRATE_SECRETS_PROVIDER)")
    if not value:
        raise InputRejected("PULUMI_CONFIG_PASSPHRASE is set but empty (a secret not defined for this job?)",
                            hint="set the passphrase, or use a KMS secrets provider")


def _endpoints_json(url: str) -> str:
    return json.dumps([{service: url for service in ENDPOINT_SERVICES}])


def endpoint_overrides(url: str, config: Mapping[str, Any]) -> dict[str, str]:
    """The provider settings that point AWS at `url` (LocalStack, moto) for a stack whose config is
    `config`. The credential and account checks are skipped (an S3-compatible store may have no STS),
    except when the stack names `aws:allowedAccountIds` / `aws:forbiddenAccountIds`: pulumi-aws
    checks the account it asked STS for, and with both checks skipped it knows none and refuses
    every account ("AWS account ID not allowed: " with an empty id; aws-sdk-go-base
    `GetAwsAccountIDAndPartition`, `VerifyAccountIDAllowed`), so then it asks (moto and LocalStack
    answer GetCallerIdentity)."""
    guarded = bool(config.get("aws:allowedAccountIds") or config.get("aws:forbiddenAccountIds"))
    skip = "false" if guarded else "true"
    return {
        "aws:skipCredentialsValidation": skip,
        "aws:skipRequestingAccountId": skip,
        "aws:skipMetadataApiCheck": "true",
        "aws:s3UsePathStyle": "true",
        "aws:endpoints": _endpoints_json(url),
    }


def _outputs(values: Mapping[str, Any]) -> dict[str, OutputValue]:
    return {k: OutputValue(v.value, secret=bool(v.secret)) for k, v in values.items()}


def _op_counts(summary: Any) -> dict[str, int]:
    changes = getattr(summary, "resource_changes", None) or {}
    counts: dict[str, int] = {}
    for op, n in changes.items():
        key = _COUNTED_OPS.get(str(getattr(op, "value", op)))
        if key:
            counts[key] = counts.get(key, 0) + int(n)
    return counts


def _lock_hint(stack: str) -> str:
    return (f"if no update is running any more (a crashed, killed or cancelled run left the lock), run "
            f"`orchestrate recover {stack}`: it shows the holder and clears the lock")


def _locked(stack: str, exc: BaseException) -> StackLocked:
    """StackLocked naming the holder and the lock's age, from the CLI's message."""
    from orchestrator.state import lock_age

    holder, since = _lock_holder(exc)
    age = _age_seconds(since)
    who = f": held by {holder}{lock_age(since, age)}" if holder else " (the backend did not say who holds it)"
    return StackLocked(f"{stack} is locked by another update{who}", stack=stack, holder=holder,
                       since=since, hint=_lock_hint(stack))


def _lock_holder(exc: BaseException) -> tuple[str | None, str | None]:
    """(holder, since) from the CLI's "<lock url>: created by user@host (pid N) at T" line (what
    Pulumi 3.272's file and S3 backends print under "the stack is currently locked by 1 lock(s)")."""
    import re

    text = str(getattr(exc, "stderr", None) or exc)
    found = re.search(r"created by (.+?) at (\S+?)\.?\s*$", text, re.M)
    if found:
        return found.group(1).strip(), _short_time(found.group(2))
    found = re.search(r"created by ([^\n]+?)(?:\.?\s*$|\n)", text, re.M)
    return (found.group(1).strip() if found else None), None


def _short_time(stamp: str) -> str:
    """RFC 3339 with nanoseconds (what the CLI writes) as seconds: 2026-11-30T12:16:47Z."""
    return stamp.split(".", 1)[0].rstrip("Z") + "Z" if stamp.endswith("Z") else stamp


def _age_seconds(since: str | None) -> float | None:
    from datetime import datetime, timezone

    if since is None:
        return None
    try:
        then = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - then).total_seconds())


def _lock_info(stack: str, doc: dict[str, Any]) -> LockInfo | None:
    if not isinstance(doc, dict):
        return None
    user, host, pid = doc.get("username") or "?", doc.get("hostname") or "?", doc.get("pid")
    since = _short_time(str(doc["timestamp"])) if doc.get("timestamp") else None
    return LockInfo(stack, f"{user}@{host} (pid {pid})", since, _age_seconds(since), host=str(host),
                    pid=int(pid) if isinstance(pid, int) else None)


# The engine's own lines after a resource or provider error (its closing line; the program told the
# engine went away): never the useful one.
_GENERIC_ERROR = re.compile(r"error: (?:(?:update|preview|refresh|destroy|import) failed\.?"
                            r"|resource monitor has terminated, shutting down\.?)", re.I)


def _last_line(exc: BaseException) -> str:
    """The most useful line of an engine error, scrubbed of secret shapes: the diagnostic's error,
    not the engine's closing "error: update failed"; a multi-line provider error (a role that cannot
    be assumed: its summary, then "Error: operation error STS: AssumeRole ... AccessDenied ...") keeps
    its first and last error lines."""
    from orchestrator.scrub import scrub

    text = getattr(exc, "stderr", None) or str(exc)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    specific = [ln for ln in errors if not _GENERIC_ERROR.fullmatch(ln)]
    if specific:
        first, last = specific[0], specific[-1]
        return scrub((first if first == last else f"{first[:300]} {last}")[:600])
    # a crashed CLI ends with a goroutine dump: its "Panic: <reason>" line is the useful one
    panics = [f"the Pulumi CLI crashed: {ln}" for ln in lines if ln.startswith("Panic:")]
    chosen = (errors or panics or lines or [type(exc).__name__])[-1]
    return scrub(chosen[:500])
