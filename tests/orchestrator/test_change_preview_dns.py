"""The DNS answers before and after, shown before `up` asks and in `promote-secondary --dry-run`."""

from __future__ import annotations

from orchestrator.operations.change_preview import dns_answers, preview_lines, stack_line
from orchestrator.preview.model import EnvironmentPreview, Op, ResourceChange, StackPreview, ValueChange

RECORD = "aws:route53/record:Record"
OLD = '["aaaa-ats.iot.eu-west-1.amazonaws.com"]'
NEW = '["bbbb-ats.iot.eu-central-1.amazonaws.com"]'


def dns_stack() -> StackPreview:
    return StackPreview(
        stack="dev-dns", kind="dns", region="us-east-1",
        changes=(
            ResourceChange(urn="urn:rec-primary", type=RECORD, name="record-primary", op=Op.UPDATE,
                           diffs=("records",), values=(ValueChange("records", OLD, NEW),)),
            ResourceChange(urn="urn:rec-secondary", type=RECORD, name="record-secondary", op=Op.CREATE,
                           values=(ValueChange("name", None, "iot.example.com"),
                                   ValueChange("failoverRoutingPolicies", None, '[{"type":"SECONDARY"}]'),
                                   ValueChange("records", None, OLD))),
            ResourceChange(urn="urn:hc", type="aws:route53/healthCheck:HealthCheck", name="hc", op=Op.CREATE,
                           values=(ValueChange("fqdn", None, "x"),)),
            ResourceChange(urn="urn:old", type=RECORD, name="record-latency", op=Op.DELETE),
        ),
        counts={Op.UPDATE: 1, Op.CREATE: 2, Op.DELETE: 1, Op.SAME: 3})


def test_each_changed_record_shows_what_it_answered_and_will_answer() -> None:
    assert dns_answers(dns_stack()) == [
        f"record-primary: records {OLD} -> {NEW}",
        "record-secondary (iot.example.com): records (none) -> " + OLD,
        'record-secondary (iot.example.com): failoverRoutingPolicies (none) -> [{"type":"SECONDARY"}]',
        "record-latency: delete",
    ]


def test_the_prompt_lists_the_answers_under_the_stack_line_and_the_dry_run_inline() -> None:
    region = StackPreview(stack="dev-region-eu-west-1", kind="region", region="eu-west-1", counts={Op.SAME: 40})
    lines = preview_lines(EnvironmentPreview(env="dev", commit="working tree", stacks=(region, dns_stack())))
    assert lines[0] == "dev-region-eu-west-1: 0 to create, 0 to update, 0 to replace, 0 to delete (40 unchanged)"
    assert lines[1].startswith("dev-dns: 2 to create, 1 to update, 0 to replace, 1 to delete (3 unchanged)")
    assert "DNS:" not in lines[1]  # shown once, on the lines below
    assert lines[2] == f"  DNS record-primary: records {OLD} -> {NEW}"
    assert len(lines) == 2 + 4
    inline = stack_line(dns_stack())
    assert inline.endswith(f"; DNS: record-primary: records {OLD} -> {NEW}; "
                           f"record-secondary (iot.example.com): records (none) -> {OLD}; "
                           "record-secondary (iot.example.com): failoverRoutingPolicies (none) -> "
                           '[{"type":"SECONDARY"}]; '
                           "record-latency: delete")
    assert "DNS" not in stack_line(region)
