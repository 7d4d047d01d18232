"""Previews of a whole environment: the model built from engine events, and its renderings.

`render(preview, fmt, max_parts)` is what `orchestrate preview` calls; see `model` and `render`.
Importing this package never imports pulumi.
"""

from orchestrator.preview.model import (
    STATEFUL_TYPES,
    Collector,
    EnvironmentPreview,
    Op,
    Placeholder,
    PlaceholderReason,
    ResourceChange,
    StackPreview,
    ValueChange,
    collect,
    placeholders_in_config,
)
from orchestrator.preview.render import (
    FORMATS,
    MAX_COMMENT_CHARS,
    comment_length,
    join_parts,
    marker,
    parse_marker,
    render,
    render_json,
    render_markdown,
    render_text,
    split_parts,
)

__all__ = [
    "FORMATS", "MAX_COMMENT_CHARS", "STATEFUL_TYPES", "Collector", "EnvironmentPreview", "Op",
    "Placeholder", "PlaceholderReason", "ResourceChange", "StackPreview", "ValueChange", "collect",
    "comment_length", "join_parts", "marker", "parse_marker", "placeholders_in_config", "render",
    "render_json", "render_markdown", "render_text", "split_parts",
]
