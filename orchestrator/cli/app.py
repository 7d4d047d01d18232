"""The composition root: global options, the lazy command group, and the one `Context` per run.

Global options are accepted before and after the command name alike (`orchestrate --env prod up`
and `orchestrate up --env prod`): `OrchestrateCommand` and `LazyGroup` add them to every command and
group as ordinary click options whose callbacks record the value (a value given after the command
wins). `context_for` resolves them once per invocation into an `orchestrator.context.Context` with
the Pulumi engine as its engine factory, unless a test injected another through `Deps`.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orchestrator.console import Console
from orchestrator.context import Context, EngineFactory
from orchestrator.errors import InputRejected

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

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
                                                  "help": "Secrets provider of new stacks: passphrase or awskms://… "
                                                          "[default: each stack's own; env "
                                                          "ORCHESTRATE_SECRETS_PROVIDER]."}),
    (("--json", "json_output"), {"is_flag": True, "default": None, "help": "Machine output on stdout."}),
    (("-v", "--verbose", "verbose"), {"is_flag": True, "default": None, "help": "More detail on stderr."}),
]


class Deps:
    """What tests may inject: the console and the engine factory.

    Plain classes here and below, not dataclasses: this module is on the path of `--help`."""

    def __init__(self, console: Console | None = None, engine_factory: EngineFactory | None = None,
                 values: dict[str, Any] | None = None) -> None:
        self.console = console
        self.engine_factory = engine_factory
        self.values: dict[str, Any] = dict(values or {})  # global option values seen so far


def _record(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and param.name:
        ctx.ensure_object(Deps).values[param.name] = value
    return value


def _global_params() -> list[click.Parameter]:
    return [click.Option(list(decls), expose_value=False, callback=_record, **attrs) for decls, attrs in _GLOBALS]


_GLOBAL_NAMES = {attrs_name for decls, _ in _GLOBALS for attrs_name in decls[-1:]}


def _format_options(command: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """A command's own options in full; the global ones named on one line (`orchestrate --help`
    describes them), so they are not repeated on every page. The root lists them in full."""
    if ctx.parent is None:
        click.Command.format_options(command, ctx, formatter)
        return
    own: list[tuple[click.Parameter, tuple[str, str]]] = []
    shared: list[tuple[click.Parameter, tuple[str, str]]] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or isinstance(param, click.Argument):
            continue
        (shared if param.name in _GLOBAL_NAMES else own).append((param, record))
    if own:
        with formatter.section("Options"):
            formatter.write_dl([record for _, record in own])
    if shared:
        names = ", ".join(min(p.opts, key=len) if p.name == "verbose" else p.opts[0] for p, _ in shared)
        with formatter.section("Global options (before or after the command; see orchestrate --help)"):
            formatter.write_text(names)


KIND_KEY = "orchestrate.kind"


def _note_kind(ctx: click.Context) -> None:
    """Record the command being run (`registry-sync`) as the kind of the run's JSON document."""
    names: list[str] = []
    node: click.Context | None = ctx
    while node is not None and node.parent is not None:
        names.append(node.info_name or "")
        node = node.parent
    if names:
        ctx.find_root().meta[KIND_KEY] = "-".join(reversed(names))


def kind_of(ctx: click.Context) -> str:
    """The kind of this run's JSON document: the command path, `orchestrate` before one is known."""
    return str(ctx.find_root().meta.get(KIND_KEY, "orchestrate"))


