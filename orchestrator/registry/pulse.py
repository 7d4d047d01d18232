"""Progress while a sync reads both registries, before it knows how many changes it will apply.

A sync first lists and reads both regions (at a million things that is minutes of paged and
per-thing reads) and only then knows its total. `ReadingPulse` counts the requests the sync's boto3
clients send (botocore's `before-send` event: every attempt, reads and writes alike) and reports the
count to the progress display's `activity` a few times a second, until the display has a total
(the apply's bar takes over) or the sync ends. The display decides what to show: a line redrawn
in place on a terminal, a line every few seconds in a file, nothing under --json or on CI."""

from __future__ import annotations

import threading
from typing import Any


class ReadingPulse:
    """`with ReadingPulse(progress, clients):` around the sync. Clients without botocore's event
    system (test doubles) are not counted; a display without `activity` gets nothing."""

    def __init__(self, progress: Any, clients: list[Any], *, interval: float = 0.25, what: str = "reading") -> None:
        self.progress, self.interval, self.what = progress, interval, what
        self.clients = [c for c in clients if c is not None and hasattr(getattr(c, "meta", None), "events")]
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._id = f"orchestrate-reading-pulse-{id(self)}"

    def _count(self, **_: Any) -> None:
        with self._lock:
            self.sent += 1

    def _tick(self) -> None:
        activity = getattr(self.progress, "activity", None)
        while activity is not None and not self._stop.wait(self.interval):
            if getattr(self.progress, "total", 0) > 0:
                return  # the apply's bar has a total now
            activity(self.what, self.sent)

    def __enter__(self) -> ReadingPulse:
        if self.progress is None or not hasattr(self.progress, "activity"):
            return self
        for c in self.clients:
            c.meta.events.register("before-send", self._count, unique_id=self._id)
        self._thread = threading.Thread(target=self._tick, name="reading-pulse", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self.clients:
            c.meta.events.unregister("before-send", unique_id=self._id)
        if getattr(self.progress, "total", 0) <= 0 and hasattr(self.progress, "close"):
            self.progress.close()  # the reading line (a sync with nothing to apply) ends on its own line
