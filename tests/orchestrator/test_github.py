"""The sticky PR comment against a local stand-in for GitHub's REST API (127.0.0.1, in a thread).

The fake implements only what `post_comment` uses: list a PR's issue comments (paginated with a
Link header), create, update and delete a comment. It records every request, so tests can assert
that comments of other environments and of humans are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest

from orchestrator.errors import InputRejected, OperationFailed
from orchestrator.github import post_comment
from orchestrator.preview.comment import marker
from tests.fake_http import Answer, Request, serve_json

TOKEN = "ghs_" + "T0kenT0ken" * 4
REPO = "acme/iot"
PR = 7


@dataclass
class FakeGitHub:
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail: list[tuple[int, dict[str, str], str]] = field(default_factory=list)  # queued error answers
    per_page_cap: int = 100
    next_id: int = 1000
    url: str = ""
    auth_seen: set[str] = field(default_factory=set)

    def add(self, body: str, user: str = "github-actions[bot]") -> int:
        self.next_id += 1
        self.comments.append({"id": self.next_id, "body": body, "user": {"login": user},
                              "html_url": f"https://github.test/{REPO}/pull/{PR}#issuecomment-{self.next_id}"})
        return self.next_id

    def body(self, cid: int) -> str | None:
        return next((c["body"] for c in self.comments if c["id"] == cid), None)

    def mutations(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    state = FakeGitHub()

    def route(req: Request) -> Answer:
        state.requests.append((req.method, req.path))
        state.auth_seen.add(req.headers.get("Authorization", ""))
        if state.fail:
            status, headers, message = state.fail.pop(0)
            return Answer(status, {"message": message}, headers)
        if req.headers.get("Authorization") != f"Bearer {TOKEN}":
            return Answer(401, {"message": "Bad credentials"})
        list_path = f"/repos/{REPO}/issues/{PR}/comments"
        if req.path == list_path and req.method == "GET":
            q = parse_qs(req.query)
            per_page = min(int(q.get("per_page", ["30"])[0]), state.per_page_cap)
            page = int(q.get("page", ["1"])[0])
            chunk = state.comments[(page - 1) * per_page: page * per_page]
            headers = {}
            if page * per_page < len(state.comments):
                headers["Link"] = (f'<{state.url}{list_path}?per_page={per_page}&page={page + 1}>; '
                                   f'rel="next", <{state.url}{list_path}?page=99>; rel="last"')
            return Answer(200, chunk, headers)
        if req.path == list_path and req.method == "POST":
            cid = state.add(req.payload["body"])
            return Answer(201, next(c for c in state.comments if c["id"] == cid))
        prefix = f"/repos/{REPO}/issues/comments/"
        if req.path.startswith(prefix):
            cid = int(req.path[len(prefix):])
            found = next((c for c in state.comments if c["id"] == cid), None)
            if found is None:
                return Answer(404, {"message": "Not Found"})
            if req.method == "PATCH":
                found["body"] = req.payload["body"]
                return Answer(200, found)
            if req.method == "DELETE":
                state.comments.remove(found)
                return Answer(204)
        return Answer(404, {"message": "Not Found"})

    with serve_json(route) as url:
        state.url = url
        yield state


def parts_for(env: str, n: int, tag: str = "v1") -> list[str]:
    return [f"{marker(env, i)}\n### preview {env} {tag} part {i}\n" for i in range(1, n + 1)]


def post(gh: FakeGitHub, parts: list[str], env: str = "dev", **kw: Any):
    kw.setdefault("token", TOKEN)
    return post_comment(parts, repo=REPO, pr=PR, env=env, api_url=gh.url, timeout=5, sleep=lambda s: None,
                        **kw)


def seed_foreign(gh: FakeGitHub) -> dict[int, str]:
    """Comments that are not dev's preview: another env's parts, a human's, a quote of a marker."""
    bodies = [
        marker("dev-tokyo", 1) + "\ntokyo part 1\n",
        marker("dev-tokyo", 2) + "\ntokyo part 2\n",
        "LGTM, but see below\n" + marker("dev", 1),
        "<!-- pulumi preview dev -->\nsomeone else's bot\n",
    ]
    return {gh.add(b, user="someone"): b for b in bodies}


