"""Output goes through an injected console, never bare `print`.

stdout carries results (text or exactly one JSON document with --json); stderr carries progress,
notices and errors. Tests inject their own writers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Writer = Callable[[str], None]


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


@dataclass
class Console:
    out: Writer = field(default=_stdout)
    err: Writer = field(default=_stderr)
    verbose: bool = False
    json_mode: bool = False

    def result(self, text: str) -> None:
        """A result line for humans (suppressed in --json mode, where only the document goes out)."""
        if not self.json_mode:
            self.out(text if text.endswith("\n") else text + "\n")

    def document(self, obj: Any) -> None:
        """The one JSON document of a --json run."""
        import json

        self.out(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    def info(self, text: str) -> None:
        self.err(text + "\n")

    def debug(self, text: str) -> None:
        if self.verbose:
            self.err(text + "\n")

    def error(self, text: str) -> None:
        self.err(f"error: {text}\n")
