"""Engine tier: the real Pulumi CLI and engine, a local file backend, stand-in provider plugins.

The session fixture `pulumi_tools` provides the toolchain (see tests/engine/README.md):

- the CLI and Python language host built by `build_pulumi.sh` (cached per machine), or an
  existing installation named by ORCHESTRATE_PULUMI_ROOT (a directory with `bin/pulumi`);
- the stand-in `aws` and `command` provider plugins of `fake_aws_provider/`, installed into the
  session's PULUMI_HOME plugin cache as generated launchers (plugins/resource-aws-v7.51.1/
  pulumi-resource-aws ...) at the versions the installed pulumi_aws / pulumi_command request;
  `with_ambient_plugins()` gives the alternative where they are found on PATH instead;
- an environment that keeps everything inside a temp dir: PULUMI_HOME, a file:// backend, a
  passphrase secrets provider, no update checks, no plugin downloads.

Without the tools (no cached build and no Go toolchain to build them) the engine tests are
skipped with the reason printed. With ORCHESTRATE_BUILD_PULUMI=1 (set by CI) a missing or failed
build fails the session instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.engine.helpers import OrchestrateProject, hermetic_aws_env

ENGINE_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = ENGINE_DIR / "build_pulumi.sh"
FAKE_PROVIDER_DIR = ENGINE_DIR / "fake_aws_provider"
PASSPHRASE = "engine-tier-test-passphrase"
BUILD_TIMEOUT_S = 60 * 60


@dataclass(frozen=True)
class PulumiTools:
    """Where the engine-tier toolchain is and the environment to run it with."""

    cli: Path
    """The `pulumi` executable."""
    cli_root: Path
    """Directory whose `bin/` holds the CLI: `pulumi.automation.PulumiCommand(root=str(cli_root))`."""
    bin_dir: Path
    """The CLI's directory (also holds pulumi-language-python and its exec script)."""
    fake_provider_dir: Path
    """Directory of the stand-in `pulumi-resource-aws` / `pulumi-resource-command` plugins."""
    home: Path
    """PULUMI_HOME of the session (plugins cache, credentials, workspaces)."""
    backend_url: str
    """file:// backend of the session. Tests that need isolation pass their own."""
    env: Mapping[str, str] = field(repr=False)
    """The complete environment to run the CLI or the Automation API with (not os.environ)."""
    versions: Mapping[str, str] = field(default_factory=dict)
    """What the CLI was built from (pulumi_cli, python_sdk, go), from bin/VERSIONS."""

    def with_ambient_plugins(self) -> dict[str, str]:
        """`env` with the stand-in plugins first on PATH: the engine then prefers them over the
        plugin cache (and prints "warning: using pulumi-resource-aws from $PATH" on each run)."""
        return {**self.env, "PATH": os.pathsep.join([str(self.fake_provider_dir), self.env["PATH"]])}

    def new_home(self, path: Path) -> dict[str, str]:
        """`env` with a fresh PULUMI_HOME at `path`, stand-in plugins installed in it."""
        install_fake_plugins(path)
        return {**self.env, "PULUMI_HOME": str(path)}

    def environ(self, **overrides: str) -> dict[str, str]:
        """A copy of `env` with some variables replaced (e.g. PULUMI_BACKEND_URL, FAKE_AWS_FAIL_ON)."""
        return {**self.env, **overrides}

    def run(
        self,
        *args: str,
        cwd: Path | str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run `pulumi <args> --non-interactive` and return the completed process (text)."""
        proc = subprocess.run(
            [str(self.cli), *args, "--non-interactive"],
            cwd=str(cwd),
            env=dict(env if env is not None else self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        return proc


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("ORCHESTRATE_BUILD_PULUMI") == "1":
        pytest.fail(f"engine tier: {reason} (ORCHESTRATE_BUILD_PULUMI=1)", pytrace=False)
    print(f"\nengine tier skipped: {reason}", file=sys.stderr)
    pytest.skip(f"engine tier: {reason}")


def _build(tools_log: Path) -> Path:
    """Run build_pulumi.sh (a no-op when cached); return the bin dir."""
    env = {**os.environ, "PYTHON": sys.executable}
    if shutil.which("go", path=env.get("PATH")) is None and Path("/usr/local/go/bin/go").exists():
        env["PATH"] = env.get("PATH", "") + os.pathsep + "/usr/local/go/bin"
    tools_log.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"\nengine tier: preparing the Pulumi CLI with {BUILD_SCRIPT.name} "
        f"(instant when cached; a first build takes minutes; log: {tools_log})",
        file=sys.stderr,
    )
    with tools_log.open("w") as log:
        try:
            proc = subprocess.run(
                ["bash", str(BUILD_SCRIPT)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            proc = None
    if proc is None:
        _skip_or_fail(f"building the Pulumi CLI took more than {BUILD_TIMEOUT_S}s; see {tools_log}")
        raise AssertionError("unreachable")
    tail = "".join(tools_log.read_text().splitlines(keepends=True)[-25:])
    if proc.returncode == 3:
        _skip_or_fail("no Pulumi CLI built for this machine and no Go toolchain to build one")
    if proc.returncode != 0:
        _skip_or_fail(f"build_pulumi.sh failed (exit {proc.returncode}):\n{tail}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        _skip_or_fail(f"build_pulumi.sh printed no bin dir:\n{tail}")
    return Path(lines[-1])


def _read_versions(bin_dir: Path) -> Mapping[str, str]:
    path = bin_dir / "VERSIONS"
    if not path.exists():
        return types.MappingProxyType({})
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return types.MappingProxyType({k: v for k, v in pairs})


def plugin_versions() -> dict[str, str]:
    """{plugin name: version} that the installed pulumi_aws / pulumi_command packages request."""
    found = {"aws": "7.51.1", "command": "1.2.1"}
    for name, package in (("aws", "pulumi_aws"), ("command", "pulumi_command")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        meta = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
        if meta.exists():
            found[name] = json.loads(meta.read_text()).get("version", found[name])
    return found


def install_fake_plugins(home: Path, python: str = sys.executable) -> list[Path]:
    """Install the stand-in plugins into PULUMI_HOME's plugin cache as small launchers.

    The engine resolves a provider it has no ambient (PATH) binary for from
    $PULUMI_HOME/plugins/resource-<name>-v<version>/pulumi-resource-<name>; no download happens.
    """
    installed = []
    for name, version in plugin_versions().items():
        plugin_dir = home / "plugins" / f"resource-{name}-v{version}"
        plugin_dir.mkdir(parents=True, exist_ok=True)
        launcher = plugin_dir / f"pulumi-resource-{name}"
        launcher.write_text(
            "#!/bin/sh\n"
            f"# generated by tests/engine/conftest.py: stand-in `{name}` plugin, TEST FIXTURE\n"
            f"export FAKE_{name.upper()}_VERSION={shlex.quote(version)}\n"
            f'exec {shlex.quote(python)} {shlex.quote(str(FAKE_PROVIDER_DIR / f"fake_{name}.py"))} "$@"\n'
        )
        launcher.chmod(0o755)
        installed.append(launcher)
    return installed


def make_env(
    bin_dir: Path,
    home: Path,
    backend_url: str,
    base: Mapping[str, str] | None = None,
    extra_path: Sequence[Path] = (),
) -> dict[str, str]:
    """The environment the engine tier runs Pulumi with.

    Starts from `base` (default os.environ) without any PULUMI_* variable, so a developer's
    access token, backend, PULUMI_HOME or PULUMI_IGNORE_AMBIENT_PLUGINS cannot leak in.
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("PULUMI_")}
    path = [
        str(bin_dir),
        *map(str, extra_path),
        str(Path(sys.executable).parent),
        base.get("PATH", os.defpath),
    ]
    env.update(
        PATH=os.pathsep.join(path),
        PULUMI_HOME=str(home),
        PULUMI_BACKEND_URL=backend_url,
        PULUMI_CONFIG_PASSPHRASE=PASSPHRASE,
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PULUMI_SKIP_CONFIRMATIONS="true",
        # the language host and the stand-in plugins run the Python that runs the tests
        PULUMI_PYTHON_CMD=sys.executable,
        FAKE_PROVIDER_PYTHON=sys.executable,
    )
    return env


