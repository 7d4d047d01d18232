"""Backups that cannot be forged by whoever can write the vault, and certificates that are what they say.

A backup's manifest lists the SHA-256 of every file it holds; the manifest itself is signed with a
key the vault's writers do not hold, and the signature (`manifest.sig`) is verified before anything
is read from the backup, let alone written to a region:

- `awskms:<key id, ARN or alias>`: AWS KMS `Sign`/`Verify` with an asymmetric SIGN_VERIFY key
  (RSASSA_PSS_SHA_256, or ECDSA_SHA_256 for an ECC key). Writing to the bucket does not grant
  `kms:Sign`, so a writer can change files but not produce a signature for them.
- `secretsmanager:<secret id>`: HMAC-SHA256 with a key read from AWS Secrets Manager (for accounts
  without asymmetric KMS keys); whoever can read the secret can sign, so keep it apart from the
  vault's writers.

The spec comes from `--signing-key` or $ORCHESTRATE_BACKUP_SIGNING_KEY. `certificate_id` computes
an IoT certificate id locally (SHA-256 of the DER), so a PEM is compared with the id it claims
before it is registered anywhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.errors import GuardRefused, InputRejected

SIGNING_KEY_ENV = "ORCHESTRATE_BACKUP_SIGNING_KEY"
SIGNATURE = "manifest.sig"
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----")
_KMS_ALGORITHMS = ("RSASSA_PSS_SHA_256", "ECDSA_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256")


def certificate_id(pem: str) -> str:
    """The AWS IoT certificate id of a PEM certificate: the SHA-256 of its DER bytes."""
    m = _PEM_CERT.search(pem or "")
    if m is None:
        raise InputRejected("not a PEM certificate (no BEGIN/END CERTIFICATE block)")
    try:
        der = base64.b64decode("".join(m.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputRejected("a PEM certificate whose body is not base64") from None
    return hashlib.sha256(der).hexdigest()


class Signer(Protocol):
    @property
    def spec(self) -> str: ...

    def sign(self, message: bytes) -> dict[str, str]: ...
    def verify(self, message: bytes, signature: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class KmsSigner:
    spec: str
    client: Any
    key_id: str

    def _algorithm(self) -> str:
        meta = self.client.describe_key(KeyId=self.key_id)["KeyMetadata"]
        if meta.get("KeyUsage") != "SIGN_VERIFY":
            raise InputRejected(f"{self.spec}: the KMS key is not a SIGN_VERIFY key")
        offered = meta.get("SigningAlgorithms") or []
        for algorithm in _KMS_ALGORITHMS:
            if algorithm in offered:
                return algorithm
        raise InputRejected(f"{self.spec}: the KMS key offers none of {', '.join(_KMS_ALGORITHMS)}")

    def sign(self, message: bytes) -> dict[str, str]:
        algorithm = self._algorithm()
        digest = hashlib.sha256(message).digest()
        out = self.client.sign(KeyId=self.key_id, Message=digest, MessageType="DIGEST",
                               SigningAlgorithm=algorithm)
        return {"scheme": "awskms", "key": str(out.get("KeyId") or self.key_id), "algorithm": algorithm,
                "signature": base64.b64encode(out["Signature"]).decode()}

    def verify(self, message: bytes, signature: dict[str, Any]) -> bool:
        if signature.get("scheme") != "awskms" or signature.get("algorithm") not in _KMS_ALGORITHMS:
            return False
        try:
            raw = base64.b64decode(str(signature.get("signature", "")), validate=True)
            out = self.client.verify(KeyId=self.key_id, Message=hashlib.sha256(message).digest(),
                                     MessageType="DIGEST", Signature=raw,
                                     SigningAlgorithm=signature["algorithm"])
        except (binascii.Error, ValueError):
            return False
        except Exception as exc:  # KMSInvalidSignatureException: a signature that does not verify
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("KMSInvalidSignatureException", "InvalidSignatureException", "ValidationException"):
                return False
            raise
        return bool(out.get("SignatureValid"))


@dataclass(frozen=True)
class HmacSigner:
    spec: str
    key: bytes

    def __repr__(self) -> str:  # the key never reaches a log
        return f"HmacSigner({self.spec!r}, key=[secret])"

    def sign(self, message: bytes) -> dict[str, str]:
        mac = hmac.new(self.key, message, hashlib.sha256).hexdigest()
        return {"scheme": "hmac-sha256", "key": self.spec, "signature": mac}

    def verify(self, message: bytes, signature: dict[str, Any]) -> bool:
        if signature.get("scheme") != "hmac-sha256":
            return False
        expected = hmac.new(self.key, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, str(signature.get("signature", "")))


def signer_from_spec(spec: str | None, *, kms: Any = None, secrets: Any = None) -> Signer:
    """A signer for `spec` (`awskms:KEY` or `secretsmanager:SECRET`); `kms`/`secrets` are boto3 clients,
    or callables (region-less) that make one."""
    spec = (spec or os.environ.get(SIGNING_KEY_ENV) or "").strip()
    if not spec:
        raise InputRejected("backups are signed: no signing key configured",
                            hint=f"pass --signing-key awskms:KEY or secretsmanager:SECRET, or set {SIGNING_KEY_ENV}")
    scheme, _, ref = spec.partition(":")
    if not ref:
        raise InputRejected(f"--signing-key {spec[:60]!r}: expected awskms:KEY or secretsmanager:SECRET")
    if scheme == "awskms":
        return KmsSigner(spec, kms() if callable(kms) else kms, ref)
    if scheme == "secretsmanager":
        client = secrets() if callable(secrets) else secrets
        value = client.get_secret_value(SecretId=ref)
        key = value.get("SecretBinary") or str(value.get("SecretString") or "").encode()
        if len(key) < 32:
            raise InputRejected(f"{spec}: an HMAC signing key needs at least 32 bytes")
        return HmacSigner(spec, bytes(key))
    raise InputRejected(f"--signing-key {spec[:60]!r}: unknown scheme {scheme[:20]!r} (awskms or secretsmanager)")


def sign_document(signer: Signer, manifest: bytes) -> bytes:
    return (json.dumps(signer.sign(manifest), sort_keys=True) + "\n").encode()


def verify_document(signer: Signer, manifest: bytes, signature: bytes | None, *, where: str) -> None:
    """Refuse a backup whose manifest is unsigned (exit 4) or whose signature does not verify (exit 2:
    tampered input, like a file that does not match its digest)."""
    if signature is None:
        raise GuardRefused(f"{where}: the backup is not signed; nothing was restored",
                           hint="restore only backups written with a signing key")
    try:
        doc = json.loads(signature)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not signer.verify(manifest, doc):
        raise InputRejected(f"{where}: the manifest's signature does not verify with {signer.spec}: "
                           "the backup was changed after it was written, or signed with another key; "
                           "nothing was restored")
