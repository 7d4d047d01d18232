"""Global options and the per-invocation application context.

Global options are accepted before and after the command name alike (`orchestrate --env prod up`
and `orchestrate up --env prod`): `global_options` adds them to the group and to every command, and
a value given after the command wins.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orchestrator.cli.console import Console
from orchestrator.errors import InputRejected

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from orchestrator.engine.types import Engine
    from orchestrator.topology import Topology

F = TypeVar("F", bound=Callable[..., Any])

_GLOBALS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--env", "env"), {"metavar": "NAME", "help": "Environment [default: dev; env ORCHESTRATE_ENV]."}),
    (("--config", "config"), {"metavar": "PATH", "help": "Topology file [default: stacks/<env>.topology.yaml; "
                                                         "env ORCHESTRATE_CONFIG]."}),
    (("--backend", "backend"), {"metavar": "URL",
                                "help": "State backend [default: file://./.pulumi-state; env PULUMI_BACKEND_URL]."}),
    (("--endpoint-url", "endpoint_url"), {"metavar": "URL",
                                          "help": "Point every AWS call (provider and boto3) at LocalStack/moto."}),
    (("--secrets-provider", "secrets_provider"), {"metavar": "URL",
                                                  "help": "passphrase (default) or awskms://…"}),
    (("--json", "json_output"), {"is_flag": True, "default": None, "help": "Machine output on stdout."}),
    (("-v", "--verbose", "verbose"), {"is_flag": True, "default": None, "help": "More detail on stderr."}),
]


class Deps:
    """What tests may inject: the console and the engine factory.

    Plain classes here and below, not dataclasses: this module is on the path of `--help`."""

    def __init__(self, console: Console | None = None,
                 engine_factory: Callable[[AppContext], Engine] | None = None,
                 values: dict[str, Any] | None = None) -> None:
        self.console = console
        self.engine_factory = engine_factory
        self.values: dict[str, Any] = dict(values or {})  # global option values seen so far


def global_options(func: F) -> F:
    """Add every global option to a group or command; values land in ctx.obj.values."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        deps = ctx.ensure_object(Deps)
        for decls, _ in _GLOBALS:
            name = decls[-1]
            value = kwargs.pop(name, None)
            if value is not None:
                deps.values[name] = value
        return func(*args, **kwargs)

    own = list(getattr(func, "__click_params__", []))
    wrapper.__click_params__ = []  # type: ignore[attr-defined]
    for decls, attrs in reversed(_GLOBALS):
        wrapper = click.option(*decls, **attrs, expose_value=True)(wrapper)
    # click shows params in reverse list order: the command's own options first, then the globals.
    wrapper.__click_params__ = wrapper.__click_params__ + own  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class AppContext:
    """The resolved global options of one invocation, and what they lead to (topology, engine)."""

    def __init__(self, *, env: str, project_dir: Path, config_path: Path, backend_url: str,
                 endpoint_url: str | None, secrets_provider: str | None, json_output: bool, verbose: bool,
                 console: Console, engine_factory: Callable[[AppContext], Engine] | None = None) -> None:
        self.env = env
        self.project_dir = project_dir
        self.config_path = config_path
        self.backend_url = backend_url
        self.endpoint_url = endpoint_url
        self.secrets_provider = secrets_provider
        self.json_output = json_output
        self.verbose = verbose
        self.console = console
        self.engine_factory = engine_factory
        self._topology: Topology | None = None
        self._engine: Engine | None = None

    @property
    def stacks_dir(self) -> Path:
        return self.config_path.parent

    @property
    def state_dir(self) -> Path:
        """Where the orchestrator keeps its own files (journals, checkpoints, workspaces)."""
        return self.project_dir / ".orchestrate"

    def topology(self) -> Topology:
        if self._topology is None:
            from orchestrator import topology

            self._topology = topology.load(self.config_path, env=self.env)
        return self._topology

    def reload_topology(self) -> Topology:
        self._topology = None
        return self.topology()

    def engine(self) -> Engine:
        if self._engine is None:
            if self.engine_factory is not None:
                self._engine = self.engine_factory(self)
            else:
                from orchestrator.engine.pulumi import PulumiEngine

                self._engine = PulumiEngine.from_app(self)
        return self._engine


def find_project_dir(start: Path) -> Path | None:
    for d in (start, *start.parents):
        # A stack's generated workspace (.orchestrate/workspaces/<stack>/Pulumi.yaml) is not the
        # project: commands the engine runs there (the replication stack's registry sync) must
        # find the project root above it.
        if d.parent.name == "workspaces" and d.parent.parent.name == ".orchestrate":
            continue
        if (d / "Pulumi.yaml").is_file():
            return d
    return None


def app_context(ctx: click.Context) -> AppContext:
    """Resolve the global options once per invocation into an AppContext."""
    from pathlib import Path  # deferred with everything else `--help` does not need

    deps = ctx.ensure_object(Deps)
    root = ctx.find_root()
    cached = root.meta.get("orchestrate.app")
    if cached is not None:
        return cached
    v = deps.values
    env = v.get("env") or os.environ.get("ORCHESTRATE_ENV") or "dev"
    cwd = Path.cwd()
    # ORCHESTRATE_CONFIG: how the engine hands --config to what the programs run themselves (the
    # replication stack's `orchestrate registry sync`)
    config_arg = v.get("config") or os.environ.get("ORCHESTRATE_CONFIG")
    if config_arg:
        config_path = Path(config_arg).resolve()
        project_dir = find_project_dir(config_path.parent) or find_project_dir(cwd) or cwd
    else:
        project_dir = find_project_dir(cwd) or cwd
        config_path = project_dir / "stacks" / f"{env}.topology.yaml"
        if not config_path.exists():
            raise InputRejected(f"{config_path}: topology file not found",
                                hint="run from the project root or pass --config PATH")
    backend = v.get("backend") or os.environ.get("PULUMI_BACKEND_URL") or \
        f"file://{(project_dir / '.pulumi-state').as_posix()}"
    console = deps.console or Console()
    console.verbose = bool(v.get("verbose"))
    console.json_mode = bool(v.get("json_output"))
    app = AppContext(
        env=env, project_dir=project_dir, config_path=config_path, backend_url=backend,
        endpoint_url=v.get("endpoint_url"), secrets_provider=v.get("secrets_provider"),
        json_output=bool(v.get("json_output")), verbose=bool(v.get("verbose")), console=console,
        engine_factory=deps.engine_factory,
    )
    root.meta["orchestrate.app"] = app
    return app


def pass_app(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command its AppContext as the first argument (after global options are merged)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(app_context(click.get_current_context()), *args, **kwargs)

    return wrapper


def command(group: click.Group, name: str, **attrs: Any) -> Callable[[F], F]:
    """Register a command that accepts the global options and receives the AppContext."""

    def decorate(func: F) -> F:
        return group.command(name, **attrs)(global_options(pass_app(func)))  # type: ignore[return-value]

    return decorate
