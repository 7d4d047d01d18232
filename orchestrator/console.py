"""Output goes through an injected console, never bare `print`.

stdout carries results (text or exactly one JSON document with --json); stderr carries progress,
notices and errors. Tests inject their own writers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Writer = Callable[[str], None]


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


class Console:
    # A plain class, not a dataclass: this module is on the path of `orchestrate --help`.
    def __init__(self, out: Writer = _stdout, err: Writer = _stderr, verbose: bool = False,
                 json_mode: bool = False) -> None:
        self.out, self.err, self.verbose, self.json_mode = out, err, verbose, json_mode

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
