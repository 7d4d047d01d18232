"""Bad engine setup is exit code 2 with one line saying what to do, and nothing is touched.

These run the installed `orchestrate` without the Pulumi CLI (a placeholder `pulumi` file is
enough for the passphrase check, which comes before anything runs), so they work where the rest
of the tier is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.engine.helpers import ORCHESTRATE, REPO, hermetic_aws_env


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(REPO / "stacks" / "dev.topology.yaml", root / "stacks" / "dev.topology.yaml")
    return root


def _env(tmp_path: Path, path_dirs: list[Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env = hermetic_aws_env(env, tmp_path)
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"])
    env["PULUMI_HOME"] = str(tmp_path / "empty-pulumi-home")  # no $PULUMI_HOME/bin/pulumi either
    env["ORCHESTRATE_TOOLS_DIR"] = str(tmp_path / "no-tools")  # nor the pinned CLI in the tools cache
    env["ORCHESTRATE_PULUMI_INSTALL"] = "0"  # and no download
    env["PULUMI_BACKEND_URL"] = f"file://{tmp_path / 'state'}"
    return env


def _orchestrate(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    if not ORCHESTRATE.exists():
        pytest.skip(f"the console script is not installed at {ORCHESTRATE} (pip install -e .)")
    return subprocess.run([str(ORCHESTRATE), *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _untouched(root: Path, tmp_path: Path) -> None:
    assert not (tmp_path / "state").exists(), "the backend was created"
    assert not (root / ".orchestrate").exists(), "workspaces or journals were written"
    assert sorted(p.name for p in (root / "stacks").iterdir()) == ["dev.topology.yaml"]


def test_missing_passphrase_is_exit_2_in_one_line(tmp_path: Path) -> None:
    root = _project(tmp_path)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "pulumi").write_text("#!/bin/sh\necho 'must not run' >&2\nexit 99\n")
    (fake_bin / "pulumi").chmod(0o755)
    env = _env(tmp_path, [fake_bin])
    assert "PULUMI_CONFIG_PASSPHRASE" not in env and "PULUMI_CONFIG_PASSPHRASE_FILE" not in env

    proc = _orchestrate(root, env, "up", "--region", "eu-west-1")

    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no passphrase")
    assert "PULUMI_CONFIG_PASSPHRASE" in lines[0]
    assert "must not run" not in proc.stderr
    assert proc.stdout == ""
    _untouched(root, tmp_path)


def test_pulumi_not_on_path_is_exit_2_naming_how_to_install(tmp_path: Path) -> None:
    root = _project(tmp_path)
    env = _env(tmp_path, [])
    env["PULUMI_CONFIG_PASSPHRASE"] = "x"
    if shutil.which("pulumi", path=env["PATH"]):
        pytest.skip("a pulumi binary is installed system-wide in /usr/bin or /bin")

    for args in (("up", "--yes", "--region", "eu-west-1"), ("status",)):
        proc = _orchestrate(root, env, *args)

        assert proc.returncode == 2, proc
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "Pulumi CLI was not found on PATH" in lines[0]
        assert "https://www.pulumi.com/docs/iac/download-install/" in lines[0]
        _untouched(root, tmp_path)
