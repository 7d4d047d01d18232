"""Every `--json` document has one envelope (docs/json.md): kind, version, ok, error, then the
command's own keys at the top level, on success and on failure, with the exit code unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.console import JSON_VERSION, envelope
from orchestrator.engine.types import OutputValue, StackSpec
from orchestrator.preview.model import Op, ResourceChange, StackPreview
from tests.orchestrator.conftest import multi_region

ENVELOPE = ["kind", "version", "ok", "error"]


def leaf_commands(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every runnable command under `group`, as its path of names (lazy commands loaded)."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from leaf_commands(command, ctx, (*path, name))
        else:
            yield (*path, name)


LEAVES = sorted(leaf_commands(cli, click.Context(cli)))


def doc_of(result: Result) -> dict:
    """The one JSON document on stdout (json.loads fails on anything else), envelope checked."""
    doc = json.loads(result.stdout)
    assert list(doc)[:4] == ENVELOPE, list(doc)
    assert doc["version"] == JSON_VERSION == 1
    assert doc["ok"] is (result.exit_code == 0)
    if result.exit_code == 0:
        assert doc["error"] is None
    else:
        assert set(doc["error"]) == {"code", "message", "exit_code"}
        assert doc["error"]["exit_code"] == result.exit_code and doc["error"]["message"]
    return doc


def test_the_tree_has_every_command_of_the_contract() -> None:
    names = {" ".join(p) for p in LEAVES}
    assert {"plan", "up", "preview", "destroy", "promote-secondary", "failover", "failback", "status", "outputs",
            "graph", "drift", "drill", "recover", "registry sync", "registry backup", "registry restore",
            "comment post", "secrets change-provider"} <= names


@pytest.mark.parametrize("path", LEAVES, ids=["-".join(p) for p in LEAVES])
def test_every_command_answers_a_usage_error_with_an_enveloped_document(run, path: tuple[str, ...]) -> None:  # noqa: ANN001
    """Options are checked before anything runs: under --json the refusal is a document on stdout
    (kind = the command), the exit code stays click's 2 and the message still goes to stderr."""
    result = run(*path, "--json", "--no-such-option")
    assert result.exit_code == 2
    doc = doc_of(result)
    assert doc["kind"] == "-".join(path)
    assert doc["error"]["code"] == "bad-input" and "--no-such-option" in doc["error"]["message"]
    assert "--no-such-option" in result.stderr


@pytest.mark.parametrize("path", LEAVES, ids=["-".join(p) for p in LEAVES])
def test_without_json_an_error_prints_no_document(run, path: tuple[str, ...]) -> None:  # noqa: ANN001
    result = run(*path, "--no-such-option")
    assert result.exit_code == 2 and result.stdout == ""


def test_an_unknown_command_under_json_is_a_document_with_a_suggestion(run) -> None:  # noqa: ANN001
    result = run("--json", "promte-secondary")
    assert result.exit_code == 2
    doc = doc_of(result)
    assert doc["kind"] == "orchestrate" and "promote-secondary" in doc["error"]["message"]


@pytest.fixture
def deployed(run, engine):  # noqa: ANN001, ANN201
    engine.secret_outputs["dev-region-eu-west-1"] = {"apiToken": "s3cr3t-value"}
    assert run("up", "--all", "--yes").exit_code == 0
    engine.previews["*"] = lambda spec: StackPreview(spec.name, spec.kind, spec.region, (), {Op.SAME: 3})
    return engine


# (command line, exit code, payload keys the command had before the envelope: still at the top level)
SUCCESSES = [
    (("plan", "--region", "eu-west-1"), 0, {"env", "waves", "stacks"}),
    (("graph",), 0, {"env", "nodes", "edges", "waves"}),
    (("status",), 0, {"env", "stacks", "backend", "backup"}),
    (("outputs", "dev-region-eu-west-1"), 0, {"stack", "outputs"}),
    (("up", "--all", "--yes"), 0, {"env", "operation", "waves", "stacks"}),
    (("preview", "--all"), 0, {"env", "stacks", "totals"}),
    (("drift", "--all"), 0, {"env", "drifted", "stacks", "waves"}),
    (("recover", "--all", "--yes"), 0, {"recovered"}),
    (("registry", "sync", "--all-secondaries"), 0, {"syncs"}),
    (("destroy", "--all", "--yes"), 0, {"env", "operation", "waves", "stacks"}),
]


@pytest.mark.parametrize("args, code, keys", SUCCESSES, ids=[a[0] for a, _, _ in SUCCESSES])
def test_commands_that_run_carry_the_envelope_and_keep_their_keys(run, deployed, args, code, keys) -> None:  # noqa: ANN001
    result = run(*args, "--json")
    assert result.exit_code == code, result.output
    doc = doc_of(result)
    kind = "-".join(a for a in args if not a.startswith("-") and a in {p for path in LEAVES for p in path})
    assert doc["kind"] == kind
    assert keys <= set(doc), sorted(doc)


