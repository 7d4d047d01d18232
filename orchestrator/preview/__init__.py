"""Previews of a whole environment: the pure model, its renderings, and the PR comment protocol.

`model` holds the frozen results (`orchestrator.engine.events` builds them from Pulumi engine
events); `render(preview, fmt, max_parts)` is what `orchestrate preview` calls; `comment` is the
sticky pull-request comment's protocol (markers, parts, GitHub's length limit) that
`orchestrator.github` and `orchestrate comment post` use. Importing this package never imports pulumi.
"""

from orchestrator.preview.comment import (
    MAX_COMMENT_CHARS,
    comment_length,
    join_parts,
    marker,
    parse_marker,
    split_parts,
)
from orchestrator.preview.model import (
    STATEFUL_TYPES,
    EnvironmentPreview,
    Op,
    Placeholder,
    PlaceholderReason,
    ResourceChange,
    StackPreview,
    ValueChange,
    placeholders_in_config,
)
from orchestrator.preview.render import (
    FORMATS,
    render,
    render_json,
    render_markdown,
    render_text,
)

__all__ = [
    "FORMATS", "MAX_COMMENT_CHARS", "STATEFUL_TYPES", "EnvironmentPreview", "Op", "Placeholder",
    "PlaceholderReason", "ResourceChange", "StackPreview", "ValueChange", "comment_length", "join_parts",
    "marker", "parse_marker", "placeholders_in_config", "render", "render_json", "render_markdown",
    "render_text", "split_parts",
]
