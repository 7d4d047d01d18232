"""The engine tier works end to end: the real CLI runs a Python program against the stand-ins.

If this fails, every other engine-tier test would fail for the same reason; it is the first
thing to look at.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

# `pulumi_tools` is the session fixture of tests/engine/conftest.py (a PulumiTools); nothing is
# imported from conftest so the tests work under any pytest import mode.
PulumiTools = Any

PROGRAM = """\
import pulumi
import pulumi_aws as aws
import pulumi_command as command

bucket = aws.s3.Bucket("data", tags={"purpose": "engine-smoke"})
endpoint = aws.iot.get_endpoint(endpoint_type="iot:Data-ATS")
hello = command.local.Command("hello", create="echo hello-from-command")

pulumi.export("bucket_arn", bucket.arn)
pulumi.export("bucket_name", bucket.bucket)
pulumi.export("endpoint", endpoint.endpoint_address)
pulumi.export("hello", hello.stdout)
"""

ATS_HOST = re.compile(r"^[a-z0-9]{14}-ats\.iot\.eu-west-1\.amazonaws\.com$")


def _fake_aws_module(tools: PulumiTools):
    spec = importlib.util.spec_from_file_location("fake_aws", tools.fake_provider_dir / "fake_aws.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: engine-smoke\nruntime: python\n")
    (project / "__main__.py").write_text(PROGRAM)
    return project


def _resources(tools: PulumiTools, project: Path, env: dict[str, str]) -> list[dict]:
    exported = json.loads(tools.run("stack", "export", cwd=project, env=env).stdout)
    return exported["deployment"].get("resources") or []


def _up_output_destroy(tools: PulumiTools, project: Path, env: dict[str, str]) -> tuple[dict, str]:
    tools.run("stack", "init", "dev", cwd=project, env=env)
    tools.run("config", "set", "aws:region", "eu-west-1", cwd=project, env=env)
    up = tools.run("up", "--yes", cwd=project, env=env)
    outputs = json.loads(tools.run("stack", "output", "--json", cwd=project, env=env).stdout)
    assert len(_resources(tools, project, env)) > 3  # stack, 2 default providers, 3 resources
    tools.run("destroy", "--yes", cwd=project, env=env)
    return outputs, up.stdout + up.stderr


def test_up_output_destroy_through_the_real_engine(pulumi_tools: PulumiTools, tmp_path: Path) -> None:
    project = _write_project(tmp_path)
    env = pulumi_tools.environ(PULUMI_BACKEND_URL=f"file://{tmp_path / 'state'}")
    (tmp_path / "state").mkdir()

    outputs, up_log = _up_output_destroy(pulumi_tools, project, env)

    assert ATS_HOST.match(outputs["endpoint"]), outputs
    # stable: the same hostname the stand-in gives for eu-west-1 in any process, any run
    assert outputs["endpoint"] == _fake_aws_module(pulumi_tools).iot_endpoint("eu-west-1")
    assert outputs["bucket_arn"] == f"arn:aws:s3:::{outputs['bucket_name']}"
    assert outputs["hello"] == "hello-from-command"
    # plugins came from the PULUMI_HOME plugin cache: no ambient-plugin warnings
    assert "from $PATH" not in up_log

    assert _resources(pulumi_tools, project, env) == []
    urns = pulumi_tools.run("stack", "--show-urns", cwd=project, env=env).stdout
    assert "urn:pulumi:" not in urns


def test_stand_ins_are_found_as_ambient_plugins_on_path(pulumi_tools: PulumiTools, tmp_path: Path) -> None:
    project = _write_project(tmp_path)
    (tmp_path / "state").mkdir()
    env = pulumi_tools.with_ambient_plugins()
    env.update(PULUMI_BACKEND_URL=f"file://{tmp_path / 'state'}", PULUMI_HOME=str(tmp_path / "empty-home"))

    outputs, up_log = _up_output_destroy(pulumi_tools, project, env)

    assert ATS_HOST.match(outputs["endpoint"])
    assert f"using pulumi-resource-aws from $PATH at {pulumi_tools.fake_provider_dir}" in up_log
    assert _resources(pulumi_tools, project, env) == []
