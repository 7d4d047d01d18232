"""The readiness section of the pull-request comment.

`orchestrate readiness --json` writes a document (kind `readiness`, version 1; docs/json.md);
`orchestrate comment post --readiness FILE` reads it back here as untrusted input (`load`), renders
the section (`render_section`) and puts it into the preview comment's parts (`attach`).

The section lists only the NOT READY and UNKNOWN rows, each with its evidence and its fix, or says
that every region is READY. It describes the deployed environment at the time of the run (the same
probe as `orchestrate readiness`), not a prediction of what the change will do. Everything in it
passes the secret scrubber and is escaped (evidence is text AWS returned); it is bounded by
`MAX_SECTION_CHARS`, and rows that do not fit are counted in a note. It goes at the end of the
last part when it fits there under GitHub's limit, else into a part of its own (its own marker).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import InputRejected
from orchestrator.preview.comment import MAX_COMMENT_CHARS, comment_length, marker, parse_marker
from orchestrator.scrub import Scrubber

MAX_FILE_BYTES = 4 * 1024 * 1024  # a real report is a few hundred KB at most (rules x regions)
MAX_ROWS = 20000
MAX_SECTION_CHARS = 12000  # a section a reviewer reads; the job summary has every row
_MAX_EVIDENCE = 300
_MAX_FIX = 200
_STATUSES = ("READY", "NOT READY", "UNKNOWN", "N/A")
_BAD = ("NOT READY", "UNKNOWN")
_RULE_RE = re.compile(r"[a-z][a-z0-9_.-]{0,79}")
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}|env")
_ENV_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
HEADING = "### Readiness"


@dataclass(frozen=True)
class Row:
    region: str
    rule: str
    status: str
    evidence: str
    fix: str


@dataclass(frozen=True)
class ReadinessDoc:
    env: str
    primary: str | None
    ready: bool
    regions: tuple[tuple[str, str], ...]  # (region, status)
    rows: tuple[Row, ...]  # the NOT READY and UNKNOWN rows only
    error: str | None  # the run failed before any rule was evaluated (no rows)


def _reject(path: str, why: str) -> InputRejected:
    return InputRejected(f"{path}: not a readiness report: {why}",
                         hint="write it with `orchestrate readiness --json > FILE`")


def load(data: bytes, *, env: str, path: str = "readiness file") -> ReadinessDoc:
    """Validate what `orchestrate readiness --json` wrote. Anything else raises InputRejected."""
    if len(data) > MAX_FILE_BYTES:
        raise _reject(path, f"{len(data)} bytes (at most {MAX_FILE_BYTES})")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _reject(path, "not JSON") from None
    if not isinstance(doc, dict):
        raise _reject(path, "not a JSON object")
    if doc.get("kind") != "readiness":
        raise _reject(path, f"kind is {str(doc.get('kind'))[:40]!r}")
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        raise _reject(path, f"version {str(doc.get('version'))[:20]!r} (this orchestrate reads 1)")
    doc_env = doc.get("env")
    error = doc.get("error")
    if "rules" not in doc:  # the run failed before evaluating (e.g. bad input, no credentials)
        if doc.get("ok") is not False or not isinstance(error, dict) or not isinstance(error.get("message"), str):
            raise _reject(path, "no rules and no error")
        if doc_env is not None and doc_env != env:
            raise _reject(path, f"it is the report of env {str(doc_env)[:40]}, not {env}")
        return ReadinessDoc(env, None, False, (), (), error["message"])
    if not isinstance(doc_env, str) or not _ENV_RE.fullmatch(doc_env):
        raise _reject(path, "no valid env")
    if doc_env != env:
        raise _reject(path, f"it is the report of env {doc_env}, not {env}")
    primary, ready, regions, rules = doc.get("primary"), doc.get("ready"), doc.get("regions"), doc.get("rules")
    if not isinstance(primary, str) or not _REGION_RE.fullmatch(primary):
        raise _reject(path, "no valid primary")
    if not isinstance(ready, bool) or not isinstance(regions, list) or not isinstance(rules, list):
        raise _reject(path, "ready, regions or rules missing")
    if len(rules) > MAX_ROWS or len(regions) > 100:
        raise _reject(path, f"{len(rules)} rules in {len(regions)} regions is more than a report holds")
    region_status: dict[str, str] = {}
    for r in regions:
        if not (isinstance(r, dict) and isinstance(r.get("region"), str) and _REGION_RE.fullmatch(r["region"])
                and r.get("status") in _STATUSES[:3]):
            raise _reject(path, "a region entry is malformed")
        region_status[r["region"]] = r["status"]
    rows: list[Row] = []
    worst: dict[str, str] = {}
    for f in rules:
        if not (isinstance(f, dict) and isinstance(f.get("rule"), str) and _RULE_RE.fullmatch(f["rule"])
                and isinstance(f.get("region"), str) and f.get("status") in _STATUSES
                and isinstance(f.get("evidence"), str) and (f.get("fix") is None or isinstance(f.get("fix"), str))):
            raise _reject(path, f"rule row {len(rows) + 1} is malformed")
        if f["region"] not in region_status:
            raise _reject(path, f"rule {f['rule']} names region {f['region'][:40]!r}, not in regions")
        if f["status"] in _BAD:
            rows.append(Row(f["region"], f["rule"], f["status"], f["evidence"], f.get("fix") or ""))
            if worst.get(f["region"]) != "NOT READY":
                worst[f["region"]] = f["status"]
    # the summary must agree with the rows: a forged "ready": true over NOT READY rows is refused
    if ready != (not rows):
        raise _reject(path, f"ready is {str(ready).lower()} but {len(rows)} rows are NOT READY or UNKNOWN")
    for region, status in region_status.items():
        if status != worst.get(region, "READY"):
            raise _reject(path, f"region {region} says {status} but its rows say {worst.get(region, 'READY')}")
    return ReadinessDoc(env, primary, ready, tuple(region_status.items()), tuple(rows), None)


def load_file(path: str, *, env: str) -> ReadinessDoc:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputRejected(f"{path}: cannot read the readiness file: {exc.strerror}") from None
    return load(data, env=env, path=path)


def render_section(doc: ReadinessDoc, *, max_chars: int = MAX_SECTION_CHARS,
                   scrubber: Scrubber | None = None) -> str:
    """The markdown section: a verdict line per region that is not ready, then its rows; rows that
    do not fit `max_chars` are left out and counted."""
    s = scrubber or Scrubber()
    cmd = f"orchestrate readiness --env {doc.env}"
    if doc.error is not None:
        return (f"{HEADING}\n\n❔ **Readiness was not evaluated**: {_inline(_clip(s(doc.error), 500))}. "
                f"Run `{cmd}` for the scorecard.\n")
    if doc.ready:
        return (f"{HEADING}\n\n✅ **All regions READY** "
                f"({', '.join(_inline(r) for r, _ in doc.regions)}; primary {_inline(doc.primary or '')}).\n")
    bad = [(r, st) for r, st in doc.regions if st != "READY"]
    head = [HEADING, ""]
    for region, status in bad:
        first = [row for row in doc.rows if row.region == region]
        first.sort(key=lambda row: row.status != "NOT READY")
        because = "; ".join(f"`{row.rule}`: {_inline(_clip(s(row.evidence), 120))}" for row in first[:3])
        more = f" (and {len(first) - 3} more)" if len(first) > 3 else ""
        head.append(f"- ❌ **{_inline(region)} is {status}** because {because}{more}")
    head += ["", "| region | rule | status | evidence | fix |", "|---|---|---|---|---|"]
    text = "\n".join(head) + "\n"
    worst_note = comment_length(_note(len(doc.rows), len(doc.rows), cmd))
    if comment_length(text) + worst_note > max_chars:
        # the verdict lines alone are too long: keep the heading and the note
        text = f"{HEADING}\n\n❌ **Not ready**: {', '.join(f'{_inline(r)} {st}' for r, st in bad)}.\n\n"
        if comment_length(text) + worst_note > max_chars:
            raise InputRejected(f"max_chars={max_chars} is too small for the readiness section")
        return text + _note(len(doc.rows), len(doc.rows), cmd)
    used = comment_length(text)
    shown = 0
    ordered = sorted(doc.rows, key=lambda row: (row.region, row.status != "NOT READY", row.rule))
    for row in ordered:
        icon = "❌" if row.status == "NOT READY" else "❔"
        fix = _code(_clip(s(row.fix), _MAX_FIX)) if row.fix else ""
        line = (f"| {_inline(row.region)} | `{row.rule}` | {icon} {row.status} | "
                f"{_inline(_clip(s(row.evidence), _MAX_EVIDENCE))} | {fix} |\n")
        units = comment_length(line)
        if used + units + worst_note > max_chars:
            break
        text += line
        used += units
        shown += 1
    if shown < len(ordered):
        text += "\n" + _note(len(ordered) - shown, len(ordered), cmd)
    return text


def _note(hidden: int, total: int, cmd: str) -> str:
    return (f"> ⚠️ {hidden} of {total} rows not shown (comment length); every row is in the job "
            f"summary and in `{cmd}`.\n")


def attach(parts: list[str], section: str, *, env: str, max_chars: int = MAX_COMMENT_CHARS) -> list[str]:
    """The preview parts with the readiness section at the end of the last part, or in a part of
    its own when the last part has no room for it. Parts must be what `split_parts` returned."""
    if not parts or parse_marker(parts[-1]) != (env, len(parts)):
        raise InputRejected("the readiness section needs the preview comment's parts")
    if any(HEADING + "\n" in p for p in parts):
        raise InputRejected("the comment file already has a readiness section")
    last = parts[-1].rstrip("\n") + "\n\n" + section
    if comment_length(last) <= max_chars:
        return [*parts[:-1], last]
    n = len(parts) + 1
    own = marker(env, n) + "\n" + section
    if comment_length(own) > max_chars:
        raise InputRejected("the readiness section does not fit a comment")
    return [*parts, own]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _inline(text: str) -> str:
    """Free text on a markdown line or in a table cell: HTML, pipes, backticks and mentions neutralised."""
    import html

    text = html.escape(" ".join(text.split()), quote=False)
    return text.replace("|", "&#124;").replace("`", "&#96;").replace("@", "&#64;")


def _code(text: str) -> str:
    value = " ".join(text.split())
    if any(c in value for c in "`<>&|@"):
        return "<code>" + _inline(value) + "</code>"
    return "`" + value + "`"


def summary(doc: ReadinessDoc) -> dict[str, Any]:
    """What `comment post --json` reports about the section."""
    return {"ready": doc.ready, "evaluated": doc.error is None,
            "not_ready": sorted({r.region for r in doc.rows})}
