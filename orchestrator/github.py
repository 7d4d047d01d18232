"""One sticky preview comment per environment on a pull request, over GitHub's REST API (urllib).

`post_comment` lists the PR's issue comments (every page), picks out the parts of *this*
environment's preview by their exact marker (`orchestrator.preview.comment.parse_marker`: `dev`
never matches `dev-tokyo`, and a comment only counts when its first line is the marker), then
updates those parts in place, creates the missing ones and deletes parts no longer needed.
Comments of other environments and of humans are never touched.

Errors are `OperationFailed` one-liners with the HTTP status and what to check; the token never
appears in them. 5xx answers, network errors and rate limits (Retry-After, secondary limits) are
retried a bounded number of times with a bounded wait; every request has a timeout.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import IO, TYPE_CHECKING, Any

from orchestrator.errors import InputRejected, OperationFailed
from orchestrator.preview.comment import MAX_COMMENT_CHARS, comment_length, parse_kind_marker, parse_marker
from orchestrator.scrub import scrub

if TYPE_CHECKING:  # pragma: no cover
    from http.client import HTTPMessage

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100
MAX_PAGES = 100  # 10,000 comments: far beyond any real PR; stops a pagination loop
_REPO_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}\Z")
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class PostResult:
    """What happened to each part: comment ids created, updated, left unchanged, deleted."""

    created: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    unchanged: tuple[int, ...] = ()
    deleted: tuple[int, ...] = ()
    urls: tuple[str, ...] = ()  # html_url of every part, in part order

    def summary(self) -> str:
        return (f"{len(self.urls)} part(s): {len(self.created)} created, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted")


@dataclass(frozen=True)
class _Comment:
    id: int
    body: str
    url: str
    part: int


def post_comment(parts: Sequence[str], *, repo: str, pr: int, env: str, token: str | None = None,
                 api_url: str | None = None, timeout: float = 30.0, max_attempts: int = 4,
                 max_wait: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> PostResult:
    """Create or update this environment's preview comment (all its parts) on pull request `pr`.

    `token` defaults to $GITHUB_TOKEN, `api_url` to $GITHUB_API_URL or https://api.github.com.
    """
    token = token if token is not None else os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise InputRejected("no GitHub token: set GITHUB_TOKEN",
                            hint="in a workflow: env GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}")
    api_url = check_api_url((api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"))
    if not _REPO_RE.fullmatch(repo):
        raise InputRejected(f"--repo must be OWNER/NAME, not {repo!r}")
    if isinstance(pr, bool) or not isinstance(pr, int) or pr < 1:
        raise InputRejected(f"--pr must be a pull request number, not {pr!r}")
    if not parts:
        raise InputRejected("nothing to post: the comment has no parts")
    for n, body in enumerate(parts, start=1):
        if parse_marker(body) != (env, n):
            raise InputRejected(f"part {n} does not start with the marker of env {env} part {n}",
                                hint="post only what `orchestrate preview --format markdown` wrote")
        if comment_length(body) > MAX_COMMENT_CHARS:
            raise InputRejected(f"part {n} has {comment_length(body)} characters; "
                                f"GitHub accepts {MAX_COMMENT_CHARS}")

    api = _Api(api_url, token, repo, pr, timeout=timeout, max_attempts=max_attempts,
               max_wait=max_wait, sleep=sleep)
    mine: dict[int, _Comment] = {}
    duplicates: list[_Comment] = []
    for item in api.list_comments():
        body = item.get("body") or ""
        parsed = parse_marker(body)
        if parsed is None or parsed[0] != env:
            continue  # another environment's preview, or not a preview at all
        c = _Comment(int(item["id"]), body, str(item.get("html_url", "")), parsed[1])
        if c.part in mine:  # two runs raced: keep the oldest, remove the other
            keep, extra = sorted((mine[c.part], c), key=lambda x: x.id)
            mine[c.part] = keep
            duplicates.append(extra)
        else:
            mine[c.part] = c

    created: list[int] = []
    updated: list[int] = []
    unchanged: list[int] = []
    urls: list[str] = []
    for n, body in enumerate(parts, start=1):
        old = mine.get(n)
        if old is None:
            item = api.request("POST", f"/repos/{repo}/issues/{pr}/comments", {"body": body})
            created.append(int(item["id"]))
        elif old.body.replace("\r\n", "\n").rstrip("\n") == body.rstrip("\n"):
            unchanged.append(old.id)
            urls.append(old.url)
            continue
        else:
            item = api.request("PATCH", f"/repos/{repo}/issues/comments/{old.id}", {"body": body})
            updated.append(old.id)
        urls.append(str(item.get("html_url", "")))
    deleted: list[int] = []
    for c in sorted([*duplicates, *(c for n, c in mine.items() if n > len(parts))], key=lambda c: c.id):
        api.request("DELETE", f"/repos/{repo}/issues/comments/{c.id}")
        deleted.append(c.id)
    return PostResult(tuple(created), tuple(updated), tuple(unchanged), tuple(deleted), tuple(urls))


@dataclass(frozen=True)
class IssueResult:
    """What happened to the environment's sticky issue: created, updated, unchanged, closed or none."""

    action: str
    number: int | None = None
    url: str = ""

    def summary(self) -> str:
        return self.action if self.number is None else f"#{self.number} {self.action}"


