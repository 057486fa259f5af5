"""The proxy's TLS certificate when none is configured: a local CA and a server certificate
it signs, made by ``strata up``.

```
$STRATA_HOME/tls/ca.crt        the CA clients verify the proxy with (sslrootcert)
$STRATA_HOME/tls/server.crt    the proxy's certificate: 127.0.0.1, ::1 and localhost
$STRATA_HOME/tls/server.key    its key (0600, in a 0700 directory)
```

The CA's own key signs once and is thrown away, so nothing else can ever be signed with
it. Both are remade when the server certificate is missing or has under 30 days left.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.durable import write_durably
from strata.local.home import Home

SERVER_DAYS: Final = 825
RENEW_DAYS: Final = 30
HOST_NAMES: Final = ("localhost",)
HOST_ADDRESSES: Final = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class CertFiles:
    """Where the proxy's certificate, its key and the CA that signed it are."""

    cert: Path
    key: Path
    ca: Path | None  # None: configured, not made here


def ca_file(home: Home) -> Path:
    """Where ``ensure`` keeps the CA certificate (it need not exist yet)."""
    return home.root / "tls" / "ca.crt"


def ensure(home: Home) -> CertFiles:
    """The generated certificate files, made now if missing or about to expire."""
    ca = ca_file(home)
    files = CertFiles(ca.parent / "server.crt", ca.parent / "server.key", ca)
    if _valid_for(files.cert) > datetime.timedelta(days=RENEW_DAYS) and files.key.exists() \
            and ca.exists():
        return files
    ca.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(ca.parent, 0o700)
    ca_cert, cert, key = _make()
    pem = serialization.Encoding.PEM
    write_durably(files.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), mode=0o600)
    write_durably(files.cert, cert.public_bytes(pem), mode=0o644)
    write_durably(ca, ca_cert.public_bytes(pem), mode=0o644)
    return files


def _valid_for(cert_file: Path) -> datetime.timedelta:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return datetime.timedelta(0)
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)


def _make() -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh CA certificate, and a server certificate it signed with its key."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Strata local proxy CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS + 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in HOST_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in HOST_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    return ca_cert, cert, key
