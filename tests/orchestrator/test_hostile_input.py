"""Hostile and careless input: every case ends in exit 2 with one short line, nothing touched.

Each test names what the old code did with the same input.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import InputRejected
from orchestrator.topology import MAX_TOPOLOGY_BYTES, load, save
from tests.orchestrator.conftest import REPO, write_topology

DEV = (REPO / "stacks" / "dev.topology.yaml").read_text()
ORCHESTRATE = Path(sys.executable).parent / "orchestrate"


def one_line(result) -> str:  # noqa: ANN001 - click's Result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert len(lines[0]) <= 700
    return lines[0]


def test_a_yaml_alias_bomb_is_refused_fast_with_a_short_line(run, project: Path, engine) -> None:  # noqa: ANN001
    """Before: a 940-byte bomb took 5 s and printed a multi-megabyte line (repr of the expansion)."""
    bomb = "domain: &d iot.example.com\nhosted_zone: example.com\nprimary: eu-west-1\n" + "\n".join(
        ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n"
    assert len(bomb.encode()) < 1000
    write_topology(project, "dev", bomb)
    result = run("plan", "--json")
    assert result.exit_code == 2
    # refused while parsing, before the aliases are expanded (the expansion is what took the time)
    assert "aliases (*name) are not allowed" in one_line(result)
    assert engine.calls == []


@pytest.mark.parametrize("text, expected", [
    (DEV + "primary: eu-central-1\n", "duplicate key 'primary'"),
    (DEV + "sizing:\n  default: {}\n", "duplicate key 'sizing'"),
    (DEV + "extra: " + "[" * 200 + "]" * 200 + "\n", "nested deeper than"),
    (DEV.replace("kinesis_shards: 1", "kinesis_shards: " + "9" * 5000), "unreadable YAML"),
    (DEV.replace("- thermostat", '- "thermostat\\n"'), "registry.thing_types[0]"),
    (DEV.replace("domain: iot.example.com", 'domain: "iot.example.com\\n"'), "domain:"),
    (DEV.replace("- thermostat", "- " + "x" * 5000), "registry.thing_types[0]"),
])
def test_hostile_topologies_are_exit_2_with_one_short_line(run, project: Path, engine, text: str,  # noqa: ANN001
                                                           expected: str) -> None:
    """Before: duplicate keys let the last one win; deep nesting and a 5,000-digit integer were exit 1
    'internal error'; a trailing newline passed the name regexes; a long value was echoed whole."""
    write_topology(project, "dev", text)
    result = run("plan", "--json")
    assert result.exit_code == 2, result.output
    assert expected in one_line(result)
    assert engine.calls == []


def test_invalid_utf8_and_oversized_files_are_exit_2(run, project: Path) -> None:  # noqa: ANN001
    path = project / "stacks" / "dev.topology.yaml"
    path.write_bytes(DEV.encode() + b"# \xff\xfe\n")
    result = run("plan", "--json")
    assert result.exit_code == 2 and "not UTF-8" in one_line(result)
    path.write_text(DEV + "#" * MAX_TOPOLOGY_BYTES + "\n")
    result = run("plan", "--json")
    assert result.exit_code == 2 and "limit" in one_line(result)


def _orchestrate(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed console script, bounded in time and memory: the old code hung on a FIFO and read
    /dev/zero until it ran out of memory."""
    def limit() -> None:  # pragma: no cover - runs in the child
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    return subprocess.run([str(ORCHESTRATE), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=limit, env=env, check=False)


@pytest.mark.slow
def test_a_fifo_or_a_device_as_config_is_refused_without_hanging(project: Path) -> None:
    fifo = project / "stacks" / "dev.topology.yaml"
    fifo.unlink()
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    proc = _orchestrate(["--config", str(fifo), "plan", "--json"], project)
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr
    proc = _orchestrate(["--config", "/dev/zero", "--env", "dev", "plan", "--json"], project)
    assert proc.returncode == 2, proc.stderr[-2000:]


# -- the topology names its environment ---------------------------------------------------------
def test_a_topology_used_for_another_env_is_exit_2_and_touches_nothing(run, project: Path, engine,  # noqa: ANN001
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ORCHESTRATE_ENV=prod with ORCHESTRATE_CONFIG=<dev topology> destroyed a prod stack, guarded
    by dev's topology; --config prod.topology.yaml without --env planned prod against dev's stacks."""
    assert run("up", "--all", "--yes").exit_code == 0
    engine.calls.clear()
    monkeypatch.setenv("ORCHESTRATE_ENV", "prod")
    monkeypatch.setenv("ORCHESTRATE_CONFIG", str(project / "stacks" / "dev.topology.yaml"))
    result = run("destroy", "--region", "eu-central-1", "--yes")
    assert result.exit_code == 2
    assert "topology of env 'dev', not of env 'prod'" in one_line(result)
    monkeypatch.delenv("ORCHESTRATE_ENV")
    monkeypatch.delenv("ORCHESTRATE_CONFIG")
    result = run("--config", "stacks/prod.topology.yaml", "plan", "--json")
    assert result.exit_code == 2 and "not of env 'dev'" in one_line(result)
    assert engine.calls == []


def test_the_env_key_names_the_environment_of_any_file_name(run, project: Path, tmp_path: Path) -> None:  # noqa: ANN001
    custom = project / "stacks" / "review-copy.yaml"
    custom.write_text("env: prod\n" + (project / "stacks" / "prod.topology.yaml").read_text())
    assert run("--env", "prod", "--config", str(custom), "graph").exit_code == 0
    assert run("--config", str(custom), "graph").exit_code == 2  # used for dev
    unnamed = project / "stacks" / "copy.yaml"
    unnamed.write_text(DEV)
    result = run("--config", str(unnamed), "graph")
    assert result.exit_code == 2 and "does not name its environment" in one_line(result)
    named_twice = project / "stacks" / "dev.topology.yaml"
    named_twice.write_text("env: prod\n" + DEV)
    assert run("graph").exit_code == 2


def test_save_keeps_the_mode_and_the_comments(tmp_path: Path) -> None:
    """Before: writing the topology back dropped every comment (and the mode, in an earlier version)."""
    path = tmp_path / "dev.topology.yaml"
    path.write_text("# reviewed by the platform team\n" + DEV.replace(
        "routing: single", "routing: single  # until eu-central-1 is verified").replace(
        "residency:", "# data may only live in the EU\nresidency:"))
    os.chmod(path, 0o640)
    save(load(path).with_secondary("eu-central-1").with_routing(load(path).routing), path)
    text = path.read_text()
    assert "# reviewed by the platform team" in text
    assert "# until eu-central-1 is verified" in text
    assert "# data may only live in the EU" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    again = load(path)
    assert again.secondaries == ("eu-central-1",) and again.registry == load(path).registry


def test_error_lines_are_cut_to_a_sane_length() -> None:
    error = InputRejected("x" * 100_000, hint="y" * 100_000)
    assert len(error.one_line()) <= 600


# -- names from the graph, refs that are refs ---------------------------------------------------
def test_outputs_takes_stack_names_from_the_graph_only(run, project: Path, engine) -> None:  # noqa: ANN001
    """Before: `outputs 'dev-region-/../../…/victim'` made a workspace and a Pulumi.yaml outside the project."""
    for name in ("dev-region-/../../../victim", "dev-region-eu-west-1\n", "dev-region-eu-north-1"):
        result = run("outputs", name)
        assert result.exit_code == 2, (name, result.output)
        assert "is not a stack of env dev" in one_line(result)
    assert not any(c.operation == "outputs" for c in engine.calls)


def test_base_ref_cannot_be_an_option(run, project: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Before: `preview --base-ref=--output=<path>` made git write a file."""
    target = tmp_path / "written-by-git"
    for ref in (f"--output={target}", "-p", "main..other", "a b"):
        result = run("preview", "--base-ref", ref)
        assert result.exit_code == 2, (ref, result.output)
        assert "--base-ref" in one_line(result)
    assert not target.exists()


def test_interactive_destroy_asks_for_the_stack_then_separately_for_the_data(run, engine, project: Path,  # noqa: ANN001
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.orchestrator.conftest import multi_region

    multi_region(project, "dev", ["eu-central-1"])
    assert run("up", "--all", "--yes").exit_code == 0
    engine.calls.clear()
    monkeypatch.setattr("orchestrator.cli.options._interactive", lambda: True)
    result = run("destroy", "--region", "eu-central-1", "--include-protected",
                 input="dev-region-eu-central-1\nno\n")
    assert result.exit_code == 4, result.output
    assert "Type 'dev-region-eu-central-1' to confirm" in result.stderr
    assert "Type 'delete dev data' to confirm" in result.stderr
    assert engine.calls == []


@pytest.mark.parametrize("args, expected, shown", [
    (["up", "--all"], "dev", "up wave 2: dev-dns\nup wave 3: dev-replication\nwhat would change:\n"),
    (["failover", "--to", "eu-central-1"], "eu-central-1", "[failover] will final-sync"),
    (["failback", "--to", "eu-central-1"], "eu-central-1", "[failback] will sync-back"),
    (["promote-secondary", "--region", "eu-west-2", "--routing", "failover"], "eu-west-2",
     "[promote-secondary] will registry-sync"),
])
def test_mutating_commands_on_a_terminal_show_the_change_and_need_the_typed_name(
        run, engine, project: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
        args: list[str], expected: str, shown: str) -> None:
    """On a terminal each mutating command says what it will change and asks for a name: a wrong
    answer is exit 4 with nothing touched (no stack, no topology, no lifecycle record)."""
    from tests.orchestrator.conftest import multi_region

    multi_region(project, "dev", ["eu-central-1"])
    assert run("up", "--all", "--yes").exit_code == 0
    engine.calls.clear()
    topology = (project / "stacks" / "dev.topology.yaml").read_text()
    monkeypatch.setattr("orchestrator.cli.options._interactive", lambda: True)
    result = run(*args, input="eu-west-1-typo\n")
    assert result.exit_code == 4, result.output
    assert shown in result.stderr and f"Type {expected!r} to confirm" in result.stderr
    assert "not confirmed: nothing was touched" in result.stderr
    assert [c for c in engine.calls if c.operation in ("up", "destroy")] == []
    assert (project / "stacks" / "dev.topology.yaml").read_text() == topology
    assert not (project / ".orchestrate" / "lifecycle" / "dev.json").exists()
    if args[0] == "up":  # the changes per stack come before the question; typed right, it goes ahead
        assert "dev-replication: preview failed" in result.stderr  # the in-memory engine has no preview
        assert "update 4 stacks of env dev\nType 'dev' to confirm" in result.stderr
        assert run(*args, input=f"{expected}\n").exit_code == 0
        assert [c.operation for c in engine.calls].count("up") == 4


@pytest.mark.parametrize("args", [
    ["up", "--all"],
    ["destroy", "--region", "eu-central-1"],
    ["destroy", "--region", "eu-central-1", "--include-protected"],
    ["failover", "--to", "eu-central-1"],
])
def test_mutating_commands_without_a_terminal_need_yes(run, engine, project: Path, args: list[str]) -> None:  # noqa: ANN001
    """Before: `up` never asked; a secondary's destroy went ahead with input from /dev/null."""
    from tests.orchestrator.conftest import multi_region

    multi_region(project, "dev", ["eu-central-1"])
    assert run("up", "--all", "--yes").exit_code == 0
    engine.calls.clear()
    topology = (project / "stacks" / "dev.topology.yaml").read_text()
    result = run(*args)
    assert result.exit_code == 4, result.output
    assert "--yes" in result.stderr.splitlines()[-1]
    assert [c for c in engine.calls if c.operation in ("up", "destroy")] == []
    assert (project / "stacks" / "dev.topology.yaml").read_text() == topology


# -- where tokens go, what is scrubbed ------------------------------------------------------------
@pytest.mark.parametrize("url, ok", [
    ("http://api.example.com", False), ("http://10.0.0.8:8080/api", False), ("ftp://api.github.com", False),
    ("https://api.github.com", True), ("https://ghe.example.com/api/v3", True),
    ("http://127.0.0.1:8080", True), ("http://localhost:9000", True), ("http://[::1]:80", True),
])
def test_the_github_token_never_travels_in_clear(url: str, ok: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: an http:// GITHUB_API_URL was accepted and the token sent in clear text."""
    from orchestrator.github import check_api_url, post_comment

    if ok:
        assert check_api_url(url) == url
        return
    monkeypatch.setenv("GITHUB_API_URL", url)
    with pytest.raises(InputRejected, match="GITHUB_API_URL"):
        post_comment(["x"], repo="o/n", pr=1, env="dev", token="ghs_" + "t" * 36)


def test_the_passphrase_file_and_runner_tokens_are_scrubbed(tmp_path: Path) -> None:
    from orchestrator.scrub import Scrubber

    phrase = tmp_path / "phrase"
    phrase.write_text("tr0ub4dor&3-passphrase\n")
    scrub = Scrubber(environ={"PULUMI_CONFIG_PASSPHRASE_FILE": str(phrase),
                              "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "eyJhbGciOiJSUzI1NiJ9.request-token"})
    text = scrub("failed with tr0ub4dor&3-passphrase and eyJhbGciOiJSUzI1NiJ9.request-token")
    assert "tr0ub4dor" not in text and "request-token" not in text and text.count("[redacted]") == 2


def test_lifecycle_state_file_holds_no_secret_an_error_echoed(run, engine, project: Path,  # noqa: ANN001
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a failed step's error went into .orchestrate/lifecycle/<env>.json as it came."""
    from tests.orchestrator.conftest import multi_region

    multi_region(project, "dev", ["eu-central-1"])
    assert run("up", "--all", "--yes").exit_code == 0
    token = "ghp_" + "z" * 36
    engine.fail_on["dev-dns"] = f"provider said: token {token} AKIAABCDEFGHIJKLMNOP"
    monkeypatch.setattr("orchestrator.operations.lifecycle.Lifecycle._check_up", lambda self, t, r: "up")
    monkeypatch.setattr("orchestrator.operations.lifecycle.Lifecycle._registry_sync", lambda self, s, d: "synced")
    monkeypatch.setattr("orchestrator.operations.lifecycle.Lifecycle._carry_jobs", lambda self, s, d: "carried")
    monkeypatch.setattr("orchestrator.operations.verify.region_answers", lambda ctx, region: True)
    result = run("failover", "--to", "eu-central-1", "--yes")
    state = (project / ".orchestrate" / "lifecycle" / "dev.json").read_text()
    assert result.exit_code == 1 and "failed" in state
    assert token not in state and "AKIAABCDEFGHIJKLMNOP" not in state
    assert token not in result.stdout + result.stderr


def test_a_long_message_is_cut_and_its_hint_is_kept_whole() -> None:
    from orchestrator.errors import InputRejected

    path = "/very/long/" + "x" * 900 + "/dev.topology.yaml"
    hint = "commit the topology or pull main"
    line = InputRejected(f"{path} disagrees with the recorded primary", hint=hint).one_line()
    assert len(line) == InputRejected.MAX_LINE and "\n" not in line
    assert line.endswith("… (commit the topology or pull main)"), line[-80:]
    short = InputRejected("bad region", hint="try eu-west-1").one_line()
    assert short == "bad region (try eu-west-1)"
    huge_hint = InputRejected("m", hint="y" * 2000).one_line()
    assert len(huge_hint) <= InputRejected.MAX_LINE and huge_hint.startswith("m (")
