"""An environment preview as a pull-request comment (markdown, in parts), as text, or as JSON.

Markdown is what reviewers see. Every part starts with the hidden marker of
`orchestrator.preview.comment` (environment and part number, matched exactly), so one
environment's comment never overwrites another's. Part 1 holds the summary: environment, commit, a
table of counts per stack, a warning per replace/delete of anything protected or stateful, failed
stacks, and the topology before/after when regions or routing change. Then one collapsed
`<details>` per stack lists the changed resources (unchanged ones are only counted).

Splitting (GitHub stops a comment at 65,536 UTF-16 units, `comment.MAX_COMMENT_CHARS`): the comment
is laid out in atomic blocks (the summary, the topology diagrams, each stack). A stack goes into the
current part when it fits, else it starts the next part; a stack too big for any part is split
between two resource rows, its `<details>` closed at the end of one part and reopened "(continued)"
in the next. Code blocks, `<pre>` and `<details>` are never cut. With `max_parts`, parts beyond it
are dropped and the last kept part says how many stacks and resource changes were left out (room
for that line is kept in every part). Everything rendered passes through `orchestrator.scrub` first.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import InputRejected
from orchestrator.preview.comment import MAX_COMMENT_CHARS, comment_length, marker
from orchestrator.preview.model import (
    CHANGING_OPS,
    EnvironmentPreview,
    Op,
    Placeholder,
    PlaceholderReason,
    ResourceChange,
    StackPreview,
)
from orchestrator.scrub import Scrubber

FORMATS = ("markdown", "text", "json")

MAX_WARNINGS = 25  # warning lines at the top; the rest are counted
_MAX_NAME = 160
_MAX_PATH = 100
_MAX_PATHS = 15
_MAX_VALUE = 300
_MAX_ERROR = 6000

_COLUMNS = (  # summary table column -> the ops it counts
    ("create", (Op.CREATE, Op.IMPORT)),
    ("update", (Op.UPDATE,)),
    ("replace", (Op.REPLACE,)),
    ("delete", (Op.DELETE, Op.DISCARD)),
    ("unchanged", (Op.SAME, Op.READ, Op.REFRESH)),
)
_OP_LABEL = {
    Op.CREATE: "🟢 create", Op.UPDATE: "🟡 update", Op.REPLACE: "🔴 replace", Op.DELETE: "🔴 delete",
    Op.IMPORT: "🔵 import", Op.DISCARD: "⚪ discard",
}
_OP_SIGN = {Op.CREATE: "+", Op.UPDATE: "~", Op.REPLACE: "+-", Op.DELETE: "-", Op.IMPORT: "=",
            Op.DISCARD: "-"}
PROTECTED_FLAG = "🔒"
STATEFUL_FLAG = "💾"


# -- entry points ----------------------------------------------------------------------------------

def render(preview: EnvironmentPreview, fmt: str, max_parts: int | None = None,
           max_chars: int = MAX_COMMENT_CHARS) -> list[str]:
    """What `orchestrate preview --format F` writes: markdown parts, or one text / JSON document."""
    if fmt == "markdown":
        return render_markdown(preview, max_chars=max_chars, max_parts=max_parts)
    if fmt == "text":
        return [render_text(preview)]
    if fmt == "json":
        return [json.dumps(render_json(preview), indent=2, ensure_ascii=False) + "\n"]
    raise InputRejected(f"unknown preview format {fmt!r} (choose from {', '.join(FORMATS)})")


def render_markdown(preview: EnvironmentPreview, max_chars: int = MAX_COMMENT_CHARS,
                    max_parts: int | None = None) -> list[str]:
    if max_parts is not None and max_parts < 1:
        raise InputRejected(f"max_parts must be at least 1, not {max_parts}")
    s = Scrubber()
    top = [_md_summary(preview, s), *_md_warnings(preview, s), s(_md_topology(preview))]
    top = [b for b in top if b]
    stacks = [_md_stack(st, s) for st in preview.stacks]
    return _Layout(preview.env, max_chars).run(top, stacks, max_parts)


def render_text(preview: EnvironmentPreview) -> str:
    s = Scrubber()
    at = f" @ {_short_sha(preview.commit)}" if preview.commit else ""
    out = [f"orchestrate preview: env {preview.env}{at}"]
    width = max([len("STACK"), len("TOTAL")] + [len(st.stack) + 9 * bool(st.error) for st in preview.stacks])
    heads = [c.upper() for c, _ in _COLUMNS]
    out.append("  ".join([f"{'STACK':<{width}}", *(f"{h:>9}" for h in heads)]))
    for st in preview.stacks:
        name = st.stack + (" (failed)" if st.error else "")
        out.append("  ".join([f"{name:<{width}}", *(f"{st.count(*ops):>9}" for _, ops in _COLUMNS)]))
    totals = _totals(preview)
    out.append("  ".join([f"{'TOTAL':<{width}}", *(f"{totals[c]:>9}" for c, _ in _COLUMNS)]))
    for st, ch in preview.risky():
        out.append(f"WARNING: {st.stack}: {ch.op.value} {ch.type} {s(ch.name)} ({_risk_words(ch)})")
    for st in preview.failed:
        out.append(f"FAILED: {st.stack}: preview failed (details below)")
    if preview.topology_changed:
        out.append(f"TOPOLOGY: {_topology_sentence(preview)}")
    for st in preview.stacks:
        out.append("")
        out.append(f"{st.stack} ({st.kind} {st.region}): {_stack_sentence(st)}")
        for p in st.placeholders:
            out.append(f"  placeholder: {s(p.describe())}")
        for ch in st.changes:
            flags = "".join(f" [{w}]" for w in _risk_flags(ch))
            line = f"  {_OP_SIGN.get(ch.op, '?'):<2} {ch.op.value:<8} {ch.type}  {s(ch.name)}{flags}"
            props = _paths(ch)
            if props:
                line += "  [" + ", ".join(s(p) + note for p, note in props) + "]"
            out.append(line)
            for v in ch.values:
                out.append(f"       {v.path}: {_clip(s(v.old or '-'), _MAX_VALUE)} -> "
                           f"{_clip(s(v.new or '-'), _MAX_VALUE)}")
        if st.error:
            out.append("  error: " + _clip(s(st.error), _MAX_ERROR).replace("\n", "\n         "))
    return s("\n".join(out)) + "\n"


def render_json(preview: EnvironmentPreview) -> dict[str, Any]:
    s = Scrubber()
    doc = {
        "env": preview.env,
        "commit": preview.commit,
        "backend": preview.backend,
        "totals": _totals(preview),
        "warnings": [
            {"stack": st.stack, "urn": ch.urn, "type": ch.type, "name": ch.name, "op": ch.op.value,
             "protected": ch.protected, "stateful": ch.stateful}
            for st, ch in preview.risky()
        ],
        "failed": [st.stack for st in preview.failed],
        "topology": {
            "changed": preview.topology_changed,
            "before": _topology_doc(preview.topology_before),
            "after": _topology_doc(preview.topology_after),
        },
        "stacks": [
            {
                "stack": st.stack,
                "kind": st.kind,
                "region": st.region,
                "counts": {op.value: n for op, n in sorted(st.counts.items(), key=lambda kv: kv[0].value)},
                "changes": [
                    {"urn": ch.urn, "type": ch.type, "name": ch.name, "op": ch.op.value,
                     "diffs": list(ch.diffs), "replace_keys": list(ch.replace_keys),
                     "protected": ch.protected, "stateful": ch.stateful,
                     "values": [{"path": v.path, "old": v.old, "new": v.new} for v in ch.values]}
                    for ch in st.changes
                ],
                "placeholders": [
                    {"key": p.key, "upstream": p.upstream, "output": p.output,
                     "reason": p.reason.value, "message": p.describe()}
                    for p in st.placeholders
                ],
                "error": st.error,
            }
            for st in preview.stacks
        ],
    }
    data = s.data(doc)
    assert isinstance(data, dict)
    return data


# -- markdown blocks -------------------------------------------------------------------------------

@dataclass
class _Block:
    """One stack's `<details>`: opened, rows, closed; reopened '(continued)' when split."""

    open: str
    reopen: str
    rows: list[str] = field(default_factory=list)
    close: str = "\n</details>\n\n"

    def __post_init__(self) -> None:
        self.row_units = [comment_length(r) for r in self.rows]
        self.open_units, self.reopen_units, self.close_units = (
            comment_length(self.open), comment_length(self.reopen), comment_length(self.close))
        self.size = self.open_units + sum(self.row_units) + self.close_units