@pytest.fixture(scope="session")
def pulumi_tools(tmp_path_factory: pytest.TempPathFactory) -> PulumiTools:
    root_override = os.environ.get("ORCHESTRATE_PULUMI_ROOT")
    if root_override:
        bin_dir = Path(root_override) / "bin"
        if not (bin_dir / "pulumi").exists():
            _skip_or_fail(f"ORCHESTRATE_PULUMI_ROOT={root_override} has no bin/pulumi")
    else:
        tools_dir = Path(
            os.environ.get("ORCHESTRATE_TOOLS_DIR", Path.home() / ".cache" / "orchestrate-tools")
        )
        bin_dir = _build(tools_dir / "build.log")
    cli = bin_dir / "pulumi"
    if not os.access(cli, os.X_OK):
        _skip_or_fail(f"{cli} is not an executable")

    base = tmp_path_factory.mktemp("pulumi-engine")
    home = base / "pulumi-home"
    state = base / "state"
    home.mkdir()
    state.mkdir()
    install_fake_plugins(home)
    backend_url = f"file://{state}"
    env = make_env(bin_dir, home, backend_url)
    return PulumiTools(
        cli=cli,
        cli_root=bin_dir.parent,
        bin_dir=bin_dir,
        fake_provider_dir=FAKE_PROVIDER_DIR,
        home=home,
        backend_url=backend_url,
        env=types.MappingProxyType(env),
        versions=_read_versions(bin_dir),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/engine carries the `engine` marker (`-m "not engine"` skips the tier)."""
    for item in items:
        if ENGINE_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.engine)


# -- `orchestrate` end to end over a temp copy of the project (helpers.py) ---------------------

@pytest.fixture
def make_project(pulumi_tools: PulumiTools, tmp_path: Path):  # noqa: ANN201 - a factory
    """make_project(topology=None) -> OrchestrateProject in this test's temp dir."""
    count = iter(range(100))

    def make(topology: Mapping[str, Any] | None = None) -> OrchestrateProject:
        return OrchestrateProject(pulumi_tools, tmp_path / f"p{next(count)}", topology)

    return make


# -- a moto server for what the programs and lifecycle do with boto3 ---------------------------

MOTO_STARTUP_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - yields the URL
    """A moto server on 127.0.0.1 for each test module, on a free port (bounded start-up wait,
    stopped after the module): no module sees another's leftovers, whichever pytest-xdist worker
    runs it and in whatever order. Tests in one module share it; those that need it empty reset it.

    Used as `--endpoint-url`: the replication stack's `orchestrate registry sync` (run by the
    command provider) and the lifecycle's verifications call it; with FAKE_AWS_MOTO_URL the
    stand-in provider mirrors what those verifications read into it (moto_mirror.py)."""
    from contextlib import ExitStack

    from tests.moto_server import MotoUnavailable
    from tests.moto_server import moto_server as run_moto

    if importlib.util.find_spec("moto") is None:
        _skip_or_fail("moto is not installed (pip install 'moto[server]')")
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with ExitStack() as stack:
        try:
            url = stack.enter_context(run_moto(log, hermetic_aws_env(os.environ, log.parent),
                                               timeout=MOTO_STARTUP_TIMEOUT_S))
        except MotoUnavailable as exc:
            pytest.fail(str(exc))
        yield url
