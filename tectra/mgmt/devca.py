"""A development certificate authority for tectra-mgmtd's mutual TLS (demo and tests only).

`tectra-mgmtd devca --out DIR` writes:

* ca.pem / ca.key: a self-signed CA (EC P-256, 30 days);
* server.pem / server.key: mgmtd's certificate, SAN localhost, 127.0.0.1 and ::1;
* <name>.pem / <name>.key per client, subject CN = the name (viewer, operator,
  risk-officer, admin by default), usable as `tectractl --cert/--key`.

Private keys are written 0600. Production deployments bring their own CA: mgmtd only needs the
three paths in `[mgmt]`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_CLIENTS: Final = ("viewer", "operator", "risk-officer", "admin")
VALIDITY: Final = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class DevCaFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]  # name -> (cert, key)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tectra development CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool = False,
    san: Sequence[x509.GeneralName] = (),
    usage: Sequence[x509.ObjectIdentifier] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def create_dev_ca(out: Path, clients: Sequence[str] = DEFAULT_CLIENTS) -> DevCaFiles:
    """Write a fresh CA, a server certificate and one client certificate per name to OUT."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("tectra-dev-ca")
    ca = _issue(ca_name, ca_key, ca_name, ca_key, is_ca=True)
    _write_cert(out / "ca.pem", ca)
    _write_key(out / "ca.key", ca_key)

    server_key = _key()
    san = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    server = _issue(
        _name("tectra-mgmtd"),
        server_key,
        ca_name,
        ca_key,
        san=san,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    _write_cert(out / "server.pem", server)
    _write_key(out / "server.key", server_key)

    issued: dict[str, tuple[Path, Path]] = {}
    for name in clients:
        key = _key()
        cert = _issue(_name(name), key, ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
        cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
        _write_cert(cert_path, cert)
        _write_key(key_path, key)
        issued[name] = (cert_path, key_path)
    return DevCaFiles(out / "ca.pem", out / "server.pem", out / "server.key", issued)


def issue_client(out: Path, name: str, *, subject: x509.Name | None = None) -> tuple[Path, Path]:
    """Another client certificate from the CA in OUT (SUBJECT overrides CN=NAME; tests use
    a subject without a CN)."""
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = _issue(
        subject if subject is not None else _name(name),
        key,
        ca.subject,
        ca_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return cert_path, key_path
