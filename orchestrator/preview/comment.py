"""The sticky pull-request comment's protocol: markers, parts and GitHub's length limit.

A preview comment is one or more parts. Every part's first line is a hidden marker naming the
environment and the part number exactly (`marker` writes it, `parse_marker` is the only parser of
it), so one environment's comment never overwrites another's (`dev` is not `dev-tokyo`) and
comments of humans are never mistaken for ours. `orchestrate preview --format markdown` writes the
parts into one file (`join_parts`); `orchestrate comment post` reads them back (`split_parts`) and
`orchestrator.github` posts them, each within `MAX_COMMENT_CHARS` as `comment_length` measures it.

`orchestrator.preview.render` lays the markdown out in parts; this module knows nothing of what
is in them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrator.errors import InputRejected

MAX_COMMENT_CHARS = 65536  # GitHub's limit for an issue or pull-request comment body

_MARKER = "<!-- orchestrate-{kind} env={env} part={part} -->"
_MARKER_RE = re.compile(r"<!-- orchestrate-preview env=([a-z][a-z0-9-]{0,30}) part=([1-9][0-9]{0,3}) -->")
_KIND_RE = re.compile(r"<!-- orchestrate-(preview|drift) env=([a-z][a-z0-9-]{0,30}) part=([1-9][0-9]{0,3}) -->")
KINDS = ("preview", "drift")  # the PR's preview comment; the env's drift issue


def comment_length(text: str) -> int:
    """Length as measured against GitHub's limit, conservatively: in UTF-16 code units, which is
    never less than the number of characters (emoji such as 🟢 count twice)."""
    return len(text.encode("utf-16-le")) // 2


def marker(env: str, part: int, *, kind: str = "preview") -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown marker kind {kind!r}")
    return _MARKER.format(kind=kind, env=env, part=part)


def parse_kind_marker(body: str) -> tuple[str, str, int] | None:
    """(kind, env, part) when the first line of `body` is exactly a marker of any kind."""
    first = body.lstrip("\ufeff").split("\n", 1)[0].strip()
    m = _KIND_RE.fullmatch(first)
    return (m.group(1), m.group(2), int(m.group(3))) if m else None


def parse_marker(body: str) -> tuple[str, int] | None:
    """(env, part) when `body` is a part of a preview comment: its first line is exactly a marker.

    Matching is exact: the env in the marker is compared whole, never as a prefix.
    """
    first = body.lstrip("\ufeff").split("\n", 1)[0].strip()
    m = _MARKER_RE.fullmatch(first)
    return (m.group(1), int(m.group(2))) if m else None


def split_parts(text: str, env: str | None = None) -> list[str]:
    """The comment parts of a rendered markdown file (what `render_markdown` wrote, concatenated).

    Each part begins at its marker line; markers must number 1, 2, … and name one environment
    (`env`, when given). Raises InputRejected otherwise: a wrong file is never posted.
    """
    parts: list[list[str]] = []
    found_env: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        parsed = _MARKER_RE.fullmatch(line.strip())
        if parsed and int(parsed.group(2)) == len(parts) + 1 and found_env in (None, parsed.group(1)):
            found_env = parsed.group(1)
            parts.append([line.strip()])
        elif parts:
            parts[-1].append(line)
        elif line.strip():
            raise InputRejected("the comment file does not start with an orchestrate-preview marker",
                                hint="write it with `orchestrate preview --format markdown --output F`")
    if not parts:
        raise InputRejected("the comment file is empty")
    if env is not None and found_env != env:
        raise InputRejected(f"the comment file is the preview of env {found_env}, not {env}")
    return ["\n".join(p).rstrip("\n") + "\n" for p in parts]


def join_parts(parts: Sequence[str]) -> str:
    """The file form of a multi-part comment (`split_parts` reverses it)."""
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)
