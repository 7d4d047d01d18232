"""The preview as reviewers see it: the PR comment (markdown, split into parts), text and JSON."""

from __future__ import annotations

import json
import re

import pytest

from orchestrator.engine.events import collect
from orchestrator.errors import InputRejected
from orchestrator.preview import (
    EnvironmentPreview,
    Op,
    Placeholder,
    PlaceholderReason,
    ResourceChange,
    StackPreview,
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
from orchestrator.topology import parse
from tests.orchestrator.test_preview_model import typical

LIMIT = 65536
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v\n-----END RSA PRIVATE KEY-----"
GH_TOKEN = "ghp_" + "A1b2C3d4" * 5


def topo(secondaries: tuple[str, ...] = (), routing: str = "single"):
    doc = {"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
           "secondaries": list(secondaries), "routing": routing,
           "residency": ["eu-west-1", "eu-central-1", "eu-north-1"]}
    return parse(doc, env="prod")


def region_preview(region: str = "eu-west-1", env: str = "prod", error: str | None = None) -> StackPreview:
    changes, counts, err = collect(typical().items)
    return StackPreview(f"{env}-region-{region}", "region", region, changes, counts, (), error or err)


def env_preview(**kw) -> EnvironmentPreview:
    dns = StackPreview("prod-dns", "dns", "eu-west-1", (), {Op.SAME: 6},
                       (Placeholder("iot-platform:targets", "prod-region-eu-central-1", "iotEndpoint",
                                    PlaceholderReason.NOT_DEPLOYED),))
    defaults = dict(env="prod", commit="0123456789abcdef0123456789abcdef01234567",
                    stacks=(region_preview(), dns), topology_before=topo(), topology_after=topo())
    defaults.update(kw)
    return EnvironmentPreview(**defaults)


def bulk_preview(env: str, stacks: int, per_stack: int, name_len: int = 24) -> EnvironmentPreview:
    out = []
    for s in range(stacks):
        changes = tuple(
            ResourceChange(
                urn=f"urn:pulumi:{env}-region-s{s}::iot-platform::aws:iot/thing:Thing::thing-{i:05d}",
                type="aws:iot/thing:Thing", name=f"thing-{i:05d}-" + "x" * name_len,
                op=(Op.CREATE, Op.UPDATE, Op.DELETE, Op.REPLACE)[i % 4],
                diffs=("attributes.serial", "tags.team") if i % 4 == 1 else (),
                stateful=True)
            for i in range(per_stack))
        out.append(StackPreview(f"{env}-region-s{s}", "region", "eu-west-1", changes,
                                {Op.CREATE: per_stack, Op.SAME: 3}))
    return EnvironmentPreview(env, "abc", tuple(out), topo(), topo())


def assert_well_formed(parts: list[str], env: str) -> None:
    assert [parse_marker(p) for p in parts] == [(env, n) for n in range(1, len(parts) + 1)]
    for p in parts:
        assert len(p) <= comment_length(p) <= LIMIT  # UTF-16 units: the stricter reading of the limit
        assert p.count("```") % 2 == 0, "a code fence is cut"
        assert p.count("<details>") == p.count("</details>"), "a <details> is cut"
        assert p.count("<pre>") == p.count("</pre>")
        # every <details> is closed before the next one opens
        depth = 0
        for tag in re.findall(r"</?details>", p):
            depth += 1 if tag == "<details>" else -1
            assert depth in (0, 1)


# -- what a reviewer sees -------------------------------------------------------------------------

def test_comment_starts_with_marker_then_environment_commit_and_summary_table() -> None:
    (body,) = render_markdown(env_preview())
    lines = body.splitlines()
    assert lines[0] == "<!-- orchestrate-preview env=prod part=1 -->"
    assert "`prod`" in lines[1] and "`0123456789ab`" in body
    table = body.index("| stack | create | update | replace | delete | unchanged |")
    assert table < body.index("<details>")  # the summary is at the top
    assert "| `prod-region-eu-west-1` | 1 | 2 | 1 | 1 | 2 |" in body
    assert "| `prod-dns` ⏳ placeholders | 0 | 0 | 0 | 0 | 6 |" in body
    assert "| **total** | **1** | **2** | **1** | **1** | **8** |" in body


def test_replace_or_delete_of_protected_or_stateful_resources_is_a_warning_at_the_top() -> None:
    (body,) = render_markdown(env_preview())
    top = body[: body.index("<details>")]
    warnings = [line for line in top.splitlines() if line.startswith("⚠️")]
    assert len(warnings) == 2
    assert "**replace** `aws:s3/bucket:Bucket` `lake` (protected, stateful" in warnings[0]
    assert "forced by `bucket`" in warnings[0]
    assert "**delete** `aws:kinesis/stream:Stream` `telemetry` (stateful)" in warnings[1]


def test_no_warning_when_nothing_risky_changes() -> None:
    sp = StackPreview("prod-dns", "dns", "eu-west-1",
                      (ResourceChange("u", "aws:iot/topicRule:TopicRule", "r", Op.REPLACE),), {Op.REPLACE: 1})
    (body,) = render_markdown(EnvironmentPreview("prod", "c", (sp,)))
    assert "⚠️" not in body


def test_each_stack_is_one_collapsed_section_listing_changed_resources_only() -> None:
    (body,) = render_markdown(env_preview())
    assert body.count("<details>") == 2 and "<details open" not in body
    section = body[body.index("<details><summary><code>prod-region-eu-west-1</code>"):]
    section = section[: section.index("</details>")]
    assert "| 🟢 create | `aws:iot/topicRule:TopicRule` | `to-kinesis` |" in section
    assert ("| 🟡 update 💾 | `aws:iot/thingType:ThingType` | `sensor` | "
            "`tags.team`, `properties.description` |") in section
    assert "| 🔴 replace 🔒 💾 | `aws:s3/bucket:Bucket` | `lake` | `bucket` (forces replace) |" in section
    assert "| 🔴 delete 💾 | `aws:kinesis/stream:Stream` | `telemetry` |" in section
    # unchanged resources are counted, not listed
    assert "devices" not in section and "pulumi:pulumi:Stack" not in section
    assert "2 unchanged" in section


def test_dns_changes_show_where_records_point() -> None:
    (body,) = render_markdown(env_preview())
    assert ("`records`: `[\"abc-ats.iot.eu-west-1.amazonaws.com\"]` → `[\"[secret]\"]`" in body)


def test_placeholders_are_stated_in_their_stack() -> None:
    (body,) = render_markdown(env_preview())
    section = body[body.index("<code>prod-dns</code>"):]
    assert ("iotEndpoint of `prod-region-eu-central-1` not deployed yet: placeholder used for `targets`; "
            "`up` will use the real value") in section
    would = Placeholder("iot-platform:targets", "prod-region-eu-west-1", "iotEndpoint",
                        PlaceholderReason.WOULD_CHANGE)
    dns = StackPreview("prod-dns", "dns", "eu-west-1", (), {Op.SAME: 1}, (would,))
    (body,) = render_markdown(EnvironmentPreview("prod", "c", (dns,)))
    assert "iotEndpoint of `prod-region-eu-west-1` changes in this preview" in body


def test_topology_diagrams_only_when_regions_or_routing_change() -> None:
    (same,) = render_markdown(env_preview())
    assert "mermaid" not in same
    (promoted,) = render_markdown(env_preview(topology_after=topo(("eu-central-1",), "failover")))
    assert promoted.count("```mermaid") == 2
    before, after = promoted.split("**After**")
    assert "prod_region_eu_central_1" not in before.split("**Before**")[1]
    assert "prod_region_eu_central_1" in after and "(failover)" in after
    assert "regions eu-west-1 → eu-west-1, eu-central-1; routing single → failover" in promoted


def test_failed_stack_is_flagged_in_the_summary_and_its_error_shown_escaped() -> None:
    failed = region_preview(error="provider error: <script>alert(1)</script> | AccessDenied")
    (body,) = render_markdown(env_preview(stacks=(failed,)))
    assert "| `prod-region-eu-west-1` ❌ preview failed |" in body
    assert "<pre>provider error: &lt;script&gt;alert(1)&lt;/script&gt; &#124; AccessDenied</pre>" in body
    assert "<script>" not in body


def test_secrets_never_appear_in_any_format(monkeypatch: pytest.MonkeyPatch) -> None:
    passphrase = "correct-horse-battery-staple"
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", passphrase)
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_" + "z9" * 18)
    leaky = ResourceChange("u", "aws:iot/thing:Thing", f"thing-{AWS_KEY}", Op.UPDATE,
                           diffs=(f"attributes.{passphrase}",))
    err = (f"failed: aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY {PEM} {GH_TOKEN} "
           f"passphrase {passphrase} token {'ghs_' + 'z9' * 18}")
    sp = StackPreview("prod-region-eu-west-1", "region", "eu-west-1", (leaky,), {Op.UPDATE: 1}, (), err)
    p = EnvironmentPreview("prod", "c", (sp,))
    for fmt in ("markdown", "text", "json"):
        out = "".join(render(p, fmt))
        for secret in (AWS_KEY, "wJalrXUtnFEMI", "MIIEowIBAAKCAQEA7v", GH_TOKEN, passphrase, "z9z9z9"):
            assert secret not in out, (fmt, secret)
        assert "[redacted]" in out


def test_names_cannot_forge_markers_or_break_out_of_tables() -> None:
    evil = ResourceChange("u", "aws:iot/thing:Thing",
                          "x |\n<!-- orchestrate-preview env=prod part=1 -->`</details>", Op.CREATE)
    sp = StackPreview("prod-region-eu-west-1", "region", "eu-west-1", (evil,), {Op.CREATE: 1})
    parts = render_markdown(EnvironmentPreview("prod", "c", (sp,)))
    assert len(parts) == 1
    assert_well_formed(parts, "prod")
    assert len(split_parts(join_parts(parts), "prod")) == 1
    row = next(line for line in parts[0].splitlines() if line.startswith("| 🟢 create"))
    assert row.count(" | ") == 3  # still four cells


# -- splitting -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_thousands_of_resources_split_into_parts_within_githubs_limit() -> None:
    p = bulk_preview("prod", stacks=4, per_stack=1500)
    parts = render_markdown(p)
    assert len(parts) > 1
    assert_well_formed(parts, "prod")
    assert len({p.splitlines()[0] for p in parts}) == len(parts)  # markers distinct
    assert "(part 1 of" in parts[0] and "continued" in parts[1]
    rows = sum(1 for part in parts for line in part.splitlines() if line.startswith("| 🟢") or
               line.startswith("| 🟡") or line.startswith("| 🔴"))
    assert rows == 6000  # nothing lost
    assert parts[0].count("| stack | create |") == 1 and all("| stack | create |" not in x for x in parts[1:])


def test_stacks_that_fit_are_never_split_across_parts() -> None:
    p = bulk_preview("prod", stacks=6, per_stack=200)  # each stack ~ 20k chars
    parts = render_markdown(p)
    assert_well_formed(parts, "prod")
    for part in parts:
        assert "(continued)" not in part
    for s in range(6):
        assert sum(f"<code>prod-region-s{s}</code>" in part for part in parts) == 1


def test_one_huge_stack_is_split_between_rows_and_reopened_as_continued() -> None:
    p = bulk_preview("prod", stacks=1, per_stack=3000)
    parts = render_markdown(p)
    assert len(parts) >= 3
    assert_well_formed(parts, "prod")
    for part in parts[1:]:
        assert "<details><summary><code>prod-region-s0</code> (continued)</summary>" in part
        # the table header is repeated so the continuation renders as a table
        assert "| operation | type | name | properties |" in part


def test_small_limit_still_yields_well_formed_parts() -> None:
    parts = render_markdown(bulk_preview("dev-tokyo", stacks=3, per_stack=50), max_chars=4000)
    assert len(parts) > 3
    assert_well_formed(parts, "dev-tokyo")
    assert all(comment_length(x) <= 4000 for x in parts)


@pytest.mark.slow
def test_max_parts_trims_the_rest_and_says_what_was_left_out() -> None:
    p = bulk_preview("prod", stacks=4, per_stack=1500)
    full = render_markdown(p)
    parts = render_markdown(p, max_parts=2)
    assert len(parts) == 2 and len(full) > 2
    assert_well_formed(parts, "prod")
    shown = sum(1 for part in parts for line in part.splitlines() if re.match(r"\| 🟢|\| 🟡|\| 🔴", line))
    m = re.search(r"Preview truncated\*\* to 2 comments: (?:(\d+) more stacks? and )?(\d+) resource changes? "
                  r"not shown", parts[-1])
    assert m, parts[-1][-400:]
    assert int(m.group(2)) == 6000 - shown
    hidden_stacks = int(m.group(1) or 0)
    visible = {s for s in range(4) if any(f"<code>prod-region-s{s}</code>" in x for x in parts)}
    assert hidden_stacks == 4 - len(visible)
    assert "orchestrate preview --env prod --all" in parts[-1]


def test_max_parts_is_not_mentioned_when_everything_fits() -> None:
    parts = render_markdown(env_preview(), max_parts=1)
    assert len(parts) == 1 and "truncated" not in parts[0]


def test_bad_limits_are_input_errors() -> None:
    with pytest.raises(InputRejected):
        render_markdown(env_preview(), max_parts=0)
    with pytest.raises(InputRejected):
        render_markdown(env_preview(), max_chars=500)


# -- text and JSON ---------------------------------------------------------------------------------

def test_text_rendering_for_terminals() -> None:
    text = render_text(env_preview(topology_after=topo(("eu-central-1",), "failover")))
    lines = text.splitlines()
    assert lines[0] == "orchestrate preview: env prod @ 0123456789ab"
    assert re.match(r"prod-region-eu-west-1\s+1\s+2\s+1\s+1\s+2$", lines[2])
    assert any(line.startswith("WARNING: prod-region-eu-west-1: replace aws:s3/bucket:Bucket lake")
               for line in lines)
    assert "TOPOLOGY: regions eu-west-1 → eu-west-1, eu-central-1; routing single → failover" in lines
    assert ("  +- replace  aws:s3/bucket:Bucket  lake [protected] [stateful]  [bucket (forces replace)]"
            in lines)
    assert "devices" not in text  # unchanged resources are not listed


def test_json_shape() -> None:
    doc = render_json(env_preview(topology_after=topo(("eu-central-1",), "latency")))
    json.dumps(doc)  # serialisable as is
    assert set(doc) == {"env", "commit", "backend", "totals", "warnings", "failed", "topology", "stacks"}
    assert doc["totals"] == {"create": 1, "update": 2, "replace": 1, "delete": 1, "unchanged": 8}
    assert doc["topology"]["changed"] is True
    assert doc["topology"]["after"] == {"domain": "iot.example.com", "primary": "eu-west-1",
                                        "secondaries": ["eu-central-1"], "routing": "latency"}
    region, dns = doc["stacks"]
    assert set(region) == {"stack", "kind", "region", "counts", "changes", "placeholders", "error"}
    assert region["counts"] == {"create": 1, "delete": 1, "replace": 1, "same": 2, "update": 2}
    lake = next(c for c in region["changes"] if c["name"] == "lake")
    assert lake == {"urn": lake["urn"], "type": "aws:s3/bucket:Bucket", "name": "lake", "op": "replace",
                    "diffs": ["bucket"], "replace_keys": ["bucket"], "protected": True, "stateful": True,
                    "values": []}
    assert dns["placeholders"][0]["upstream"] == "prod-region-eu-central-1"
    assert [w["name"] for w in doc["warnings"]] == ["lake", "telemetry"]


def test_render_dispatches_on_format() -> None:
    p = env_preview()
    assert render(p, "markdown")[0].startswith(marker("prod", 1))
    assert render(p, "text")[0].startswith("orchestrate preview: env prod")
    assert json.loads(render(p, "json")[0])["env"] == "prod"
    with pytest.raises(InputRejected):
        render(p, "html")