def assert_untouched(gh: FakeGitHub, foreign: dict[int, str]) -> None:
    for cid, body in foreign.items():
        assert gh.body(cid) == body
    touched = {int(path.rsplit("/", 1)[1]) for method, path in gh.mutations()
               if method in ("PATCH", "DELETE")}
    assert not touched & set(foreign)


def test_first_post_creates_every_part(gh: FakeGitHub) -> None:
    foreign = seed_foreign(gh)
    result = post(gh, parts_for("dev", 2))
    assert len(result.created) == 2 and not result.updated and not result.deleted
    assert [gh.body(c) for c in result.created] == parts_for("dev", 2)
    assert all(u.startswith("https://github.test/") for u in result.urls) and len(result.urls) == 2
    assert_untouched(gh, foreign)


def test_second_post_updates_in_place_without_new_comments(gh: FakeGitHub) -> None:
    foreign = seed_foreign(gh)
    first = post(gh, parts_for("dev", 2))
    gh.requests.clear()
    second = post(gh, parts_for("dev", 2, tag="v2"))
    assert second.updated == first.created and not second.created and not second.deleted
    assert [gh.body(c) for c in first.created] == parts_for("dev", 2, tag="v2")
    assert [m for m, _ in gh.mutations()] == ["PATCH", "PATCH"]
    assert_untouched(gh, foreign)


def test_unchanged_parts_are_not_rewritten(gh: FakeGitHub) -> None:
    post(gh, parts_for("dev", 2))
    gh.requests.clear()
    result = post(gh, parts_for("dev", 2))
    assert len(result.unchanged) == 2 and gh.mutations() == []


def test_parts_no_longer_needed_are_deleted_and_missing_ones_created(gh: FakeGitHub) -> None:
    foreign = seed_foreign(gh)
    three = post(gh, parts_for("dev", 3))
    one = post(gh, parts_for("dev", 1, tag="v2"))
    assert one.updated == three.created[:1] and one.deleted == three.created[1:]
    assert gh.body(three.created[1]) is None and gh.body(three.created[2]) is None
    again = post(gh, parts_for("dev", 2, tag="v3"))
    assert again.updated == three.created[:1] and len(again.created) == 1
    assert_untouched(gh, foreign)


def test_dev_never_touches_dev_tokyo_and_vice_versa(gh: FakeGitHub) -> None:
    tokyo = post(gh, parts_for("dev-tokyo", 2), env="dev-tokyo")
    dev = post(gh, parts_for("dev", 1), env="dev")
    assert dev.created and not dev.updated and not dev.deleted  # tokyo's part 1 is not dev's part 1
    assert [gh.body(c) for c in tokyo.created] == parts_for("dev-tokyo", 2)
    post(gh, parts_for("dev-tokyo", 1, tag="v2"), env="dev-tokyo")
    assert gh.body(dev.created[0]) == parts_for("dev", 1)[0]


def test_existing_parts_are_found_across_pages(gh: FakeGitHub) -> None:
    gh.per_page_cap = 3  # force pagination through the Link header
    for i in range(10):
        gh.add(f"human comment {i}", user="someone")
    first = post(gh, parts_for("dev", 2))
    for i in range(10):
        gh.add(f"later comment {i}", user="someone")
    second = post(gh, parts_for("dev", 2, tag="v2"))
    assert second.updated == first.created and not second.created
    assert sum(1 for m, p in gh.requests if m == "GET") >= 8


def test_duplicate_parts_from_a_race_are_collapsed(gh: FakeGitHub) -> None:
    a = gh.add(parts_for("dev", 1)[0])
    b = gh.add(parts_for("dev", 1)[0])
    result = post(gh, parts_for("dev", 1, tag="v2"))
    assert result.updated == (a,) and result.deleted == (b,)


def test_401_is_a_clear_one_line_error_without_the_token(gh: FakeGitHub) -> None:
    with pytest.raises(OperationFailed) as info:
        post(gh, parts_for("dev", 1), token="ghp_" + "W" * 36)
    message = info.value.one_line()
    assert "HTTP 401" in message and "GITHUB_TOKEN" in message
    assert "ghp_" not in message and "\n" not in message
    assert gh.mutations() == []


