"""Certificates of the local world: a CA standing in for ACM, the custom domain's server
certificate, and self-signed device certificates (registered without a CA, SNI_ONLY mode in IoT).

A broker trusts exactly the device certificates registered in its region's registry (its trust
directory follows the registry: `broker.TrustStore`), so a device whose certificate was never
synced to a region is refused at the TLS handshake there, as IoT Core refuses it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class KeyPair:
    cert_pem: str
    key_pem: str

    def __repr__(self) -> str:  # the private key never reaches a log
        return "KeyPair(cert_pem=..., key_pem=[secret])"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=days))


CA_NAME = "orchestrate drill local CA (stands in for ACM)"


def local_ca(name: str = CA_NAME) -> tuple[KeyPair, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (_validity(x509.CertificateBuilder(), 2).subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)), key


def server_certificate(ca: KeyPair, ca_key: ec.EllipticCurvePrivateKey, domain: str) -> KeyPair:
    """The custom domain's certificate (serverAuth, ECDSA P-256: what ACM issues and IoT accepts)."""
    key = _key()
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.encode()).subject
    cert = (_validity(x509.CertificateBuilder(), 2)
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


def device_certificate(thing: str) -> KeyPair:
    """A self-signed client certificate, as a device registers it without a CA."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)])
    cert = (_validity(x509.CertificateBuilder(), 2).subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))
