"""The scrubber: the second line of defence that keeps secret shapes out of everything rendered."""

from __future__ import annotations

import pytest

from orchestrator.scrub import REDACTED, Scrubber, scrub, scrub_data

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize("text, gone", [
    ("id AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
    ("temporary ASIAY34FZKBOKMUTVV7A here", "ASIAY34FZKBOKMUTVV7A"),
    (f"aws_secret_access_key = {SECRET_KEY}", SECRET_KEY),
    (f'{{"SecretAccessKey": "{SECRET_KEY}"}}', SECRET_KEY),
    (f"AWS_SECRET_ACCESS_KEY={SECRET_KEY}", SECRET_KEY),
    ("aws_session_token: IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH", "IQoJb3JpZ2luX2Vj"),
    ("token ghp_" + "a" * 36, "ghp_"),
    ("token gho_" + "B" * 36, "gho_"),
    ("token ghs_" + "c1" * 18, "ghs_"),
    ("token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV",
     "github_pat_"),
])
def test_known_secret_shapes_are_redacted(text: str, gone: str) -> None:
    out = scrub(text, environ={})
    assert gone not in out and REDACTED in out


def test_pem_private_keys_are_redacted_whole_even_when_cut_off() -> None:
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\nxyz\n-----END EC PRIVATE KEY-----"
    assert scrub(f"before\n{pem}\nafter", environ={}) == f"before\n{REDACTED}\nafter"
    cut = "error: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert scrub(cut, environ={}) == f"error: {REDACTED}"
    # a certificate is public: left alone
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert scrub(cert, environ={}) == cert


def test_values_of_secret_environment_variables_are_redacted() -> None:
    env = {"PULUMI_CONFIG_PASSPHRASE": "correct horse battery", "GITHUB_TOKEN": "v1.abcdef0123456789"}
    out = scrub("pass=correct horse battery tok=v1.abcdef0123456789 ok", environ=env)
    assert out == f"pass={REDACTED} tok={REDACTED} ok"


def test_short_environment_values_are_not_scrubbed_everywhere() -> None:
    # a passphrase "dev" must not erase every mention of the dev environment
    text = "dev-region-eu-west-1"
    assert scrub(text, environ={"PULUMI_CONFIG_PASSPHRASE": "dev"}) == text


def test_extra_secrets_are_redacted_longest_first() -> None:
    out = scrub("token abcd1234 and abcd1234efgh", ["abcd1234", "abcd1234efgh"], environ={})
    assert out == f"token {REDACTED} and {REDACTED}"


def test_ordinary_text_is_left_alone() -> None:
    text = ("urn:pulumi:dev-region-eu-west-1::iot-platform::aws:s3/bucket:Bucket::lake "
            "arn:aws:s3:::iot-lake-eu-west-1 sha 0123456789abcdef0123456789abcdef01234567")
    assert scrub(text, environ={}) == text


def test_scrubbing_is_idempotent() -> None:
    once = scrub(f"AKIAIOSFODNN7EXAMPLE aws_secret_access_key={SECRET_KEY}", environ={})
    assert scrub(once, environ={}) == once


def test_scrub_data_reaches_every_string() -> None:
    data = {"a": ["AKIAIOSFODNN7EXAMPLE", {"k": "ghp_" + "z" * 36}], "n": 3, "AKIAIOSFODNN7EXAMPLE": None}
    out = scrub_data(data)
    assert "AKIA" not in repr(out) and "ghp_" not in repr(out) and out["n"] == 3  # type: ignore[index]


def test_scrubber_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "first-passphrase")
    s = Scrubber()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "second-passphrase")
    assert s("first-passphrase") == REDACTED
