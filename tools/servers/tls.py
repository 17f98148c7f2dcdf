"""A self-signed certificate for a TLS redis-server on loopback (``start_single(tls=True)``).

Made with ``cryptography`` (the dev extra has it): an EC key and a certificate for the
address ``127.0.0.1``, valid for a day, written next to the server's files. The client
trusts that certificate as its CA (``ssl_ca_certs=``) and checks the address against it,
as a client of a real TLS deployment would.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

__all__ = ["CERT", "KEY", "write_certificate"]

CERT = "tls-cert.pem"
KEY = "tls-key.pem"


def write_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """Write a key and a self-signed certificate for ``host`` (an IP address) into
    ``directory``; return their paths (certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / CERT, directory / KEY
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path
