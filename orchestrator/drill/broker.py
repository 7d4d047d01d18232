"""One MQTT broker per region: Debian's mosquitto on the region's own loopback address.

Devices reach the TLS listener (TLS 1.2+, the custom domain's certificate, mutual TLS trusting only
the certificates registered in that region). The region's own services (the shadow service and the
telemetry sink, standing in for IoT's rules engine) use a plain listener on the same address.
"""

from __future__ import annotations

import getpass
import shutil
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InputRejected

INSTALL_HINT = "install it with `apt-get install -y mosquitto` (or `make drill`, which does)"
KNOWN_PATHS = ("/usr/sbin/mosquitto",)  # Debian installs it outside a normal user's PATH


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), *KNOWN_PATHS):
        if candidate and Path(candidate).is_file():
            return candidate
    raise InputRejected("the local drill needs the mosquitto MQTT broker, which is not installed",
                        hint=INSTALL_HINT)


@dataclass(frozen=True)
class BrokerSpec:
    region: str
    address: str  # 127.0.0.x: this region's ATS endpoint on this machine
    tls_port: int
    service_port: int
    directory: Path

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    def write_config(self, *, server_cert: str, server_key: str, trust: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        files = {"server.pem": server_cert, "server.key": server_key, "trust.pem": trust}
        for name, text in files.items():
            path = self.directory / name
            path.write_text(text)
            path.chmod(0o600)
        d = self.directory
        self.config_path.write_text("\n".join([
            "per_listener_settings true",
            # started as root, mosquitto would switch to its own user, which cannot read these files
            f"user {getpass.getuser()}",
            "persistence false",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"listener {self.tls_port} {self.address}",
            f"certfile {d / 'server.pem'}",
            f"keyfile {d / 'server.key'}",
            f"cafile {d / 'trust.pem'}",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
            "allow_anonymous false",
            f"listener {self.service_port} {self.address}",
            "allow_anonymous true",
            "",
        ]))
        return self.config_path