@pytest.mark.parametrize("status, expect", [
    (403, "pull-requests: write"),
    (404, "check --repo acme/iot and --pr 7"),
])
def test_permission_and_not_found_errors_say_what_to_check(gh: FakeGitHub, status: int, expect: str) -> None:
    gh.fail = [(status, {}, f"problem with {TOKEN}")]
    with pytest.raises(OperationFailed) as info:
        post(gh, parts_for("dev", 1))
    message = info.value.one_line()
    assert f"HTTP {status}" in message and expect in message and TOKEN not in message


def test_server_errors_are_retried_then_succeed(gh: FakeGitHub) -> None:
    waits: list[float] = []
    gh.fail = [(500, {}, "oops"), (502, {}, "bad gateway")]
    result = post_comment(parts_for("dev", 1), repo=REPO, pr=PR, env="dev", token=TOKEN, api_url=gh.url,
                          timeout=5, sleep=waits.append)
    assert len(result.created) == 1 and len(waits) == 2


def test_retries_are_bounded(gh: FakeGitHub) -> None:
    gh.fail = [(503, {}, "down")] * 10
    with pytest.raises(OperationFailed, match=r"HTTP 503 .*after 3 attempts"):
        post(gh, parts_for("dev", 1), max_attempts=3)
    assert len(gh.requests) == 3


def test_secondary_rate_limit_honours_retry_after(gh: FakeGitHub) -> None:
    waits: list[float] = []
    gh.fail = [(403, {"Retry-After": "7"}, "You have exceeded a secondary rate limit")]
    result = post_comment(parts_for("dev", 1), repo=REPO, pr=PR, env="dev", token=TOKEN, api_url=gh.url,
                          timeout=5, sleep=waits.append)
    assert waits == [7.0] and len(result.created) == 1


def test_a_rate_limit_longer_than_the_bound_fails_at_once(gh: FakeGitHub) -> None:
    gh.fail = [(429, {"Retry-After": "3600"}, "slow down")]
    with pytest.raises(OperationFailed, match="rate limit"):
        post(gh, parts_for("dev", 1), max_wait=60)


def test_unreachable_api_is_a_clear_error() -> None:
    with pytest.raises(OperationFailed, match="cannot reach GitHub at http://127.0.0.1:9"):
        post_comment(parts_for("dev", 1), repo=REPO, pr=PR, env="dev", token=TOKEN,
                     api_url="http://127.0.0.1:9", timeout=2, max_attempts=2, sleep=lambda s: None)


def test_token_and_api_url_come_from_the_environment(gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", gh.url)
    result = post_comment(parts_for("dev", 1), repo=REPO, pr=PR, env="dev", sleep=lambda s: None)
    assert len(result.created) == 1 and gh.auth_seen == {f"Bearer {TOKEN}"}


def test_pagination_never_follows_links_to_another_host(gh: FakeGitHub) -> None:
    gh.per_page_cap = 1
    gh.add("a", user="x")
    gh.add("b", user="x")
    real = gh.url
    gh.url = "http://evil.example"  # the fake now advertises a foreign next page
    with pytest.raises(OperationFailed, match="outside"):
        post_comment(parts_for("dev", 1), repo=REPO, pr=PR, env="dev", token=TOKEN, api_url=real,
                     timeout=5, sleep=lambda s: None)


@pytest.mark.parametrize("kw, match", [
    ({"token": ""}, "GITHUB_TOKEN"),
    ({"repo": "not-a-repo"}, "OWNER/NAME"),
    ({"pr": 0}, "pull request number"),
    ({"parts": []}, "no parts"),
    ({"parts": ["no marker"]}, "marker"),
    ({"parts": parts_for("dev-tokyo", 1)}, "marker of env dev part 1"),
    ({"parts": [parts_for("dev", 1)[0] + "x" * 70000]}, "65536"),
])
def test_bad_input_is_rejected_before_any_request(gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
                                                  kw: dict[str, Any], match: str) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    args: dict[str, Any] = {"parts": parts_for("dev", 1), "repo": REPO, "pr": PR, "env": "dev",
                            "token": TOKEN, "api_url": gh.url}
    args.update(kw)
    parts = args.pop("parts")
    with pytest.raises(InputRejected, match=match):
        post_comment(parts, **args)
    assert gh.requests == []