def _md_summary(p: EnvironmentPreview, s: Scrubber) -> str:
    totals = _totals(p)
    lines = [f"### orchestrate preview: {_code(p.env)}", ""]
    facts = []
    if p.commit:
        facts.append(f"commit {_code(_short_sha(p.commit))}")
    if p.backend:
        facts.append(f"backend {_code(s(p.backend))}")
    facts.append(f"{len(p.stacks)} stack{'s' if len(p.stacks) != 1 else ''}")
    changes = ", ".join(f"**{totals[c]}** to {c}" for c, _ in _COLUMNS[:4])
    facts.append(f"{changes}, {totals['unchanged']} unchanged")
    lines += [" · ".join(facts), ""]
    lines.append("| stack | create | update | replace | delete | unchanged |")
    lines.append("|:--|--:|--:|--:|--:|--:|")
    for st in p.stacks:
        label = _code(st.stack) + (" ❌ preview failed" if st.error else "")
        if st.placeholders:
            label += " ⏳ placeholders"
        lines.append("| " + " | ".join([label, *(str(st.count(*ops)) for _, ops in _COLUMNS)]) + " |")
    lines.append("| **total** | " + " | ".join(f"**{totals[c]}**" for c, _ in _COLUMNS) + " |")
    lines.append("")
    for st in p.failed:
        lines.append(f"❌ {_code(st.stack)}: the preview failed; the error is in its section below.  ")
    if p.failed:
        lines.append("")
    return s("\n".join(lines) + "\n")


