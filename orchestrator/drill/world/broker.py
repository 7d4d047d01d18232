"""One MQTT broker per region: Debian's mosquitto on the region's own loopback address.

Devices reach the TLS listener (TLS 1.2+, the custom domain's certificate, mutual TLS trusting only
the certificates registered in that region, followed while the broker runs: `TrustStore`). The
region's own services (the shadow service and the telemetry sink, standing in for IoT's rules
engine) use a plain listener on the same address.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import getpass
import hashlib
import shutil
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InputRejected

INSTALL_HINT = "install it with `apt-get install -y mosquitto` (or `make drill`, which does)"
KNOWN_PATHS = ("/usr/sbin/mosquitto",)  # Debian installs it outside a normal user's PATH
LIFECYCLE_LOG = "$SYS/broker/log/N"  # mosquitto's notices (`log_dest topic`), read on the service listener


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
    # False: devices reach this broker only through the region's IoT front door (`iotdoor`), which
    # ends their TLS on `tls_port` and relays authorised MQTT to the plain listener
    tls_listener: bool = True

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def trust_directory(self) -> Path:
        return self.directory / "trust"

    def write_config(self, *, server_cert: str, server_key: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.trust_directory.mkdir(exist_ok=True)
        files = {"server.pem": server_cert, "server.key": server_key}
        for name, text in files.items():
            path = self.directory / name
            path.write_text(text)
            path.chmod(0o600)
        d = self.directory
        tls = [
            f"listener {self.tls_port} {self.address}",
            f"certfile {d / 'server.pem'}",
            f"keyfile {d / 'server.key'}",
            f"capath {self.trust_directory}",  # looked up at each handshake: see TrustStore
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
            "allow_anonymous false",
        ] if self.tls_listener else []
        self.config_path.write_text("\n".join([
            "per_listener_settings true",
            # started as root, mosquitto would switch to its own user, which cannot read these files
            f"user {getpass.getuser()}",
            "persistence false",
            "log_dest stdout",
            # the broker's connection notices, on LIFECYCLE_LOG: the local world's IoT lifecycle events
            # (`outbox_world.lifecycle_event`: "New client connected from <address> as <client id> (...)")
            "log_dest topic",
            "log_type error",
            "log_type warning",
            "log_type notice",
            *tls,
            f"listener {self.service_port} {self.address}",
            "allow_anonymous true",
            "",
        ]))
        return self.config_path


class TrustStore:
    """A broker's client trust: the region's registered ACTIVE certificates, as an OpenSSL hash
    directory (mosquitto's `capath`).

    OpenSSL looks a client certificate's issuer up in the directory at each handshake (by the
    subject-name hash, files `<hash>.<n>`), so a certificate registered or synced into the region
    while the broker runs is trusted from its next connection, without a restart: the broker follows
    the registry as IoT Core does. mosquitto does not re-read a `cafile` on SIGHUP, hence the
    directory. Limit: a certificate once used stays in the running broker's cache, so deactivating
    it is not followed until a restart (IoT Core refuses it at once)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.known: set[str] = set()  # certificate ids already written
        self.ids: dict[str, str] = {}  # SHA-256 of a certificate's DER -> its IoT certificate id
        self._lock = threading.Lock()

    def refresh(self, iot: Any) -> int:
        """Write the certificates the registry gained since the last refresh; returns how many."""
        with self._lock:
            added = 0
            for page in iot.get_paginator("list_certificates").paginate(PaginationConfig={"PageSize": 250}):
                for c in page.get("certificates", []):
                    if c.get("status") != "ACTIVE" or c["certificateId"] in self.known:
                        continue
                    pem = iot.describe_certificate(certificateId=c["certificateId"])[
                        "certificateDescription"]["certificatePem"]
                    self.add(pem)
                    self.known.add(c["certificateId"])
                    self.ids[hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()] = c["certificateId"]
                    added += 1
            return added

    def identify(self, der: bytes) -> str | None:
        """The IoT certificate id of a client certificate (its DER), for iotpolicy's authoriser."""
        return self.ids.get(hashlib.sha256(der).hexdigest())

    def add(self, pem: str) -> Path:
        """Write one certificate under its subject hash (the next free `.n` for that hash)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = subject_hash(pem)
        n = 0
        while (self.directory / f"{digest}.{n}").exists():
            n += 1
        path = self.directory / f"{digest}.{n}"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(pem if pem.endswith("\n") else pem + "\n")
        tmp.chmod(0o644)
        tmp.rename(path)  # the broker never reads half a file
        return path


_CRYPTO: Any = None


def subject_hash(pem: str) -> str:
    """OpenSSL's subject-name hash of a certificate (`openssl x509 -subject_hash`), as 8 hex digits:
    the name OpenSSL's hash-directory lookup expects. Computed by the libcrypto this Python's ssl
    module uses (the same function OpenSSL's `rehash` calls)."""
    global _CRYPTO
    if _CRYPTO is None:
        name = ctypes.util.find_library("crypto")
        if not name:
            raise OSError("libcrypto not found (OpenSSL's library, which mosquitto needs too)")
        lib = ctypes.CDLL(name)
        lib.d2i_X509.restype = ctypes.c_void_p
        lib.d2i_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        lib.X509_subject_name_hash.restype = ctypes.c_ulong
        lib.X509_subject_name_hash.argtypes = [ctypes.c_void_p]
        lib.X509_free.argtypes = [ctypes.c_void_p]
        _CRYPTO = lib
    der = ssl.PEM_cert_to_DER_cert(pem)
    buf = ctypes.c_char_p(der)
    cert = _CRYPTO.d2i_X509(None, ctypes.byref(buf), len(der))
    if not cert:
        raise ValueError("not an X.509 certificate")
    try:
        return f"{_CRYPTO.X509_subject_name_hash(cert) & 0xFFFFFFFF:08x}"
    finally:
        _CRYPTO.X509_free(cert)
