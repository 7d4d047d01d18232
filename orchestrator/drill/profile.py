"""A device's reconnect profile, scored against what a regional failover needs (`orchestrate device-check`).

A device configuration (YAML or JSON; keys named after the AWS IoT device SDK's MQTT 5 client options
where one exists) is checked for the five things a device must do to follow the custom domain to the
surviving region within IoT Core's quotas:

endpoint (the custom domain), sni, resolve_on_reconnect, retry_jitter_mode (not NONE),
min_reconnect_delay_ms (>= 1000: 1 CONNECT/s per client id), max_reconnect_delay_ms (<= 30000) and
resubscribe_on_session_lost; docs/devices.md gives the reasons.

Missing keys are scored as the SDK's defaults (`sni` and `resolve_on_reconnect` true, jitter FULL,
1 s to 120 s); a key of the wrong type or an unknown key is bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.drill.model import SDK_MAX_RECONNECT_S, SDK_MIN_RECONNECT_S, FleetProjection, project_fleet
from orchestrator.errors import InputRejected

JITTER_MODES = {"DEFAULT": "FULL", "FULL": "FULL", "DECORRELATED": "DECORRELATED", "EQUAL": "EQUAL", "NONE": "NONE"}
MAX_CAP_MS = 30_000
MIN_DELAY_MS = 1_000
ATS = re.compile(r"^[a-z0-9]+(-ats)?\.iot\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
KEYS = {"endpoint": str, "sni": bool, "resolve_on_reconnect": bool, "retry_jitter_mode": str,
        "min_reconnect_delay_ms": int, "max_reconnect_delay_ms": int, "resubscribe_on_session_lost": bool}


@dataclass(frozen=True)
class DeviceProfile:
    endpoint: str | None = None
    sni: bool = True
    resolve_on_reconnect: bool = True
    retry_jitter_mode: str = "FULL"
    min_reconnect_delay_ms: int = int(SDK_MIN_RECONNECT_S * 1000)
    max_reconnect_delay_ms: int = int(SDK_MAX_RECONNECT_S * 1000)
    resubscribe_on_session_lost: bool = False  # the SDK leaves resubscribing to the application

    @classmethod
    def parse(cls, data: Any, source: str) -> DeviceProfile:
        if not isinstance(data, dict):
            raise InputRejected(f"{source}: a device profile is a mapping of settings, got {type(data).__name__}")
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise InputRejected(f"{source}: unknown setting(s) {', '.join(map(str, unknown))}",
                                hint=f"known: {', '.join(KEYS)}")
        for key, value in data.items():
            want = KEYS[key]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise InputRejected(f"{source}: `{key}` must be a {want.__name__}, got {value!r}")
        fields = dict(data)
        if "retry_jitter_mode" in fields:
            mode = fields["retry_jitter_mode"].upper()
            if mode not in JITTER_MODES:
                raise InputRejected(f"{source}: `retry_jitter_mode` must be one of {', '.join(JITTER_MODES)}, "
                                    f"got {fields['retry_jitter_mode']!r}")
            fields["retry_jitter_mode"] = JITTER_MODES[mode]
        profile = cls(**fields)
        if profile.min_reconnect_delay_ms <= 0 or profile.max_reconnect_delay_ms < profile.min_reconnect_delay_ms:
            raise InputRejected(f"{source}: reconnect delays must satisfy 0 < min_reconnect_delay_ms <= "
                                f"max_reconnect_delay_ms")
        return profile

    @classmethod
    def load(cls, path: Path) -> DeviceProfile:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputRejected(f"cannot read the device profile {path}: {exc.strerror or exc}") from None
        from orchestrator.topology import parse_yaml  # strict YAML (JSON is YAML): no aliases, no duplicate keys

        data = parse_yaml(text, str(path))
        return cls.parse(data, str(path))


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    change: str  # what to change ("" when ok)


@dataclass(frozen=True)
class ProfileScore:
    profile: DeviceProfile
    findings: tuple[Finding, ...]
    projection: FleetProjection | None  # the fleet model with this device's backoff (None: jitter NONE)

    @property
    def score(self) -> int:
        return sum(1 for f in self.findings if f.ok)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        p = self.projection
        return {"ok": self.ok, "score": self.score, "of": len(self.findings),
                "findings": [{"check": f.check, "ok": f.ok, "change": f.change} for f in self.findings],
                "projection": None if p is None else {
                    "devices": p.devices, "connect_quota": p.connect_quota, "interval_s": p.interval,
                    "threshold": p.threshold, "ttl_s": p.ttl,
                    **{k: {"p50": getattr(p, k).p50, "p95": getattr(p, k).p95}
                       for k in ("rto", "detection", "dns", "admission", "backoff")}}}


def score(profile: DeviceProfile, *, devices: int = 10_000, connect_quota: float = 500.0, interval: float = 30.0,
          threshold: int = 3, ttl: float = 60.0) -> ProfileScore:
    p = profile
    findings = [
        Finding("connects to the custom domain", p.endpoint is None or not ATS.match(p.endpoint.lower()),
                f"connect to the custom domain instead of {p.endpoint}: a region's own endpoint never moves"),
        Finding("sends SNI", p.sni, "send the custom domain as SNI (TLS server_name): IoT Core selects the "
                                    "domain configuration, and its certificate, by it"),
        Finding("re-resolves DNS on each reconnect", p.resolve_on_reconnect,
                "resolve the name on every connection attempt (no pinned or cached-forever address): set "
                "resolve_on_reconnect, or drop the pinned IP"),
        Finding("jittered backoff", p.retry_jitter_mode != "NONE",
                "set retry_jitter_mode FULL (or DECORRELATED): without jitter the fleet retries in lockstep, "
                "over the survivor's account CONNECT/s"),
        Finding("first retry >= 1 s", p.min_reconnect_delay_ms >= MIN_DELAY_MS,
                f"raise min_reconnect_delay_ms to {MIN_DELAY_MS}: IoT Core admits one CONNECT per second per "
                f"client id and refuses the rest"),
        Finding(f"backoff capped at <= {MAX_CAP_MS // 1000} s", p.max_reconnect_delay_ms <= MAX_CAP_MS,
                f"lower max_reconnect_delay_ms from {p.max_reconnect_delay_ms} to 10000 (at most {MAX_CAP_MS}): "
                f"the cap is what a device waits after the survivor is ready"),
        Finding("resubscribes on sessionPresent=0", p.resubscribe_on_session_lost,
                "resubscribe every topic when CONNACK says sessionPresent=0: the survivor holds no session "
                "for the device"),
    ]
    findings = [f if not f.ok else Finding(f.check, True, "") for f in findings]
    projection = None
    if p.retry_jitter_mode != "NONE":
        projection = project_fleet(devices, connect_quota, interval, threshold, ttl,
                                   min_backoff=p.min_reconnect_delay_ms / 1000,
                                   max_backoff=p.max_reconnect_delay_ms / 1000, trials=1, sample=20_000)
    return ProfileScore(profile, tuple(findings), projection)
