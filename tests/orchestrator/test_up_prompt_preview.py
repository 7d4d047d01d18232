"""`up` at a terminal shows, per stack, what Pulumi would change before it asks (issue 23, item 2)."""

from __future__ import annotations

import pytest

from orchestrator.cli import options
from orchestrator.preview.model import Op, ResourceChange, StackPreview
from orchestrator.stacks.wiring import StackSpec


@pytest.fixture
def at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options, "_interactive", lambda: True)


def _previews(engine) -> None:  # noqa: ANN001
    def factory(spec: StackSpec) -> StackPreview:
        if spec.kind == "region":
            changes = (ResourceChange("urn:a", "aws:kinesis/stream:Stream", "stream", Op.REPLACE, stateful=True),)
            return StackPreview(spec.name, spec.kind, spec.region, changes,
                                {Op.CREATE: 3, Op.UPDATE: 1, Op.REPLACE: 1, Op.SAME: 30})
        return StackPreview(spec.name, spec.kind, spec.region, (), {Op.CREATE: 4})

    engine.previews["*"] = factory


def test_up_prompt_shows_per_stack_changes_before_asking(run, engine, at_a_terminal) -> None:  # noqa: ANN001
    _previews(engine)
    result = run("up", "--region", "eu-west-1", input="no\n")
    assert result.exit_code == 4 and engine.ops("up") == []
    err = result.stderr
    line = "dev-region-eu-west-1: 3 to create, 1 to update, 1 to replace, 0 to delete (30 unchanged)"
    assert line in err and "PROTECTED/STATEFUL: stream" in err, err
    assert "dev-dns: 4 to create" in err
    assert err.index(line) < err.index("Type 'dev' to confirm")


def test_a_failed_preview_never_reads_as_no_changes(run, engine, at_a_terminal) -> None:  # noqa: ANN001
    result = run("up", "--region", "eu-west-1", input="no\n")  # no preview configured: each one fails
    assert "dev-region-eu-west-1: preview failed" in result.stderr, result.stderr


def test_with_yes_nothing_is_previewed(run, engine) -> None:  # noqa: ANN001
    _previews(engine)
    assert run("up", "--yes", "--region", "eu-west-1").exit_code == 0
    assert engine.ops("preview") == []