def _md_warnings(p: EnvironmentPreview, s: Scrubber) -> list[str]:
    """The warning lines, each its own block (a part may end between two of them), then a legend."""
    risky = p.risky()
    if not risky:
        return []
    lines = []
    for st, ch in risky[:MAX_WARNINGS]:
        forced = ""
        if ch.replace_keys:
            forced = " forced by " + ", ".join(_code(s(k), _MAX_PATH) for k in ch.replace_keys[:5])
        lines.append(f"⚠️ {_code(st.stack)}: **{ch.op.value}** {_code(ch.type)} {_code(s(ch.name))}"
                     f" ({_risk_words(ch)}){forced}  \n")
    if len(risky) > MAX_WARNINGS:
        lines.append(f"⚠️ … and {len(risky) - MAX_WARNINGS} more replaces or deletes of protected or "
                     "stateful resources: see the stacks below.  \n")
    lines.append(f"\n{PROTECTED_FLAG} protected (`up` refuses to replace or delete it until unprotected) · "
                 f"{STATEFUL_FLAG} stateful (holds data, device identity or live DNS)\n\n")
    return [s(line) for line in lines]


def _md_topology(p: EnvironmentPreview) -> str:
    if not p.topology_changed:
        return ""
    from orchestrator.stacks.graph import render_mermaid  # the same picture `orchestrate graph` draws

    lines = ["#### Topology change", "", _topology_sentence(p), ""]
    for label, topo in (("Before", p.topology_before), ("After", p.topology_after)):
        lines.append(f"**{label}**")
        lines.append("")
        if topo is None:
            lines.append("_(no topology)_")
        else:
            lines += ["```mermaid", render_mermaid(topo).rstrip("\n"), "```"]
        lines.append("")
    return "\n".join(lines) + "\n"


def _md_stack(st: StackPreview, s: Scrubber) -> _Block:
    where = f"{st.kind} {st.region}" if st.region else st.kind
    status = " · ❌ preview failed" if st.error else ""
    summary = (f"<details><summary><code>{_esc(st.stack)}</code> · {_esc(where)} · "
               f"{_esc(_stack_sentence(st))}{status}</summary>\n\n")
    notes = []
    for p in st.placeholders:
        notes.append(f"- ⏳ {_md_placeholder(p, s)}")
    if notes:
        notes.append("")
    if st.error:
        notes += ["❌ **The preview of this stack failed:**", "",
                  f"<pre>{_esc(_clip(s(st.error), _MAX_ERROR))}</pre>", ""]
    header = "| operation | type | name | properties |\n|:--|:--|:--|:--|\n"
    rows = [_md_row(ch, s) for ch in st.changes]
    if not rows and not st.error:
        hidden = st.count(*CHANGING_OPS)
        notes.append("No resource changes." if not hidden else
                     f"{hidden} change(s) counted by the engine; no resource detail was reported.")
        notes.append("")
    body = "\n".join(notes) + ("\n" if notes else "")
    opened = s(summary + body) + (header if rows else "")
    reopened = (f"<details><summary><code>{_esc(st.stack)}</code> (continued)</summary>\n\n" + header)
    close = "\n</details>\n\n" if rows else "</details>\n\n"
    return _Block(open=opened, reopen=reopened, rows=rows, close=close)


def _md_placeholder(p: Placeholder, s: Scrubber) -> str:
    key = _code(s(p.key.split(":", 1)[-1]))
    if not p.upstream:
        return f"{key} holds a placeholder (upstream not deployed yet); `up` will use the real value"
    why = "not deployed yet" if p.reason is PlaceholderReason.NOT_DEPLOYED else "changes in this preview"
    return (f"{_inline(s(p.output or 'value'))} of {_code(s(p.upstream))} {why}: placeholder used for "
            f"{key}; `up` will use the real value")


