"""The custom domain in each region: its IoT domain configuration and ACM certificate."""

from __future__ import annotations

from typing import Any

from orchestrator.readiness.model import Scope, Verdict, not_ready, ready, rule, unknown
from orchestrator.readiness.probe import Probe, Unreadable, aws_read, not_found, plain


def domain_config_name(probe: Probe, region: str) -> str:
    return str(plain(probe.region_outputs(region).get("domainConfigurationName"))
               or f"iot-{probe.env}-{region}-domain")


def describe(probe: Probe, region: str) -> dict[str, Any] | None:
    """The domain configuration (None: there is none)."""
    def read() -> dict[str, Any] | None:
        name = domain_config_name(probe, region)
        try:
            return dict(aws_read(f"DescribeDomainConfiguration {name}", lambda: probe.client("iot", region)
                                 .describe_domain_configuration(domainConfigurationName=name)))
        except Unreadable as exc:
            if not_found(exc):
                return None
            raise
    return probe.once(("domain", region), read)


def _up(region: str) -> str:
    return f"orchestrate up --region {region}"


@rule("domain.configuration_enabled", "domain", "domain configuration exists and is ENABLED")
def configuration_enabled(probe: Probe, region: str) -> Verdict:
    found = describe(probe, region)
    name = domain_config_name(probe, region)
    if found is None:
        return not_ready(f"no domain configuration {name}", _up(region))
    status = found.get("domainConfigurationStatus")
    if status != "ENABLED":
        return not_ready(f"{name} is {status}",
                         f"aws iot update-domain-configuration --region {region} "
                         f"--domain-configuration-name {name} --domain-configuration-status ENABLED")
    if found.get("domainName") and found["domainName"] != probe.topology.domain:
        return not_ready(f"{name} serves {found['domainName']}, not {probe.topology.domain}", _up(region))
    return ready(f"{name} ENABLED for {found.get('domainName') or probe.topology.domain}")


def certificate(probe: Probe, region: str) -> dict[str, Any] | None:
    def read() -> dict[str, Any] | None:
        arn = plain(probe.region_outputs(region).get("certificateArn"))
        if not arn:
            found = describe(probe, region)
            certs = (found or {}).get("serverCertificates") or []
            arn = certs[0].get("serverCertificateArn") if certs else None
        if not arn:
            return None
        got = aws_read(f"DescribeCertificate {arn}",
                       lambda: probe.client("acm", region).describe_certificate(CertificateArn=arn))
        return dict(got["Certificate"])
    return probe.once(("acm", region), read)


@rule("domain.certificate_issued", "domain", "the domain's ACM certificate is ISSUED")
def certificate_issued(probe: Probe, region: str) -> Verdict:
    cert = certificate(probe, region)
    if cert is None:
        return not_ready("no server certificate named by the stack or the domain configuration", _up(region))
    status = cert.get("Status")
    if status != "ISSUED":
        return not_ready(f"certificate {cert.get('CertificateArn')} is {status}",
                         f"complete its DNS validation, then {_up(region)}")
    return ready(f"certificate for {cert.get('DomainName')} ISSUED")


@rule("domain.certificate_expiry", "domain", "the domain's certificate is not about to expire")
def certificate_expiry(probe: Probe, region: str) -> Verdict:
    cert = certificate(probe, region)
    if cert is None or not cert.get("NotAfter"):
        return unknown("no certificate expiry to read (see domain.certificate_issued)")
    days = (cert["NotAfter"] - probe.now).total_seconds() / 86400
    if days < probe.settings.min_cert_days:
        return not_ready(f"certificate expires in {days:.0f} days (< {probe.settings.min_cert_days})",
                         "renew or re-import the certificate (ACM renews DNS-validated ones while the "
                         "validation CNAME exists)")
    return ready(f"{days:.0f} days to expiry")


def _parity(probe: Probe, region: str, key: str, what: str) -> Verdict:
    here, there = describe(probe, region), describe(probe, probe.topology.primary)
    if here is None or there is None:
        return unknown(f"no domain configuration to compare ({'here' if here is None else 'in the primary'})")
    a, b = there.get(key), here.get(key)
    if a is None and b is None:
        return unknown(f"the endpoint returns no {key} for either region (not offered by this API)")
    if a != b:
        return not_ready(f"{what} {b} here, {a} in {probe.topology.primary}", _up(region))
    return ready(f"{what} equal: {a}")


@rule("domain.tls_policy_parity", "domain", "TLS security policy as in the primary", scope=Scope.SECONDARY)
def tls_policy_parity(probe: Probe, region: str) -> Verdict:
    return _parity(probe, region, "tlsConfig", "TLS configuration")


@rule("domain.authorizer_parity", "domain", "custom authorizer configuration as in the primary",
      scope=Scope.SECONDARY)
def authorizer_parity(probe: Probe, region: str) -> Verdict:
    here, there = describe(probe, region), describe(probe, probe.topology.primary)
    if here is None or there is None:
        return unknown("no domain configuration to compare")
    a, b = there.get("authorizerConfig") or {}, here.get("authorizerConfig") or {}
    if a != b:
        return not_ready(f"authorizer {b or 'none'} here, {a or 'none'} in {probe.topology.primary}", _up(region))
    return ready(f"authorizer configuration equal ({a.get('defaultAuthorizerName') or 'none'})")
