"""A version-aware layer over a moto IoT client: moto 5.2.5 never increments a thing's `version`.

AWS starts a thing at version 1 and increments it on every UpdateThing (attributes, type). This
layer keeps that counter per (region, thing) for the clients it is installed on (botocore event
hooks: the requests still go to moto) and rewrites `version` in ListThings / DescribeThing answers.
`touch(thing)` stands for a change made by someone else (the console, another tool).
Attaching or detaching a principal or adding a thing to a group does not change the version, as on
AWS: that is what the `--full` pass is for.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class ThingVersions:
    def __init__(self) -> None:
        self._bumps: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def install(self, client: Any) -> Any:
        region = client.meta.region_name
        events = client.meta.events
        events.register("before-parameter-build.iot.UpdateThing",
                        lambda params, **_: self.touch(region, params["thingName"]))
        events.register("after-call.iot.ListThings", lambda parsed, **_: self._rewrite_list(region, parsed))
        events.register("after-call.iot.DescribeThing", lambda parsed, **_: self._rewrite_one(region, parsed))
        return client

    def touch(self, region: str, thing: str) -> None:
        with self._lock:
            self._bumps[(region, thing)] += 1

    def _version(self, region: str, thing: str) -> int:
        with self._lock:
            return 1 + self._bumps[(region, thing)]

    def _rewrite_list(self, region: str, parsed: dict[str, Any]) -> None:
        for t in parsed.get("things", []):
            t["version"] = self._version(region, t["thingName"])

    def _rewrite_one(self, region: str, parsed: dict[str, Any]) -> None:
        if "thingName" in parsed:
            parsed["version"] = self._version(region, parsed["thingName"])
