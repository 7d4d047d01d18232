"""The certificates IoT Core issues itself (CreateKeysAndCertificate), in the local AWS world.

AWS: "CreateKeysAndCertificate: Creates a 2048-bit RSA key pair and issues an X.509 certificate
using the issued public key", and "AWS IoT issues a default subject name for the certificate (for
example, AWS IoT Certificate)" (API reference,
https://docs.aws.amazon.com/iot/latest/apireference/API_CreateKeysAndCertificate.html); the
certificate is signed by Amazon's own issuing CA (the issuer name below is what AWS-issued device
certificates carry; an observation, not a documented contract), which IoT Core trusts, and
the device may use it only in the account and Region where it is registered and ACTIVE (the
fleet-provisioning flow activates it through RegisterThing). moto 5.2.5 instead writes a
certificate whose issuer is "Moto" but which is signed with the device's own key: no TLS stack can
verify it, so a provisioned device could never connect to the drill's front door.

Here the issuing CA is one fixed EC P-256 key of the world (derived from a constant: a test
world's CA, not a secret), known to the moto server process that issues (`install`) and to the
drill that trusts it (`issuing_ca_pem`, written into each region's trust directory, as every
region of IoT Core trusts Amazon's CA). Whether the certificate is registered and ACTIVE in the
region is still decided per connection by the front door (iotdoor / iotpolicy), as before.
"""

from __future__ import annotations

import datetime
import hashlib
from functools import lru_cache
from typing import Any

SUBJECT_CN = "AWS IoT Certificate"  # what AWS puts in the certificates it issues
_SEED = b"orchestrate local world: AWS IoT issuing CA"


def _names() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    issuer = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Amazon Web Services"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon.com Inc."),
                        x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
                        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Washington"),
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "US")])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SUBJECT_CN)])
    return issuer, subject


@lru_cache(maxsize=1)
def _ca_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's group order
    return ec.derive_private_key(int.from_bytes(hashlib.sha256(_SEED).digest(), "big") % (order - 1) + 1,
                                 ec.SECP256R1())


@lru_cache(maxsize=1)
def issuing_ca_pem() -> str:
    """The issuing CA's certificate (self-signed): what each region's front door trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    issuer, _ = _names()
    key = _ca_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(issuer).issuer_name(issuer).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def issue() -> tuple[str, dict[str, str]]:
    """A new 2048-bit RSA key pair and a certificate for it signed by the issuing CA:
    (certificate PEM, {"PublicKey": ..., "PrivateKey": ...}) as CreateKeysAndCertificate answers."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer, subject = _names()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(_ca_key(), hashes.SHA256()))
    pair = {"PublicKey": private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
            "PrivateKey": private.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.TraditionalOpenSSL,
                                                serialization.NoEncryption()).decode()}
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pair


def install() -> None:
    """moto's CreateKeysAndCertificate issues with the world's CA (idempotent)."""
    from moto.iot.models import FakeCertificate, IoTBackend

    if getattr(IoTBackend, "_orchestrate_issuer", False):
        return

    def create_keys_and_certificate(self: Any, set_as_active: bool) -> tuple[Any, dict[str, str]]:
        pem, pair = issue()
        certificate = FakeCertificate(pem, "ACTIVE" if set_as_active else "INACTIVE", self.account_id,
                                      self.region_name)
        self.certificates[certificate.certificate_id] = certificate
        return certificate, pair

    setattr(IoTBackend, "create_keys_and_certificate", create_keys_and_certificate)  # noqa: B010 - foreign class
    setattr(IoTBackend, "_orchestrate_issuer", True)  # noqa: B010 - a flag on a foreign class


__all__ = ["SUBJECT_CN", "install", "issue", "issuing_ca_pem"]
