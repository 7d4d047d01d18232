"""The sticky comment's protocol: exact markers, parts written to a file and read back, GitHub's limit."""

from __future__ import annotations

import pytest

from orchestrator.errors import InputRejected
from orchestrator.preview.comment import (
    MAX_COMMENT_CHARS,
    comment_length,
    join_parts,
    marker,
    parse_marker,
    split_parts,
)
from orchestrator.preview.render import render_markdown
from tests.orchestrator.test_preview_render import bulk_preview


def test_markers_match_exactly_never_by_prefix() -> None:
    dev = marker("dev", 1) + "\nbody"
    tokyo = marker("dev-tokyo", 1) + "\nbody"
    assert parse_marker(dev) == ("dev", 1)
    assert parse_marker(tokyo) == ("dev-tokyo", 1)
    assert parse_marker(tokyo)[0] != "dev"
    assert parse_marker(marker("dev", 12)) == ("dev", 12)


@pytest.mark.parametrize("body", [
    "<!-- orchestrate-preview env=dev part=1 --> trailing text",
    "<!-- orchestrate-preview env=dev-tokyo-extra part=1",
    "quoted:\n<!-- orchestrate-preview env=dev part=1 -->",  # not the first line
    "<!-- orchestrate-preview env=dev part=0 -->",
    "<!-- orchestrate-preview env=Dev part=1 -->",
    "<!-- orchestrate-preview env=dev -->",
    "<!-- pulumi-preview dev -->",
    "",
])
def test_anything_but_an_exact_marker_line_is_not_ours(body: str) -> None:
    assert parse_marker(body) is None


def test_marker_survives_crlf_from_the_api() -> None:
    assert parse_marker(marker("prod", 2) + "\r\nbody") == ("prod", 2)


def test_split_parts_reads_back_what_render_wrote() -> None:
    parts = render_markdown(bulk_preview("prod", stacks=2, per_stack=900))
    assert len(parts) > 1
    assert split_parts(join_parts(parts), "prod") == parts
    with pytest.raises(InputRejected, match="preview of env prod, not dev"):
        split_parts(join_parts(parts), "dev")
    with pytest.raises(InputRejected, match="does not start"):
        split_parts("hello\n" + join_parts(parts))
    with pytest.raises(InputRejected, match="empty"):
        split_parts("\n\n")


def test_comment_length_counts_utf16_units_as_github_does() -> None:
    assert MAX_COMMENT_CHARS == 65536
    assert comment_length("abc") == 3
    assert comment_length("🟢 ok") == 5  # an emoji outside the BMP is two units, not one character
    assert comment_length("é") == 1
