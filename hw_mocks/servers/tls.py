"""Throwaway PKI for mutual-TLS tests: a CA, a server certificate for 127.0.0.1/localhost,
client certificates whose CN is the ATM id, and a client certificate from a *rogue* CA.

ECDSA P-256 everywhere: generating a whole PKI takes a few milliseconds.

    pki = make_pki(tmp_path, atm_ids=("atm-0001", "atm-0002"))
    pki.client("atm-0001").cert   # Path to client-atm-0001.crt (signed by ca.crt)
    pki.rogue.cert                # CN atm-0001, signed by rogue-ca.crt instead

Files are written with fixed names into ``directory``, keys with mode 0600; nothing here is
secret or meant to outlive the test run.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)
SKEW = dt.timedelta(hours=1)  # not_before in the past: tolerate clock differences
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key (PEM files)."""

    cn: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path  # ca.crt: the CA the broker and the ATMs trust
    ca_key: Path
    server: CertKey  # server.crt/.key: SAN IP 127.0.0.1, DNS localhost
    clients: dict[str, CertKey]  # CN -> client-<CN>.crt/.key signed by ca.crt
    rogue_ca_cert: Path  # rogue-ca.crt: another CA, trusted by nobody
    rogue_ca_key: Path
    rogue: CertKey  # rogue-client.crt: CN of the first ATM, signed by rogue CA
    atm_ids: tuple[str, ...] = field(default=())

    def client(self, cn: str) -> CertKey:
        try:
            return self.clients[cn]
        except KeyError:
            raise KeyError(f"no client certificate for CN {cn!r}; have {sorted(self.clients)}") from None


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, org: str = "ATM test PKI") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name(cn)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    cn: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    b = (
        _builder(_name(cn), ca_cert.subject, key.public_key())
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        san = [x509.DNSName(n) for n in SERVER_NAMES] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def _save(directory: Path, stem: str, cn: str, cert, key) -> CertKey:
    return CertKey(cn, _write_cert(directory / f"{stem}.crt", cert), _write_key(directory / f"{stem}.key", key))


def make_pki(
    directory: str | os.PathLike, atm_ids: Iterable[str] = ("atm-0001",), *, extra_clients: Iterable[str] = ("monitor",)
) -> Pki:
    """Write a fresh PKI into ``directory`` (created if missing) and return its paths.

    Client certificates (CN = name, signed by ``ca.crt``) are made for every ATM id and for
    every name in ``extra_clients`` (by default the monitoring centre, CN ``monitor``).
    The rogue client certificate has the CN of the first ATM id but is signed by
    ``rogue-ca.crt``: an impersonation attempt the broker must refuse.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atm_ids = tuple(atm_ids)
    names = list(dict.fromkeys(atm_ids + tuple(extra_clients)))
    for n in names:
        if not n or any(c in n for c in "/+#\0") or n != n.strip():
            raise ValueError(f"bad client CN {n!r}: it becomes an MQTT username and a topic level")

    ca_cert, ca_key = _make_ca("ATM test CA")
    ca = _save(directory, "ca", "ATM test CA", ca_cert, ca_key)
    server = _save(directory, "server", "localhost", *_make_leaf("localhost", ca_cert, ca_key, server=True))
    clients = {n: _save(directory, f"client-{n}", n, *_make_leaf(n, ca_cert, ca_key, server=False)) for n in names}
    rogue_ca_cert, rogue_ca_key = _make_ca("Rogue CA")
    rogue_ca = _save(directory, "rogue-ca", "Rogue CA", rogue_ca_cert, rogue_ca_key)
    rogue_cn = atm_ids[0] if atm_ids else "atm-rogue"
    rogue = _save(directory, "rogue-client", rogue_cn, *_make_leaf(rogue_cn, rogue_ca_cert, rogue_ca_key, server=False))
    return Pki(
        directory=directory,
        ca_cert=ca.cert,
        ca_key=ca.key,
        server=server,
        clients=clients,
        rogue_ca_cert=rogue_ca.cert,
        rogue_ca_key=rogue_ca.key,
        rogue=rogue,
        atm_ids=atm_ids,
    )
