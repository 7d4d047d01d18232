"""`orchestrate preview` over the graph with the in-memory engine: placeholders, exit codes, formats."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestrator.engine.types import StackSpec
from orchestrator.preview.comment import parse_marker, split_parts
from orchestrator.preview.model import Op, ResourceChange, StackPreview
from tests.orchestrator.conftest import multi_region


def previews(engine, changed: bool = True) -> None:  # noqa: ANN001
    def factory(spec: StackSpec) -> StackPreview:
        changes = (ResourceChange(f"urn:pulumi:{spec.name}::iot-platform::aws:s3/bucket:Bucket::lake",
                                  "aws:s3/bucket:Bucket", "lake", Op.CREATE, stateful=True),) if changed else ()
        return StackPreview(spec.name, spec.kind, spec.region, changes,
                            {Op.CREATE: len(changes), Op.SAME: 5})

    engine.previews["*"] = factory


def test_markdown_preview_with_undeployed_upstream_uses_marked_placeholders(run, engine, tmp_path: Path) -> None:  # noqa: ANN001
    previews(engine)
    out = tmp_path / "comment.md"
    result = run("preview", "--all", "--format", "markdown", "--output", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    parts = split_parts(text, env="dev")
    assert parse_marker(parts[0]) == ("dev", 1)
    dns_config = next(c.config for c in engine.calls if c.stack == "dev-dns")
    assert "placeholder:eu-west-1" in dns_config["iot-platform:targets"]
    assert "placeholder used" in text and "dev-region-eu-west-1" in text
    # preview never runs up
    assert engine.ops("up") == []


def test_preview_uses_real_outputs_when_upstream_is_deployed(run, engine) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--all").exit_code == 0
    previews(engine, changed=False)
    result = run("preview", "--all", "--json")
    assert result.exit_code == 0
    dns_config = [c.config for c in engine.calls if c.stack == "dev-dns" and c.operation == "preview"][0]
    assert "placeholder" not in dns_config["iot-platform:targets"]
    doc = json.loads(result.stdout)
    assert doc["env"] == "dev"
    assert [s["stack"] for s in doc["stacks"]] == ["dev-region-eu-west-1", "dev-dns"]


def test_expect_no_changes_exits_1_on_drift(run, engine) -> None:  # noqa: ANN001
    previews(engine, changed=True)
    assert run("preview", "--all", "--expect-no-changes").exit_code == 1
    previews(engine, changed=False)
    assert run("preview", "--all", "--expect-no-changes").exit_code == 0


def test_failed_stack_preview_exits_1(run, engine) -> None:  # noqa: ANN001
    previews(engine)

    def broken(spec: StackSpec) -> StackPreview:
        return StackPreview(spec.name, spec.kind, spec.region, error="error: AccessDenied on iot:CreateThingType")

    engine.previews["dev-region-eu-west-1"] = broken
    result = run("preview", "--all", "--format", "text")
    assert result.exit_code == 1
    assert "AccessDenied" in result.stdout and "preview failed for dev-region-eu-west-1" in result.stderr


def test_topology_change_against_base_ref_draws_before_and_after(run, engine, project: Path) -> None:  # noqa: ANN001
    previews(engine)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base"],
                   cwd=project, check=True)
    multi_region(project, "dev", ["eu-central-1"])
    result = run("preview", "--all", "--format", "markdown", "--base-ref", "HEAD")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("```mermaid") == 2
    assert "dev-replication" in result.stdout
