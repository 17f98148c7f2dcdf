"""A self-signed certificate for TLS redis-servers on loopback (``start_single(tls=True)``,
``start_cluster(tls=True)``, ``start_sentinel(tls=True)``), and their TLS arguments.

Made with ``cryptography`` (the dev extra has it): an EC key and a certificate for the
address ``127.0.0.1``, valid for a day, written next to the server's files. The client
trusts that certificate as its CA (``ssl_ca_certs=``) and checks the address against it,
as a client of a real TLS deployment would.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import tempfile
from pathlib import Path

__all__ = ["CERT", "KEY", "certificates", "tls_args", "write_certificate"]

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


def certificates(host: str) -> Path:
    """A new directory holding a certificate for ``host`` (:func:`write_certificate`), for
    servers that present the same one."""
    directory = Path(tempfile.mkdtemp(prefix="cachedeco-redis-tls-"))
    write_certificate(directory, host)
    return directory


def tls_args(port: int, directory: Path, *, replication: bool = False,
             cluster: bool = False) -> list[str]:
    """``redis-server`` arguments for a TLS port presenting ``directory``'s certificate
    (clients are not asked for one); with ``replication`` (``cluster``) the server also
    replicates (talks on the cluster bus) over TLS."""
    cert, key = directory / CERT, directory / KEY
    args = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    if replication:
        args += ["--tls-replication", "yes"]
    if cluster:
        args += ["--tls-cluster", "yes"]
    return args