def _md_row(ch: ResourceChange, s: Scrubber) -> str:
    flags = (f" {PROTECTED_FLAG}" if ch.protected else "") + (f" {STATEFUL_FLAG}" if ch.stateful else "")
    cells = [_OP_LABEL.get(ch.op, ch.op.value) + flags, _code(ch.type), _code(s(ch.name))]
    props = ", ".join(_code(s(p), _MAX_PATH) + note for p, note in _paths(ch))
    extra = len(ch.diffs) - _MAX_PATHS
    if extra > 0:
        props += f" and {extra} more"
    values = [f"{_code(v.path)}: {_code(s(v.old), _MAX_VALUE) if v.old is not None else '–'} → "
              f"{_code(s(v.new), _MAX_VALUE) if v.new is not None else '–'}" for v in ch.values]
    cells.append("<br>".join(x for x in [props, *values] if x))
    return s("| " + " | ".join(cells) + " |\n")


def _paths(ch: ResourceChange) -> list[tuple[str, str]]:
    """(property path, note) of the first changed paths; the note marks what forces a replace."""
    forced = set(ch.replace_keys)
    return [(p, " (forces replace)" if p in forced else "") for p in ch.diffs[:_MAX_PATHS]]


# -- layout ----------------------------------------------------------------------------------------

class _Layout:
    """Packs the summary blocks and stack blocks into parts of at most `max_chars` characters."""

    def __init__(self, env: str, max_chars: int) -> None:
        self.env = env
        self.max_chars = max_chars
        worst_head = marker(env, 9999) + "\n" + self._continued_title(9999, 9999)
        self.worst_trailer = comment_length(self._trailer(10**6, 10**9, 10**9, 10**6)) + 2
        self.budget = max_chars - comment_length(worst_head) - self.worst_trailer
        if self.budget < 1000:
            raise InputRejected(f"max_chars={max_chars} is too small for a preview comment part")
        self.parts: list[list[str]] = [[]]
        self.used = [0]
        # per part: (stack index, rows placed) for stacks that appear in it
        self.placed: list[list[tuple[int, int]]] = [[]]

    def _new_part(self) -> None:
        self.parts.append([])
        self.used.append(0)
        self.placed.append([])

    def _put(self, text: str, units: int | None = None) -> None:
        self.parts[-1].append(text)
        self.used[-1] += comment_length(text) if units is None else units

    def _room(self) -> int:
        return self.budget - self.used[-1]

    def run(self, top: list[str], stacks: list[_Block], max_parts: int | None) -> list[str]:
        for text in top:
            if comment_length(text) > self.budget:
                raise InputRejected(f"the preview summary alone exceeds {self.max_chars} characters")
            if comment_length(text) > self._room():
                self._new_part()
            self._put(text)
        for i, block in enumerate(stacks):
            self._place(i, block)
        return self._finish(stacks, max_parts)

    def _place(self, i: int, block: _Block) -> None:
        if block.size <= self._room():
            self._whole(i, block)
            return
        if block.size <= self.budget:
            self._new_part()
            self._whole(i, block)
            return
        # too big for any part: split between rows, closing and reopening its <details>
        if not block.rows:
            raise InputRejected(f"max_chars={self.max_chars} is too small for the section of one stack")
        close = block.close_units
        if max(block.open_units, block.reopen_units) + max(block.row_units) + close > self.budget:
            raise InputRejected(f"max_chars={self.max_chars} is too small for one resource row")
        if block.open_units + block.row_units[0] + close > self._room():
            self._new_part()
        self._put(block.open, block.open_units)
        placed = 0
        for row, units in zip(block.rows, block.row_units, strict=True):
            if units + close > self._room():
                self._put(block.close, close)
                self.placed[-1].append((i, placed))
                self._new_part()
                self._put(block.reopen, block.reopen_units)
                placed = 0
            self._put(row, units)
            placed += 1
        self._put(block.close, close)
        self.placed[-1].append((i, placed))

    def _whole(self, i: int, block: _Block) -> None:
        self.parts[-1].extend([block.open, *block.rows, block.close])
        self.used[-1] += block.size
        self.placed[-1].append((i, len(block.rows)))

    def _finish(self, stacks: list[_Block], max_parts: int | None) -> list[str]:
        parts = [p for p in self.parts if p] or [[]]
        placed = [pl for p, pl in zip(self.parts, self.placed, strict=True) if p] or [[]]
        trailer = ""
        if max_parts is not None and len(parts) > max_parts:
            shown_rows: dict[int, int] = {}
            for pl in placed[:max_parts]:
                for i, n in pl:
                    shown_rows[i] = shown_rows.get(i, 0) + n
            hidden_stacks = [i for i in range(len(stacks)) if i not in shown_rows]
            partial = [i for i in shown_rows if shown_rows[i] < len(stacks[i].rows)]
            hidden_rows = sum(len(b.rows) - shown_rows.get(i, 0) for i, b in enumerate(stacks))
            trailer = self._trailer(max_parts, len(hidden_stacks), hidden_rows, len(partial))
            parts = parts[:max_parts]
        total = len(parts)
        out = []
        for n, chunks in enumerate(parts, start=1):
            head = marker(self.env, n) + "\n"
            if n > 1:
                head += self._continued_title(n, total)
            elif total > 1:
                chunks = [chunks[0].replace("\n", f" (part 1 of {total})\n", 1), *chunks[1:]] \
                    if chunks else chunks
            body = head + "".join(chunks)
            if n == total and trailer:
                body = body.rstrip("\n") + "\n\n" + trailer
            out.append(body.rstrip("\n") + "\n")
        return out

    def _continued_title(self, n: int, total: int) -> str:
        return f"### orchestrate preview: {_code(self.env)} (part {n} of {total}, continued)\n\n"

    def _trailer(self, max_parts: int, stacks: int, rows: int, partial: int) -> str:
        what = []
        if stacks:
            what.append(f"{stacks} more stack{'s' if stacks != 1 else ''}")
        if rows:
            what.append(f"{rows} resource change{'s' if rows != 1 else ''}")
        detail = " and ".join(what) or "nothing"
        part_note = f" ({partial} stack{'s' if partial != 1 else ''} shown only in part)" if partial else ""
        return (f"> ⚠️ **Preview truncated** to {max_parts} comment{'s' if max_parts != 1 else ''}: "
                f"{detail} not shown{part_note}. The summary table counts everything; run "
                f"`orchestrate preview --env {self.env} --all` for the full list.\n")


