"""The environment's sticky drift issue against a local stand-in for GitHub's issues API.

Same marker rules as the PR comment: only an open issue whose body starts with exactly this env's
drift marker is ours; `dev` never matches `dev-tokyo`; humans' issues and pull requests are never
touched. Drift opens or updates it; no drift closes it (with a last comment).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.errors import InputRejected
from orchestrator.github import sync_issue
from orchestrator.preview.comment import marker
from tests.fake_http import Answer, Request, serve_json

TOKEN = "ghs_" + "Issu3T0ken" * 4
REPO = "acme/iot"


@dataclass
class FakeIssues:
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: list[tuple[int, str]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def add(self, body: str, *, state: str = "open", pull_request: bool = False) -> int:
        number = len(self.issues) + 1
        issue = {"number": number, "body": body, "state": state, "html_url": f"https://github.test/{REPO}/issues/{number}"}
        if pull_request:
            issue["pull_request"] = {"url": "x"}
        self.issues.append(issue)
        return number

    def get(self, number: int) -> dict[str, Any]:
        return next(i for i in self.issues if i["number"] == number)

    def mutations(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


@pytest.fixture
def gh() -> Iterator[FakeIssues]:
    state = FakeIssues()

    def route(req: Request) -> Answer:
        state.requests.append((req.method, req.path))
        if req.headers.get("Authorization") != f"Bearer {TOKEN}":
            return Answer(401, {"message": "Bad credentials"})
        base = f"/repos/{REPO}/issues"
        if req.path == base and req.method == "GET":
            assert "state=open" in req.query
            return Answer(200, [i for i in state.issues if i["state"] == "open"])
        if req.path == base and req.method == "POST":
            number = state.add(req.payload["body"])
            state.get(number)["title"] = req.payload["title"]
            return Answer(201, state.get(number))
        rest = req.path[len(base) + 1:].split("/") if req.path.startswith(base + "/") else []
        if len(rest) == 1 and req.method == "PATCH":
            issue = state.get(int(rest[0]))
            issue.update(req.payload)
            return Answer(200, issue)
        if len(rest) == 2 and rest[1] == "comments" and req.method == "POST":
            state.comments.append((int(rest[0]), req.payload["body"]))
            return Answer(201, {"id": len(state.comments)})
        return Answer(404, {"message": "Not Found"})

    with serve_json(route) as url:
        state.url = url
        yield state


def body(env: str, text: str) -> str:
    return f"{marker(env, 1, kind='drift')}\n## Drift in `{env}`\n{text}\n"


def sync(gh: FakeIssues, text: str, *, env: str = "dev", resolved: bool = False):  # noqa: ANN201
    return sync_issue(text, repo=REPO, env=env, resolved=resolved, token=TOKEN, api_url=gh.url, timeout=5,
                      sleep=lambda s: None)


def test_drift_opens_one_issue_then_updates_it_then_closes_it(gh: FakeIssues) -> None:
    first = sync(gh, body("dev", "retentionPeriod 24 -> 168"))
    assert (first.action, first.number) == ("created", 1)
    assert gh.get(1)["title"] == "Drift in dev"
    assert sync(gh, body("dev", "retentionPeriod 24 -> 168")).action == "unchanged"
    again = sync(gh, body("dev", "retentionPeriod 24 -> 72"))
    assert (again.action, again.number) == ("updated", 1) and "72" in gh.get(1)["body"]
    closed = sync(gh, body("dev", "No drift"), resolved=True)
    assert (closed.action, closed.number) == ("closed", 1)
    assert gh.get(1)["state"] == "closed" and gh.comments == [(1, body("dev", "No drift"))]
    assert sync(gh, body("dev", "No drift"), resolved=True).action == "none"
    reopened = sync(gh, body("dev", "drift again"))
    assert (reopened.action, reopened.number) == ("created", 2)


def test_other_envs_humans_and_pull_requests_are_never_touched(gh: FakeIssues) -> None:
    tokyo = gh.add(body("dev-tokyo", "tokyo drift"))
    human = gh.add("I think " + marker("dev", 1, kind="drift") + " is wrong")
    preview = gh.add(marker("dev", 1) + "\na preview, not drift")
    pr = gh.add(body("dev", "a PR quoting the marker"), pull_request=True)
    result = sync(gh, body("dev", "x"))
    assert result.action == "created" and result.number not in (tokyo, human, preview, pr)
    closed = sync(gh, body("dev", "none"), resolved=True)
    assert closed.number == result.number
    assert [gh.get(n)["state"] for n in (tokyo, human, preview, pr)] == ["open"] * 4
    touched = {path for method, path in gh.mutations()}
    assert not any(path.endswith(f"/issues/{n}") for n in (tokyo, human, preview, pr) for path in touched)


def test_a_body_without_the_envs_drift_marker_is_refused_before_any_request(gh: FakeIssues) -> None:
    for wrong in (body("prod", "x"), marker("dev", 1) + "\npreview\n", "no marker\n"):
        with pytest.raises(InputRejected):
            sync(gh, wrong)
    assert gh.requests == []
