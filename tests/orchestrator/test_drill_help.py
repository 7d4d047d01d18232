"""`drill --help` says what exists: the local drill; the real-account drill refuses (issue 23, item 8)."""

from __future__ import annotations

import re

from click.testing import CliRunner

from orchestrator.cli.main import cli


def _help() -> str:
    result = CliRunner().invoke(cli, ["drill", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_drill_help_promises_no_real_account_drill() -> None:
    text = _help()
    assert "NOT available" in text
    # no option describes the real-account drill as something that runs, asks or moves traffic
    for line in text.splitlines():
        if re.search(r"real[- ]account", line, re.I):
            assert "NOT available" in line or "real-account drill is" in line, line
    assert "asks before moving traffic" not in text


def test_every_option_that_only_the_local_drill_reads_says_so() -> None:
    help_text = _help()
    text = " ".join(help_text[help_text.index("Options:"):].split())
    for option in ("--devices", "--routing", "--kill", "--duration", "--time-scale", "--failover-control",
                   "--no-transitions"):
        start = text.index(option)
        nxt = text.find(" --", start + len(option) + 1)
        assert "local only" in text[start:nxt if nxt > 0 else None], text[start:nxt]