class OrchestrateCommand(click.Command):
    """A command that also accepts every global option (listed after its own options)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_params())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _note_kind(ctx)
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_options(self, ctx, formatter)


class LazyGroup(click.Group):
    """A group whose commands live in modules imported only when the command is used or listed.

    click's documented lazy-loading pattern: `lazy` maps a command name to "module:attribute".
    `summaries` holds each lazy command's first sentence, so that listing the commands (`--help`)
    imports none of their modules (tests/orchestrator/test_console_script.py keeps every summary
    equal to its command's own)."""

    command_class = OrchestrateCommand

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, summaries: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_params())
        self.lazy = dict(lazy or {})
        self.summaries = dict(summaries or {})
        self.sections: list[tuple[str, tuple[str, ...]]] = []  # (title, commands in this order); rest: "Commands"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _note_kind(ctx)
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, in `sections` when given; a lazy command with a summary is listed from
        it, unimported. Each summary is its command's first sentence in full (wrapped, not cut)."""
        listed: dict[str, click.Command] = {}
        for name in self.list_commands(ctx):
            if name in self.summaries:
                listed[name] = click.Command(name, help=self.summaries[name])
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                listed[name] = command
        if not listed:
            return
        placed = {name for _, names in self.sections for name in names}
        sections = [*self.sections, ("Commands" if not self.sections else "Other commands",
                                     tuple(n for n in listed if n not in placed))]
        for title, names in sections:
            rows = [(name, listed[name].get_short_help_str(10_000)) for name in names if name in listed]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                           list[str]]:
        """click's, with "did you mean" over the lazy commands too (click only sees the loaded ones)."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            if exc.possibilities:
                raise
            raise click.exceptions.NoSuchCommand(exc.command_name, possibilities=self.list_commands(ctx),
                                                 ctx=ctx) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            found = getattr(importlib.import_module(module_name), attr)
            if not isinstance(found, click.Command):  # pragma: no cover - a wiring mistake
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            return found
        return super().get_command(ctx, cmd_name)


def find_project_dir(start: Path) -> Path | None:
    from orchestrator.state import is_workspace_dir

    for d in (start, *start.parents):
        # A stack's generated workspace (.orchestrate/workspaces/<stack>/Pulumi.yaml) is not the
        # project: commands the engine runs there (the replication stack's registry sync) must
        # find the project root above it.
        if is_workspace_dir(d):
            continue
        if (d / "Pulumi.yaml").is_file():
            return d
    return None


def _pulumi_engine(context: Context) -> Any:
    from orchestrator.engine.pulumi import PulumiEngine

    return PulumiEngine.from_context(context)


def context_for(ctx: click.Context) -> Context:
    """Resolve the global options once per invocation into a Context."""
    from pathlib import Path  # deferred with everything else `--help` does not need

    deps = ctx.ensure_object(Deps)
    root = ctx.find_root()
    cached = root.meta.get("orchestrate.context")
    if isinstance(cached, Context):
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
            raise InputRejected(f"{config_path}: topology file not found", hint=_env_hint(env, config_path.parent))
    backend, backend_error = _backend(v.get("backend"), project_dir)
    secrets_provider = v.get("secrets_provider") or os.environ.get("ORCHESTRATE_SECRETS_PROVIDER") or None
    console = deps.console = deps.console or Console()  # the one console: errors and the document use it too
    console.verbose = bool(v.get("verbose"))
    console.json_mode = bool(v.get("json_output"))
    context = Context(
        env=env, project_dir=project_dir, config_path=config_path, backend_url=backend,
        # AWS_ENDPOINT_URL: the SDKs' own variable, and how the engine hands --endpoint-url to what
        # the programs run (the replication stack's `orchestrate registry sync`): every client, the
        # shadow data plane included, goes there instead of the host DescribeEndpoint names
        endpoint_url=v.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or None,
        secrets_provider=secrets_provider,
        json_output=bool(v.get("json_output")), verbose=bool(v.get("verbose")), console=console,
        engine_factory=deps.engine_factory or _pulumi_engine, backend_error=backend_error,
    )
    root.meta["orchestrate.context"] = context
    return context


def _env_hint(env: str, stacks_dir: Path) -> str:
    """What to do about an unknown environment: the nearest known one, else where to run from."""
    import difflib

    known = sorted(p.name[:-len(".topology.yaml")] for p in stacks_dir.glob("*.topology.yaml")) \
        if stacks_dir.is_dir() else []
    close = difflib.get_close_matches(env, known, n=1)
    if close:
        return f"did you mean --env {close[0]}? environments here: {', '.join(known)}"
    if known:
        return f"environments here: {', '.join(known)}; or pass --config PATH"
    return "run from the project root or pass --config PATH"


def on_ci() -> bool:
    """True on a CI runner (GitHub Actions and most others set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _backend(option: str | None, project_dir: Path) -> tuple[str, str | None]:
    """The backend URL, and why it must not be used (a reason) when a run would lose its state.

    A variable that is set but empty is what a CI job gets when the variable was not defined for
    its environment: never read as "use the default"; nor is the default local backend on CI,
    where the state would leave with the runner."""
    default = f"file://{(project_dir / '.pulumi-state').as_posix()}"
    if option is not None:
        if not option.strip():
            return default, "--backend is empty"
        return option, None
    value = os.environ.get("PULUMI_BACKEND_URL")
    if value is not None:
        if not value.strip():
            return default, ("PULUMI_BACKEND_URL is set but empty (a variable not defined for this job?); "
                             "refusing to fall back to a local backend")
        return value.strip(), None
    if on_ci():
        return default, ("CI is set and no state backend is configured (PULUMI_BACKEND_URL or --backend); "
                         "refusing a local backend whose state would leave with the runner")
    return default, None


def pass_context(func: F) -> F:
    """Give a command its Context as the first argument (after global options are merged)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(context_for(click.get_current_context()), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def command(name: str, **attrs: Any) -> Callable[[F], click.Command]:
    """A top-level command that accepts the global options and receives the Context."""

    def decorate(func: F) -> click.Command:
        return click.command(name, cls=OrchestrateCommand, **attrs)(pass_context(func))

    return decorate


def group(name: str, *, lazy: dict[str, str], help: str) -> LazyGroup:  # noqa: A002 - click's own name
    """A command group (registry, comment, secrets) whose commands load lazily."""
    return LazyGroup(name, lazy=lazy, help=help)