def sync_issue(body: str, *, repo: str, env: str, resolved: bool, kind: str = "drift", title: str | None = None,
               token: str | None = None, api_url: str | None = None, timeout: float = 30.0,
               max_attempts: int = 4, max_wait: float = 60.0,
               sleep: Callable[[float], None] = time.sleep) -> IssueResult:
    """Open, update or close the one issue of `env` whose body starts with its `kind` marker (the
    same exact-marker rule as the PR comment: `dev` never matches `dev-tokyo`, humans' issues are
    never touched). `resolved`: close it (with `body` as a last comment), or do nothing if none is open."""
    token = token if token is not None else os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise InputRejected("no GitHub token: set GITHUB_TOKEN",
                            hint="in a workflow: env GITHUB_TOKEN: ${{ github.token }} with issues: write")
    api_url = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not _REPO_RE.match(repo):
        raise InputRejected(f"--repo must be OWNER/NAME, not {repo!r}")
    if parse_kind_marker(body) != (kind, env, 1):
        raise InputRejected(f"the issue body does not start with the {kind} marker of env {env}",
                            hint=f"post only what `orchestrate {kind} --format markdown` wrote")
    if comment_length(body) > MAX_COMMENT_CHARS:
        raise InputRejected(f"the issue body has {comment_length(body)} characters; GitHub accepts {MAX_COMMENT_CHARS}")
    api = _Api(api_url, token, repo, 0, timeout=timeout, max_attempts=max_attempts, max_wait=max_wait, sleep=sleep)
    ours = sorted((item for item in api.list_pages(f"/repos/{repo}/issues?state=open&per_page={PER_PAGE}")
                   if "pull_request" not in item and parse_kind_marker(item.get("body") or "") == (kind, env, 1)),
                  key=lambda item: int(item["number"]))
    found = ours[0] if ours else None
    if resolved:
        if found is None:
            return IssueResult("none")
        number = int(found["number"])
        api.request("POST", f"/repos/{repo}/issues/{number}/comments", {"body": body})
        api.request("PATCH", f"/repos/{repo}/issues/{number}", {"state": "closed", "state_reason": "completed"})
        return IssueResult("closed", number, str(found.get("html_url", "")))
    if found is None:
        item = api.request("POST", f"/repos/{repo}/issues",
                           {"title": title or f"{kind.capitalize()} in {env}", "body": body})
        return IssueResult("created", int(item.get("number", 0)), str(item.get("html_url", "")))
    number = int(found["number"])
    if (found.get("body") or "").replace("\r\n", "\n").rstrip("\n") == body.rstrip("\n"):
        return IssueResult("unchanged", number, str(found.get("html_url", "")))
    item = api.request("PATCH", f"/repos/{repo}/issues/{number}", {"body": body})
    return IssueResult("updated", number, str(item.get("html_url", found.get("html_url", ""))))


