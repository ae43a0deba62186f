"""The proxy's CA: created on demand in the confdir, private key kept private (0600), and a
combined bundle (system CAs + fisproxy CA) so non-AWS HTTPS keeps working through the proxy."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

CA_CERT = "mitmproxy-ca-cert.pem"
BUNDLE = "fisproxy-ca-bundle.pem"
# Files mitmproxy writes that contain the CA private key.
PRIVATE_FILES = ("mitmproxy-ca.pem", "mitmproxy-ca.p12")
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, BSD
)


def ensure_ca(confdir: Path) -> Path:
    """Create the CA in `confdir` if missing; return the path of its certificate.

    A new CA is never silent: clients trust only the CA they were given, so one line on
    stderr says where it is and that clients must trust it."""
    from mitmproxy.certs import CertStore

    confdir.mkdir(parents=True, exist_ok=True)
    # mitmproxy makes a new CA when its key file is missing (mitmproxy/certs.py: from_store).
    created = not (confdir / PRIVATE_FILES[0]).exists()
    CertStore.from_store(confdir, "mitmproxy", 2048)
    protect_key(confdir)
    cert = confdir / CA_CERT
    if created:
        sys.stderr.write(new_ca_notice(cert) + "\n")
    return cert


def new_ca_notice(cert: Path) -> str:
    folder = shlex.quote(str(cert.parent.resolve()))
    return (f"fisproxy: created a new CA: {cert.resolve()}; clients must trust it "
            f"(eval \"$(fisproxy env --certs {folder})\" sets AWS_CA_BUNDLE and friends)")


def protect_key(confdir: Path) -> None:
    """Make the key files readable by their owner only (mitmproxy relies on the umask)."""
    for name in PRIVATE_FILES:
        path = confdir / name
        if path.exists() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # already private (e.g. a read-only Secret mount): left alone


def system_bundle() -> Path:
    for candidate in SYSTEM_BUNDLES:
        if Path(candidate).is_file():
            return Path(candidate)
    import certifi

    return Path(certifi.where())


def write_bundle(confdir: Path) -> Path:
    """System CAs plus the fisproxy CA, for clients whose CA setting replaces the trust store."""
    ca = ensure_ca(confdir)
    bundle = confdir / BUNDLE
    bundle.write_bytes(system_bundle().read_bytes().rstrip() + b"\n" + ca.read_bytes())
    return bundle