# -- helpers ---------------------------------------------------------------------------------------

def _totals(p: EnvironmentPreview) -> dict[str, int]:
    return {c: sum(st.count(*ops) for st in p.stacks) for c, ops in _COLUMNS}


def _stack_sentence(st: StackPreview) -> str:
    bits = [f"{st.count(*ops)} to {c}" for c, ops in _COLUMNS[:4] if st.count(*ops)]
    bits.append(f"{st.unchanged} unchanged")
    return ", ".join(bits)


def _risk_flags(ch: ResourceChange) -> list[str]:
    return [w for w, on in (("protected", ch.protected), ("stateful", ch.stateful)) if on]


def _risk_words(ch: ResourceChange) -> str:
    words = ", ".join(_risk_flags(ch))
    if ch.protected:
        words += ": `up` will refuse until it is unprotected"
    return words


def _topology_doc(t: Any) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"domain": t.domain, "primary": t.primary, "secondaries": list(t.secondaries),
            "routing": t.routing.value}


def _topology_sentence(p: EnvironmentPreview) -> str:
    b, a = p.topology_before, p.topology_after
    if b is None and a is not None:
        return f"new environment: {', '.join(a.regions)} ({a.routing.value} routing, primary {a.primary})"
    if a is None and b is not None:
        return f"environment removed: was {', '.join(b.regions)} ({b.routing.value} routing)"
    if a is None or b is None:
        return "no topology"
    bits = []
    if b.regions != a.regions:
        bits.append(f"regions {', '.join(b.regions)} → {', '.join(a.regions)}")
    if b.primary != a.primary:
        bits.append(f"primary {b.primary} → {a.primary}")
    if b.routing != a.routing:
        bits.append(f"routing {b.routing.value} → {a.routing.value}")
    if b.domain != a.domain:
        bits.append(f"domain {b.domain} → {a.domain}")
    return "; ".join(bits)


def _short_sha(commit: str) -> str:
    return commit[:12] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "&#124;")


def _inline(text: str) -> str:
    """Free text on a markdown line: HTML and markdown specials neutralised."""
    text = " ".join(text.split())
    return _esc(text).replace("`", "&#96;")


def _code(text: str | None, limit: int = _MAX_NAME) -> str:
    """Inline code for a name, path or value: safe inside table cells and against markup."""
    value = _clip(" ".join((text or "").split()), limit)
    if not value:
        return "` `"
    if any(c in value for c in "`<>&"):
        return "<code>" + _esc(value) + "</code>"
    return "`" + value.replace("|", "\\|") + "`"