class _Api:
    def __init__(self, api_url: str, token: str, repo: str, pr: int, *, timeout: float,
                 max_attempts: int, max_wait: float, sleep: Callable[[float], None]) -> None:
        self.base = api_url
        self.origin = _origin(api_url)
        self._token = token
        self.repo = repo
        self.pr = pr
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.max_wait = max_wait
        self.sleep = sleep
        self._opener = urllib.request.build_opener(_SameOriginRedirects(self.origin))

    def __repr__(self) -> str:  # never show the token
        return f"_Api({self.base!r}, repo={self.repo!r}, pr={self.pr})"

    def list_comments(self) -> list[dict[str, Any]]:
        return self.list_pages(f"/repos/{self.repo}/issues/{self.pr}/comments?per_page={PER_PAGE}")

    def list_pages(self, path: str) -> list[dict[str, Any]]:
        """Every item of a paginated listing (bounded by MAX_PAGES)."""
        url: str | None = self.base + path
        out: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return out
            page, headers = self._send("GET", url, None)
            if not isinstance(page, list):
                raise OperationFailed(f"GitHub returned an unexpected answer listing {path.split('?')[0]}")
            out.extend(page)
            url = _next_link(headers.get("Link", ""))
            if url is not None and _origin(url) != self.origin:
                # the token is only ever sent to the configured API
                raise OperationFailed(f"GitHub pagination pointed outside {self.origin}; refusing to follow")
        raise OperationFailed(f"{path.split('?')[0]} has more than {MAX_PAGES * PER_PAGE} items; stopped")

    def request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data, _ = self._send(method, self.base + path, payload)
        return data if isinstance(data, dict) else {}

    def _send(self, method: str, url: str,
              payload: Mapping[str, Any] | None) -> tuple[Any, Mapping[str, str]]:
        body = json.dumps(payload).encode("utf-8") if payload is not None else None
        what = f"{method} {_path_of(url)}"
        for attempt in range(1, self.max_attempts + 1):
            req = urllib.request.Request(url, data=body, method=method, headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self._token}",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "orchestrate-preview",
                **({"Content-Type": "application/json"} if body is not None else {}),
            })
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                    headers = {k: v for k, v in resp.headers.items()}
                    return (json.loads(raw) if raw.strip() else None), headers
            except urllib.error.HTTPError as exc:
                status = exc.code
                headers = {k: v for k, v in (exc.headers or {}).items()}
                detail = _message_of(exc)
                exc.close()
                rate_limited = _rate_limited(status, headers, detail)
                wait = self._retry_wait(status, headers, rate_limited, attempt)
                if wait is None:
                    message = self._explain(what, status, detail, rate_limited, attempt)
                    raise OperationFailed(message) from None
                self.sleep(wait)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                if attempt >= self.max_attempts:
                    raise OperationFailed(self._clean(
                        f"cannot reach GitHub at {self.origin} ({what}): {reason}")) from None
                self.sleep(min(self.max_wait, 2.0 ** (attempt - 1)))
        raise OperationFailed(f"{what}: gave up after {self.max_attempts} attempts")  # pragma: no cover

    def _retry_wait(self, status: int, headers: Mapping[str, str], rate_limited: bool,
                    attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when the answer is final."""
        if attempt >= self.max_attempts:
            return None
        lowered = {k.lower(): v for k, v in headers.items()}
        if not (rate_limited or status >= 500):
            return None
        wait = _retry_after(lowered.get("retry-after"))
        if wait is None and lowered.get("x-ratelimit-remaining") == "0":
            try:
                wait = max(0.0, float(lowered.get("x-ratelimit-reset", "")) - time.time())
            except ValueError:
                wait = None
        if wait is None:
            wait = 60.0 if rate_limited else 2.0 ** (attempt - 1)
        if wait > self.max_wait:
            return None if rate_limited else self.max_wait
        return wait

    def _explain(self, what: str, status: int, detail: str, rate_limited: bool, attempt: int) -> str:
        said = f": {detail}" if detail else ""
        where = f"{self.repo}#{self.pr}"
        tries = f" (after {attempt} attempts)" if attempt > 1 else ""
        if rate_limited:
            text = (f"GitHub rate limit hit (HTTP {status}) on {what}{said}{tries}; "
                    "wait for the limit to reset and re-run")
        elif status == 401:
            text = (f"GitHub rejected the token (HTTP 401) on {what}{said}; check that GITHUB_TOKEN is "
                    "set to a valid, unexpired token")
        elif status == 403:
            text = (f"GitHub refused {what} (HTTP 403){said}; check that the token may write comments on "
                    f"{where} (workflow `permissions: pull-requests: write`; forks get a read-only token)")
        elif status == 404:
            text = (f"GitHub found nothing at {what} (HTTP 404){said}; check --repo {self.repo} and "
                    f"--pr {self.pr}, GITHUB_API_URL ({self.base}), and that the token can see the "
                    "repository")
        elif status == 422:
            text = f"GitHub rejected the comment (HTTP 422){said}"
        else:
            text = f"GitHub answered HTTP {status} to {what}{said}{tries}"
        return self._clean(text)

    def _clean(self, text: str) -> str:
        return " ".join(scrub(text, (self._token,)).split())


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects (renamed repositories) only within the API's origin: the token stays there."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if _origin(newurl) != self.origin:
            raise OperationFailed(f"GitHub redirected {req.get_method()} {_path_of(req.full_url)} "
                                  f"outside {self.origin}; refusing to follow")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _rate_limited(status: int, headers: Mapping[str, str], detail: str) -> bool:
    lowered = {k.lower(): v for k, v in headers.items()}
    return status == 429 or (status == 403 and (
        "retry-after" in lowered or lowered.get("x-ratelimit-remaining") == "0"
        or "rate limit" in detail.lower()))


def _message_of(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(4096)
        data = json.loads(raw)
        message = str(data.get("message", "")) if isinstance(data, dict) else ""
    except Exception:  # noqa: BLE001 - the body is a courtesy; the status is what matters
        message = ""
    return message[:300]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _next_link(header: str) -> str | None:
    for piece in header.split(","):
        m = _LINK_NEXT_RE.search(piece)
        if m:
            return m.group(1)
    return None


def check_api_url(url: str) -> str:
    """The API URL the token is sent to: https, or http only to a loopback address (a local stub);
    anything else would carry the token in clear text (exit 2)."""
    import ipaddress

    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.scheme == "https" and host:
        return url
    if p.scheme == "http" and host:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
        raise InputRejected(f"GITHUB_API_URL {url[:80]!r} is plain http: the token would travel in clear text",
                            hint="use https (http is accepted for loopback addresses only)")
    raise InputRejected(f"GITHUB_API_URL {url[:80]!r} is not an https URL")


def _origin(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


def _path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path
