"""`orchestrate comment post`: the file `preview --format markdown` wrote becomes the sticky comment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from orchestrator.preview import EnvironmentPreview, Op, ResourceChange, StackPreview, join_parts, render
from tests.orchestrator.test_github import PR, REPO, TOKEN, FakeGitHub, gh  # noqa: F401 (fixture)


@pytest.fixture
def github_env(gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:  # noqa: F811
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", gh.url)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    return gh


def comment_file(project: Path, env: str, resources: int = 3, name: str = "comment.md") -> Path:
    changes = tuple(ResourceChange(f"urn:{i}", "aws:iot/thing:Thing", f"thing-{i:05d}-{'x' * 60}", Op.CREATE)
                    for i in range(resources))
    stack = StackPreview(f"{env}-region-eu-west-1", "region", "eu-west-1", changes, {Op.CREATE: resources})
    path = project / name
    path.write_text(join_parts(render(EnvironmentPreview(env, "abc123", (stack,)), "markdown")))
    return path


def test_post_creates_then_updates_the_environment_comment(run: Callable[..., Result], project: Path,
                                                           github_env: FakeGitHub) -> None:
    path = comment_file(project, "prod")
    first = run("comment", "post", "--env", "prod", "--file", str(path), "--repo", REPO, "--pr", str(PR))
    assert first.exit_code == 0, first.stderr
    assert f"comment for env prod on {REPO}#{PR}: 1 part(s): 1 created" in first.stdout
    assert "issuecomment-" in first.stdout
    (comment,) = github_env.comments
    assert comment["body"].startswith("<!-- orchestrate-preview env=prod part=1 -->")
    again = run("--env", "prod", "comment", "post", "--file", str(path), "--repo", REPO, "--pr", str(PR))
    assert again.exit_code == 0 and "1 unchanged" in again.stdout and len(github_env.comments) == 1


def test_a_multi_part_file_is_posted_part_by_part(run: Callable[..., Result], project: Path,
                                                  github_env: FakeGitHub) -> None:
    path = comment_file(project, "prod", resources=1500)
    result = run("comment", "post", "--env", "prod", "--file", str(path), "--repo", REPO, "--pr", str(PR),
                 "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert len(doc["created"]) == len(github_env.comments) > 1
    assert all(len(c["body"]) <= 65536 for c in github_env.comments)


def test_repository_defaults_to_github_repository(run: Callable[..., Result], project: Path,
                                                   github_env: FakeGitHub,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    path = comment_file(project, "dev")
    result = run("comment", "post", "--env", "dev", "--file", str(path), "--pr", str(PR))
    assert result.exit_code == 0, result.stderr


def test_a_file_for_another_environment_is_refused_before_posting(run: Callable[..., Result], project: Path,
                                                                  github_env: FakeGitHub) -> None:
    path = comment_file(project, "dev")
    result = run("comment", "post", "--env", "prod", "--file", str(path), "--repo", REPO, "--pr", str(PR))
    assert result.exit_code == 2
    assert "preview of env dev, not prod" in result.stderr
    assert github_env.requests == []


def test_missing_file_or_token_is_bad_input(run: Callable[..., Result], project: Path, github_env: FakeGitHub,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    missing = run("comment", "post", "--file", str(project / "nope.md"), "--repo", REPO, "--pr", "1")
    assert missing.exit_code == 2 and "cannot read the comment file" in missing.stderr
    monkeypatch.delenv("GITHUB_TOKEN")
    path = comment_file(project, "dev")
    no_token = run("comment", "post", "--file", str(path), "--repo", REPO, "--pr", "1")
    assert no_token.exit_code == 2 and "GITHUB_TOKEN" in no_token.stderr


def test_a_rejected_token_fails_with_one_line_and_never_prints_it(run: Callable[..., Result], project: Path,
                                                                 github_env: FakeGitHub,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "ghp_" + "Q" * 36
    monkeypatch.setenv("GITHUB_TOKEN", bad)
    path = comment_file(project, "dev")
    result = run("comment", "post", "--file", str(path), "--repo", REPO, "--pr", str(PR))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "HTTP 401" in result.stderr
    assert bad not in result.stderr + result.stdout
