"""A throw-away certificate authority for the test brokers: made at test time, PEM files only.

Kafka 3.9 reads PEM directly (`ssl.keystore.type=PEM`, `ssl.truststore.type=PEM`), so no
keytool and no JKS. Keys are EC P-256: a key takes under a millisecond to make, an RSA 2048
key tens of milliseconds; Kafka's PEM loader and Python's `ssl` both take EC keys.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost", "127.0.0.1")
"""What the server certificate is valid for: clients verify the host name by default."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one CA, a server certificate it signed and a client certificate it signed."""

    ca_file: Path
    """The CA certificate: what clients and the broker trust."""
    server_file: Path
    """The server's private key (PKCS#8) followed by its certificate: Kafka's PEM keystore."""
    server_cert_file: Path
    """The server certificate alone (what Quarkus' `ssl.certificate.files` takes)."""
    server_key_file: Path
    """The server's private key alone (PKCS#8, not encrypted)."""
    client_cert_file: Path
    """The client certificate (subject CN=`client_name`), for mutual TLS."""
    client_key_file: Path
    """The client's private key (PKCS#8, not encrypted)."""
    client_name: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Kafka's PEM keystore takes PKCS#8 only ("BEGIN PRIVATE KEY"), not "BEGIN EC PRIVATE KEY"
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sluice tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # clock skew between processes
        .not_valid_after(now + datetime.timedelta(days=30))
    )


def make_tls(
    directory: Path, ca_name: str = "sluice test CA", client_name: str = "client"
) -> TlsFiles:
    """A new CA in `directory`, with a server certificate for localhost/127.0.0.1 and a
    client certificate, all signed by it. Another call makes another, unrelated CA: what a
    test of an untrusted certificate needs."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_subject = _name(ca_name)
    ca_cert = (
        _builder(ca_name, ca_subject, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        subject: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]
    ) -> tuple[bytes, bytes]:
        key = _key()
        builder = (
            _builder(subject, ca_subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _pem_key(key), _pem_cert(builder.sign(ca_key, hashes.SHA256()))

    server_key, server_cert = leaf(
        SERVER_NAMES[0],
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key, client_cert = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    files = TlsFiles(
        ca_file=directory / "ca.pem",
        server_file=directory / "server.pem",
        server_cert_file=directory / "server-cert.pem",
        server_key_file=directory / "server.key",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
        client_name=client_name,
    )
    files.ca_file.write_bytes(_pem_cert(ca_cert))
    _write_secret(files.server_file, server_key + server_cert)
    files.server_cert_file.write_bytes(server_cert)
    _write_secret(files.server_key_file, server_key)
    files.client_cert_file.write_bytes(client_cert)
    _write_secret(files.client_key_file, client_key)
    return files


def _write_secret(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)