def test_a_failure_after_the_payload_keeps_the_payload_and_names_the_error(run, engine) -> None:  # noqa: ANN001
    def factory(spec: StackSpec) -> StackPreview:
        change = ResourceChange(f"urn:pulumi:{spec.name}::p::aws:s3/bucket:Bucket::lake", "aws:s3/bucket:Bucket",
                                "lake", Op.CREATE)
        return StackPreview(spec.name, spec.kind, spec.region, (change,), {Op.CREATE: 1})

    engine.previews["*"] = factory
    result = run("preview", "--all", "--expect-no-changes", "--json")
    assert result.exit_code == 1
    doc = doc_of(result)
    assert doc["kind"] == "preview" and doc["error"]["code"] == "failed"
    assert "--expect-no-changes" in doc["error"]["message"]
    assert [s["stack"] for s in doc["stacks"]] == ["dev-region-eu-west-1", "dev-dns"]  # the payload is there


def test_refusals_keep_their_exit_code_and_say_which(run) -> None:  # noqa: ANN001
    bad = run("up", "--json")  # neither --region nor --all
    assert bad.exit_code == 2 and doc_of(bad)["error"]["code"] == "bad-input"
    refused = run("up", "--all", "--json")  # no terminal and no --yes
    assert refused.exit_code == 4
    doc = doc_of(refused)
    assert doc["error"]["code"] == "refused" and "--yes" in doc["error"]["message"]


def test_a_payload_that_names_itself_more_precisely_keeps_its_kind() -> None:
    assert envelope("registry-sync", {"kind": "registry-sync-plan", "total": 3})["kind"] == "registry-sync-plan"
    assert envelope("registry-restore", {"kind": "registry-sync-plan"})["kind"] == "registry-restore"
    failed = envelope("status", {"ok": True, "stacks": []}, exit_code=1)
    assert failed["ok"] is False and failed["error"]["code"] == "failed" and failed["stacks"] == []


def test_json_files_written_with_output_carry_the_envelope(run, deployed, project: Path) -> None:  # noqa: ANN001
    path = project / "preview.json"
    assert run("preview", "--all", "--format", "json", "--output", str(path)).exit_code == 0
    doc = json.loads(path.read_text())
    assert list(doc)[:4] == ENVELOPE and doc["kind"] == "preview" and doc["ok"] is True
    deployed.drifted["dev-region-eu-west-1"] = []
    drift_file = project / "drift.json"
    assert run("drift", "--all", "--format", "json", "--output", str(drift_file)).exit_code == 0
    assert json.loads(drift_file.read_text())["kind"] == "drift"


def test_json_with_an_output_file_writes_both_and_stdout_holds_only_the_document(run, deployed, project) -> None:  # noqa: ANN001
    path = project / "preview.json"
    result = run("preview", "--all", "--json", "--output", str(path))
    assert result.exit_code == 0
    assert doc_of(result)["stacks"] == json.loads(path.read_text())["stacks"]
    drift_md = project / "drift.md"
    result = run("drift", "--all", "--json", "--format", "markdown", "--output", str(drift_md))
    assert result.exit_code == 0 and doc_of(result)["kind"] == "drift"
    assert not drift_md.read_text().lstrip().startswith("{")  # the file in its own format


def test_format_json_without_the_json_flag_is_enveloped_too(run, deployed) -> None:  # noqa: ANN001
    result = run("preview", "--all", "--format", "json")
    assert result.exit_code == 0 and doc_of(result)["kind"] == "preview"


def test_outputs_are_json_values_and_secrets_stay_masked(run, deployed) -> None:  # noqa: ANN001
    deployed.stacks["dev-region-eu-west-1"].outputs["zones"] = OutputValue(["a", "b"])
    deployed.stacks["dev-region-eu-west-1"].outputs["limits"] = OutputValue({"rate": 5, "on": True})
    doc = doc_of(run("outputs", "dev-region-eu-west-1", "--json"))
    assert doc["outputs"]["zones"] == ["a", "b"] and doc["outputs"]["limits"] == {"rate": 5, "on": True}
    assert doc["outputs"]["apiToken"] == "[secret]"
    text = run("outputs", "dev-region-eu-west-1").stdout.splitlines()
    assert 'zones: ["a", "b"]' in text and 'limits: {"rate": 5, "on": true}' in text  # JSON, not a repr
    assert "s3cr3t-value" not in run("outputs", "dev-region-eu-west-1").stdout


def test_graph_json_is_the_dag_with_waves(run, project: Path) -> None:  # noqa: ANN001
    multi_region(project, "dev", ["eu-central-1"])
    doc = doc_of(run("graph", "--json"))
    stacks = {n["stack"]: n for n in doc["nodes"]}
    assert set(stacks) == {"dev-region-eu-west-1", "dev-region-eu-central-1", "dev-dns", "dev-replication"}
    assert stacks["dev-region-eu-west-1"]["role"] == "primary"
    assert stacks["dev-region-eu-central-1"]["role"] == "secondary"
    edges = {(e["from"], e["to"]) for e in doc["edges"]}
    assert ("dev-region-eu-west-1", "dev-dns") in edges and ("dev-dns", "dev-replication") in edges
    assert ("dev-replication", "dev-region-eu-central-1") in edges
    assert doc["waves"] == [["dev-region-eu-central-1", "dev-region-eu-west-1"], ["dev-dns"], ["dev-replication"]]
    assert run("graph").stdout.startswith("flowchart LR")  # the picture without --json


def test_one_console_serves_the_command_and_the_error_path(project: Path) -> None:
    """Without an injected console (the installed script), the document and the errors still go
    through one console: a global option given before the command does not lose the payload."""
    result = CliRunner().invoke(cli, ["--json", "graph"], obj=Deps())
    assert result.exit_code == 0
    assert "nodes" in doc_of(result)
