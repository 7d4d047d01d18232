"""The readiness section of the preview comment: `comment post --readiness FILE` (issue 24)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from orchestrator.console import envelope
from orchestrator.errors import InputRejected
from orchestrator.preview import readiness as section
from orchestrator.preview.comment import MAX_COMMENT_CHARS, comment_length, marker, parse_marker, split_parts
from orchestrator.readiness import Finding, ReadinessReport, Status
from orchestrator.readiness.model import RegionReadiness
from tests.orchestrator.test_github import PR, REPO, TOKEN, FakeGitHub, gh  # noqa: F401 (fixture)
from tests.orchestrator.test_github_cli import comment_file, github_env  # noqa: F401 (fixture)

SECRET_KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def _f(rule_id: str, region: str, status: Status, evidence: str = "ok", fix: str = "") -> Finding:
    return Finding(rule_id, "g", "t", region, status, evidence, fix)


def report(*findings: Finding, env: str = "dev") -> ReadinessReport:
    regions = sorted({f.region for f in findings})
    return ReadinessReport(env, "eu-west-1", tuple(
        RegionReadiness(r, "secondary" if r != "eu-west-1" else "primary",
                        tuple(f for f in findings if f.region == r)) for r in regions))


def as_written(rep: ReadinessReport) -> str:
    """The document `orchestrate readiness --json` writes (its envelope), but unscrubbed: the
    section must scrub what it reads, whoever wrote the file."""
    return json.dumps(envelope("readiness", rep.to_json(), exit_code=0 if rep.ready else 1))


NOT_READY = report(
    _f("domain.configuration_enabled", "eu-west-1", Status.READY, "ENABLED"),
    _f("domain.configuration_enabled", "eu-central-1", Status.NOT_READY, "iot-domain is DISABLED",
       "orchestrate up --region eu-central-1"),
    _f("replication.dead_letters", "eu-central-1", Status.UNKNOWN, f"cannot read the queue as {SECRET_KEY_ID}"),
    _f("backups.age", "env", Status.READY, "3 h old"),
)
ALL_READY = report(_f("domain.configuration_enabled", "eu-west-1", Status.READY, "ENABLED"),
                   _f("domain.configuration_enabled", "eu-central-1", Status.READY, "ENABLED"),
                   _f("arc.routing_controls", "eu-central-1", Status.NOT_APPLICABLE, "dns mode"))


def load(text: str | bytes, env: str = "dev") -> section.ReadinessDoc:
    return section.load(text.encode() if isinstance(text, str) else text, env=env, path="r.json")


def test_a_not_ready_region_is_named_with_its_reason_and_fix_and_ready_rows_are_left_out() -> None:
    md = section.render_section(load(as_written(NOT_READY)))
    assert md.startswith("### Readiness\n")
    assert ("- ❌ **eu-central-1 is NOT READY** because `domain.configuration_enabled`: iot-domain is DISABLED; "
            "`replication.dead_letters`: cannot read the queue as [redacted]") in md
    assert ("| eu-central-1 | `domain.configuration_enabled` | ❌ NOT READY | iot-domain is DISABLED | "
            "`orchestrate up --region eu-central-1` |") in md
    assert "| eu-central-1 | `replication.dead_letters` | ❔ UNKNOWN |" in md
    assert "eu-west-1" not in md and "backups.age" not in md and "READY |" not in md.replace("NOT READY |", "")
    assert SECRET_KEY_ID not in md and "All regions READY" not in md


def test_all_ready_says_so_in_one_line() -> None:
    md = section.render_section(load(as_written(ALL_READY)))
    assert md == "### Readiness\n\n✅ **All regions READY** (eu-central-1, eu-west-1; primary eu-west-1).\n"


def test_evidence_cannot_inject_markup_or_mentions() -> None:
    rep = report(_f("registry.parity.things", "eu-central-1", Status.NOT_READY,
                    "<img src=x> | @org/team `x`", "run `rm` | <b>"))
    md = section.render_section(load(as_written(rep)))
    assert "<img" not in md and "@org" not in md and "<b>" not in md
    assert "&lt;img src=x&gt; &#124; &#64;org/team &#96;x&#96;" in md
    assert "<code>run &#96;rm&#96; &#124; &lt;b&gt;</code>" in md


def test_a_long_section_is_trimmed_with_a_note_within_its_bound() -> None:
    rows = [_f(f"registry.parity.r{i:04d}", "eu-central-1", Status.NOT_READY, "x" * 250, "orchestrate registry sync")
            for i in range(400)]
    doc = load(as_written(report(*rows)))
    md = section.render_section(doc)
    assert comment_length(md) <= section.MAX_SECTION_CHARS
    shown = md.count("| eu-central-1 | `registry.parity.")
    assert 0 < shown < 400
    assert f"> ⚠️ {400 - shown} of 400 rows not shown (comment length); every row is in the job summary" in md
    small = section.render_section(doc, max_chars=700)
    assert comment_length(small) <= 700 and "400 of 400 rows not shown" in small


def test_the_section_ends_the_last_part_or_takes_a_part_of_its_own_within_githubs_limit(project: Path) -> None:
    parts = split_parts(comment_file(project, "dev").read_text(), "dev")
    sec = section.render_section(load(as_written(NOT_READY)))
    joined = section.attach(parts, sec, env="dev")
    assert len(joined) == len(parts) and joined[-1].endswith(sec) and joined[-1].startswith(parts[-1].rstrip("\n"))
    # a last part with no room left: the section goes into part n+1, with its own marker
    full = [marker("dev", 1) + "\n" + "x" * (MAX_COMMENT_CHARS - 200) + "\n"]
    own = section.attach(full, sec, env="dev")
    assert len(own) == 2 and own[0] == full[0] and parse_marker(own[1]) == ("dev", 2)
    assert all(comment_length(p) <= MAX_COMMENT_CHARS for p in own)
    with pytest.raises(InputRejected, match="already has a readiness section"):
        section.attach(joined, sec, env="dev")


def _doc(**change: Any) -> str:
    doc = json.loads(as_written(NOT_READY))
    doc.update(change)
    return json.dumps(doc)


@pytest.mark.parametrize(("text", "why"), [
    ("", "not JSON"),
    ("[]", "not a JSON object"),
    ("{\"kind\": \"status\", \"version\": 1}", "kind is 'status'"),
    (_doc(version=2), "version"),
    (_doc(version=True), "version"),
    (_doc(env="prod"), "report of env prod, not dev"),
    (_doc(ready=True), "ready is true but 2 rows"),  # forged: "ready" over NOT READY rows
    (_doc(regions=[{"region": "eu-central-1", "status": "READY"}, {"region": "eu-west-1", "status": "READY"},
                   {"region": "env", "status": "READY"}]), "region eu-central-1 says READY"),
    (_doc(rules=[{"rule": "x", "region": "eu-central-1", "status": "FINE", "evidence": "", "fix": None}]),
     "rule row 1 is malformed"),
    (_doc(rules=[{"rule": "x", "region": "us-east-1", "status": "READY", "evidence": "", "fix": None}]),
     "not in regions"),
    (json.dumps({"kind": "readiness", "version": 1, "ok": True, "error": None}), "no rules and no error"),
])
def test_a_malformed_or_forged_readiness_file_is_refused(text: str, why: str) -> None:
    with pytest.raises(InputRejected, match=why.replace("(", r"\(")):
        load(text)


def test_an_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(InputRejected, match="bytes"):
        load(b" " * (section.MAX_FILE_BYTES + 1))


def test_a_run_that_failed_before_any_rule_is_shown_as_not_evaluated() -> None:
    failed = json.dumps(envelope("readiness", None, exit_code=2, message=f"no credentials for {SECRET_KEY_ID}"))
    md = section.render_section(load(failed))
    assert "**Readiness was not evaluated**: no credentials for [redacted]" in md and SECRET_KEY_ID not in md


def test_post_with_readiness_adds_the_section(run: Callable[..., Result], project: Path,
                                              github_env: FakeGitHub) -> None:  # noqa: F811
    path = comment_file(project, "dev")
    ready_file = project / "readiness.json"
    ready_file.write_text(as_written(NOT_READY))
    result = run("comment", "post", "--file", str(path), "--readiness", str(ready_file),
                 "--repo", REPO, "--pr", str(PR), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["readiness"] == {"ready": False, "evaluated": True,
                                                      "not_ready": ["eu-central-1"]}
    (comment,) = github_env.comments
    assert comment["body"].startswith(marker("dev", 1))
    assert "**eu-central-1 is NOT READY** because" in comment["body"] and SECRET_KEY_ID not in comment["body"]
    ready_file.write_text(as_written(ALL_READY))
    again = run("comment", "post", "--file", str(path), "--readiness", str(ready_file), "--repo", REPO, "--pr", str(PR))
    assert again.exit_code == 0 and "1 updated" in again.stdout
    (comment,) = github_env.comments
    assert "All regions READY" in comment["body"] and "NOT READY" not in comment["body"]


def test_post_with_a_bad_readiness_file_exits_2_in_one_line_and_posts_nothing(
        run: Callable[..., Result], project: Path, github_env: FakeGitHub) -> None:  # noqa: F811
    path = comment_file(project, "dev")
    bad = project / "readiness.json"
    bad.write_text(_doc(ready=True))
    result = run("comment", "post", "--file", str(path), "--readiness", str(bad), "--repo", REPO, "--pr", str(PR))
    assert result.exit_code == 2
    first = result.stderr.strip().splitlines()[0]
    assert "not a readiness report: ready is true but 2 rows are NOT READY or UNKNOWN" in first
    assert "Traceback" not in result.stderr and github_env.comments == []
    missing = run("comment", "post", "--file", str(path), "--readiness", str(project / "nope.json"),
                  "--repo", REPO, "--pr", str(PR))
    assert missing.exit_code == 2 and "cannot read the readiness file" in missing.stderr
    assert github_env.comments == []
