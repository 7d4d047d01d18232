"""What an operator meets at the terminal: prompts, mistyped names, and the help pages."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from orchestrator.cli import options
from orchestrator.cli.main import SECTIONS, cli
from orchestrator.errors import ExitCode


@pytest.fixture
def at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin is a person's terminal: the mutating commands ask instead of refusing."""
    monkeypatch.setattr(options, "_interactive", lambda: True)


def test_ctrl_d_at_the_prompt_is_a_refusal_exit_4_and_nothing_runs(run, engine, at_a_terminal) -> None:  # noqa: ANN001
    result = run("up", "--all", input="")  # end of input at "Type 'dev' to confirm"
    assert result.exit_code == ExitCode.REFUSED == 4
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert "not confirmed" in result.stderr and "nothing was touched" in result.stderr
    assert engine.ops("up") == []


def test_ctrl_d_under_json_is_a_refused_document(run, engine, at_a_terminal) -> None:  # noqa: ANN001
    import json

    result = run("destroy", "--all", "--json", input="")
    assert result.exit_code == 4
    assert json.loads(result.stdout)["error"]["code"] == "refused"
    assert engine.ops("destroy") == []


def test_a_wrong_answer_is_a_refusal_and_the_right_one_runs(run, engine, at_a_terminal) -> None:  # noqa: ANN001
    assert run("up", "--all", input="prod\n").exit_code == 4 and engine.ops("up") == []
    assert run("up", "--all", input="dev\n").exit_code == 0 and engine.ops("up")


@pytest.mark.parametrize("typed, meant", [("promte-secondary", "promote-secondary"), ("stauts", "status"),
                                          ("failbak", "failback")])
def test_a_mistyped_command_gets_a_suggestion(run, typed: str, meant: str) -> None:  # noqa: ANN001
    result = run(typed)
    assert result.exit_code == 2
    (suggestion,) = re.findall(r"Did you mean (.*)\?", result.stderr)
    assert f"'{meant}'" in suggestion


def test_a_mistyped_subcommand_gets_a_suggestion(run) -> None:  # noqa: ANN001
    result = run("registry", "snyc")
    assert result.exit_code == 2 and "Did you mean 'sync'?" in result.stderr


def test_a_mistyped_region_gets_a_suggestion_and_nothing_runs(run, engine) -> None:  # noqa: ANN001
    result = run("up", "--region", "eu-wset-1", "--yes")
    assert result.exit_code == 2 and "did you mean eu-west-1?" in result.stderr
    assert engine.ops() == []


def test_a_mistyped_environment_gets_a_suggestion(run) -> None:  # noqa: ANN001
    result = run("--env", "prd", "status")
    assert result.exit_code == 2
    assert "did you mean --env prod?" in result.stderr and "environments here: dev, prod" in result.stderr


def help_of(*path: str) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_top_level_help_lists_the_lifecycle_in_order_with_full_summaries() -> None:
    text = help_of()
    lifecycle = text[text.index("Lifecycle"):]
    positions = [lifecycle.index(f"\n  {name} ") for name in
                 ("plan", "preview", "up", "promote-secondary", "failover", "failback", "destroy")]
    assert positions == sorted(positions)
    assert "one region -> promote -> failover -> failback" in text
    assert "..." not in text[text.index("Lifecycle"):]  # summaries are wrapped, never cut
    listed = {n for _, names in SECTIONS for n in names}
    for name in cli.lazy:  # every command is in a section
        assert name in listed, name


MAIN = [("plan",), ("up",), ("preview",), ("destroy",), ("promote-secondary",), ("failover",), ("failback",),
        ("status",), ("outputs",), ("graph",), ("drift",), ("recover",), ("drill",), ("registry", "sync"),
        ("registry", "backup"), ("registry", "restore")]


@pytest.mark.parametrize("path", MAIN, ids=["-".join(p) for p in MAIN])
def test_every_main_command_has_examples_that_use_it(path: tuple[str, ...]) -> None:
    text = help_of(*path)
    assert "Examples:" in text
    examples = text[text.index("Examples:"):text.index("Options:")]
    command = " ".join(path)
    lines = [ln for ln in examples.splitlines()[1:] if ln.strip()]
    assert lines and all(re.search(rf"orchestrate( --env \w+)? {re.escape(command)}\b", ln) or "make drill" in ln
                         for ln in lines), lines


def test_every_example_parses(run) -> None:  # noqa: ANN001
    """The examples are real command lines: click accepts their options (checked with --help,
    which parses the options before it; nothing runs)."""
    seen = 0
    for path in MAIN:
        text = help_of(*path)
        block = text[text.index("Examples:"):text.index("Options:")]
        for line in block.splitlines()[1:]:
            line = line.split("|")[0].split(">")[0].strip()
            if not line.startswith("orchestrate "):
                continue
            args = [a for a in re.split(r"\s{2,}", line)[0].split()[1:]]
            result = CliRunner().invoke(cli, [*args, "--help"])
            assert result.exit_code == 0, (line, result.output)
            seen += 1
    assert seen >= 25


def test_drill_help_says_what_exists_and_what_it_needs() -> None:
    text = " ".join(help_of("drill").split())
    assert "NOT available yet" in text and "refuses (exit 2) before touching the account" in text
    assert "mosquitto" in text and "make drill-deps" in text


@pytest.mark.parametrize("path", [("up",), ("registry",), ("registry", "sync"), ("comment", "post")])
def test_command_help_names_the_global_options_once_instead_of_repeating_them(path: tuple[str, ...]) -> None:
    text = help_of(*path)
    assert "Global options" in text
    assert "--env, --config, --backend, --endpoint-url, --secrets-provider, --json, -v" in text
    assert "ORCHESTRATE_ENV" not in text and "Machine output on stdout" not in text  # described at the top only
    top = help_of()
    assert "ORCHESTRATE_ENV" in top and "Machine output on stdout" in top


def test_global_options_still_work_after_the_command(run) -> None:  # noqa: ANN001
    import json

    assert json.loads(run("graph", "--env", "prod", "--json").stdout)["env"] == "prod"
