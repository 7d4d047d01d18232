"""The installed `orchestrate` console script, as users and CI run it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "orchestrate"


def orchestrate(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "ORCHESTRATE_"))}
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**base, **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("env, regions", [("dev", ["eu-west-1"]), ("prod", ["eu-west-1"])])
def test_plan_json_through_the_console_script(env: str, regions: list[str]) -> None:
    proc = orchestrate("plan", "--all", "--json", "--env", env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert doc["env"] == env
    assert doc["waves"] == [[f"{env}-region-{r}" for r in regions], [f"{env}-dns"]]
    region = doc["stacks"][f"{env}-region-eu-west-1"]["resources"]
    types = {r["type"] for r in region}
    assert {"aws:iot/domainConfiguration:DomainConfiguration", "aws:kinesis/stream:Stream",
            "aws:s3/bucket:Bucket", "aws:iot/policy:Policy", "aws:iot/topicRule:TopicRule"} <= types
    assert {"type": "aws:route53/record:Record", "name": f"iot-{env}-dns-record-primary"} in \
        [{"type": r["type"], "name": r["name"]} for r in doc["stacks"][f"{env}-dns"]["resources"]]
    protected = {r["type"] for r in region if r.get("protected")}
    assert {"aws:s3/bucket:Bucket", "aws:kinesis/stream:Stream"} <= protected


@pytest.mark.slow
def test_bad_region_is_one_line_and_exit_2() -> None:
    proc = orchestrate("plan", "--region", "eu-moon-1")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "eu-moon-1" in proc.stderr
    assert proc.stdout == ""


def test_missing_topology_is_exit_2(tmp_path: Path) -> None:
    proc = orchestrate("--env", "staging", "plan", cwd=REPO)
    assert proc.returncode == 2 and "staging.topology.yaml: topology file not found" in proc.stderr


def modules_after_help() -> list[str]:
    """Every module a fresh interpreter holds after `orchestrate --help`."""
    probe = ("import sys; sys.argv=['orchestrate','--help']\n"
             "from orchestrator.cli.main import cli\n"
             "try:\n    cli.main(standalone_mode=False)\nexcept SystemExit:\n    pass\n"
             "print('MODULES=' + ','.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
    (line,) = [x for x in out.splitlines() if x.startswith("MODULES=")]
    return line[len("MODULES="):].split(",")


def test_help_does_not_import_pulumi_or_boto3() -> None:
    heavy = [m for m in modules_after_help() if m.split(".")[0] in ("pulumi", "pulumi_aws", "boto3", "botocore")]
    assert heavy == []


def test_help_lists_commands_from_their_summaries_without_importing_them() -> None:
    """`--help` is rendered exactly as click renders the imported commands, from SUMMARIES, and
    imports no command module (the start-up budget: docs/performance.md)."""
    import importlib

    from click.testing import CliRunner

    from orchestrator.cli.main import COMMANDS, SUMMARIES, cli

    assert set(SUMMARIES) == set(COMMANDS)
    for name, target in COMMANDS.items():
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        for limit in (20, 45, 70, 10_000):
            assert command.get_short_help_str(limit) == click_short(SUMMARIES[name], limit), (name, limit)
    listed = CliRunner().invoke(cli, ["--help"], terminal_width=100).output
    saved = cli.summaries
    try:
        cli.summaries = {}  # every command imported and asked for its own short help
        assert CliRunner().invoke(cli, ["--help"], terminal_width=100).output == listed
    finally:
        cli.summaries = saved
    loaded = [m for m in modules_after_help() if m.startswith("orchestrator.cli.")]
    assert sorted(loaded) == ["orchestrator.cli.app", "orchestrator.cli.main"], loaded


def click_short(summary: str, limit: int) -> str:
    import click

    return click.Command("x", help=summary).get_short_help_str(limit)


def test_version_and_help_list_every_command() -> None:
    proc = orchestrate("--help")
    assert proc.returncode == 0
    for name in ("plan", "up", "preview", "destroy", "promote-secondary", "failover", "failback", "status",
                 "outputs", "registry", "graph", "comment", "recover", "drill"):
        assert f"  {name} " in proc.stdout or f"  {name}\n" in proc.stdout, name
