"""`orchestrate drift` through the real engine: a refresh preview against the stand-in provider.

The stand-in records what "AWS" holds for every resource it creates (FAKE_AWS_STATE_DIR); a
refresh reads those records. Changing one behind Pulumi's back is drift: `drift` must name the
resource and property and exit 1, without changing the state; so is deleting one (the resource is
named as gone). An untouched stack must show none.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.helpers import OrchestrateProject, dev_topology

STACK = "dev-region-eu-west-1"


def _record_of(project: OrchestrateProject, type_token: str) -> Path:
    safe = type_token.replace(":", "_").replace("/", "_")
    found = sorted((project.account / "resources").glob(f"{safe}_*.json"))
    assert len(found) == 1, [p.name for p in (project.account / "resources").iterdir()]
    return found[0]


def test_drift_finds_a_change_made_behind_pulumis_back(make_project) -> None:
    project: OrchestrateProject = make_project(dev_topology())
    assert project.json("up", "--yes", "--region", "eu-west-1")["ok"] is True

    clean = project.run("drift", "--all", "--json")  # exit 0 asserted: no false drift after an up
    report = json.loads(clean.stdout)
    assert report["drifted"] is False, report
    assert set(report["stacks"]) == {STACK, "dev-dns"}
    before = project.export(STACK)

    stream = _record_of(project, "aws:kinesis/stream:Stream")
    held = json.loads(stream.read_text())
    assert held["retentionPeriod"] == 24
    held["retentionPeriod"] = 168  # changed in the console
    stream.write_text(json.dumps(held))

    proc = project.run("drift", "--all", "--json", expect=1)
    report = json.loads(proc.stdout)
    assert report["drifted"] is True
    (diff,) = report["stacks"][STACK]["differences"]
    assert diff["type"] == "aws:kinesis/stream:Stream" and diff["property"] == "retentionPeriod"
    assert (diff["expected"], diff["actual"]) == ("24", "168")
    assert report["stacks"]["dev-dns"]["differences"] == []
    text = project.run("drift", "--region", "eu-west-1", expect=1).stdout
    assert "retentionPeriod: expected 24, actual 168" in text
    # a preview-only refresh: the state still holds what Pulumi applied
    assert project.export(STACK)["deployment"]["resources"] == before["deployment"]["resources"]

    # deleted in the console: the refresh reads "not found", drift names the resource as gone
    _record_of(project, "aws:kinesis/stream:Stream").unlink()
    report = json.loads(project.run("drift", "--region", "eu-west-1", "--json", expect=1).stdout)
    (gone,) = report["stacks"][STACK]["differences"]
    assert gone["type"] == "aws:kinesis/stream:Stream"
    assert (gone["expected"], gone["actual"]) == ("exists", "(deleted outside Pulumi)")
    assert project.export(STACK)["deployment"]["resources"] == before["deployment"]["resources"]
