"""The grid's own certificate authority, made with `cryptography`.

A CA folder holds `ca.key` (0600) and `ca.crt`, the list of revoked names
(`revoked`), the scheduler's own key and certificate (issued on its first start)
and the join tokens (`tokens/`).  Certificates carry the holder's name as the
common name and its role (user, worker, admin) as the organizational unit: the
name becomes the 9P user, the role picks what it may do.  Keys are ECDSA P-256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("user", "worker", "admin")
CA_DAYS = 3650
CERT_DAYS = 365


class CAError(Exception):
    """A CA operation that cannot be done; the text says why."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, hex: what a join token pins."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Write a secret: made 0600 before any byte lands."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def identity_of(cert: x509.Certificate) -> tuple[str, str]:
    """(name, role) from a certificate."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return (str(cn[0].value) if cn else "", str(ou[0].value) if ou else "")


def check_name(name: str) -> str:
    if not name or len(name) > 64 or name.startswith(".") or \
            not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise CAError(f"bad name {name!r}: use ASCII letters, digits, '-', '_' and '.' "
                      "(no look-alikes of another name)")
    return name


@dataclass
class CA:
    """An opened CA folder."""

    dir: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def init(cls, folder: str | Path) -> "CA":
        d = Path(folder)
        if (d / "ca.key").exists():
            raise CAError(f"{d} already holds a CA (ca.key)")
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             f"styxgrid CA {secrets.token_hex(4)}")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .sign(key, hashes.SHA256()))
        write_private(d / "ca.key", key_pem(key))
        (d / "ca.crt").write_bytes(cert_pem(cert))
        (d / "revoked").touch()
        (d / "tokens").mkdir(mode=0o700, exist_ok=True)
        return cls(d, key, cert)

    @classmethod
    def open(cls, folder: str | Path) -> "CA":
        d = Path(folder)
        try:
            key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
            cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
        except FileNotFoundError:
            raise CAError(f"{d} holds no CA: run 'styxgrid ca init --dir {d}'") from None
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(d, key, cert)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)

    def sign(self, public_key: ec.EllipticCurvePublicKey, name: str, role: str, *,
             server_names: tuple[str, ...] = (), days: int = CERT_DAYS,
             not_before: dt.datetime | None = None) -> x509.Certificate:
        """A certificate for `name` in `role` (or, with server_names, a server's)."""
        if role not in ROLES + ("scheduler",):
            raise CAError(f"bad role {role!r}: one of {', '.join(ROLES)}")
        check_name(name)
        if self.is_revoked(name):
            raise CAError(f"{name} is revoked")
        now = not_before or dt.datetime.now(dt.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else \
            ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(self.cert.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), False))
        if server_names:
            alt: list[x509.GeneralName] = []
            for n in server_names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), False)
        return builder.sign(self.key, hashes.SHA256())

    def issue(self, name: str, role: str, out: str | Path, *, days: int = CERT_DAYS) -> Path:
        """A new key and certificate for `name` (the admin's word: a name already
        issued is issued again), written as an identity folder."""
        key = new_key()
        cert = self.sign(key.public_key(), name, role, days=days)
        self.record(name, role)
        return write_identity(Path(out), key_pem(key), cert_pem(cert), cert_pem(self.cert))

    # ------------------------------------------------------------ names given out

    def issued(self) -> dict[str, str]:
        """name -> role of every certificate this CA gave out."""
        try:
            lines = (self.dir / "issued").read_text().splitlines()
        except FileNotFoundError:
            return {}
        return dict(line.split(None, 1) for line in lines if line.strip())

    def record(self, name: str, role: str) -> None:
        if self.issued().get(name) != role:
            with open(self.dir / "issued", "a") as f:
                f.write(f"{name} {role}\n")

    def sign_csr(self, csr_pem: bytes, role: str) -> x509.Certificate:
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CAError(f"bad certificate request: {exc}") from None
        if not csr.is_signature_valid:
            raise CAError("bad certificate request: signature does not verify")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names:
            raise CAError("certificate request names nobody (no common name)")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CAError("certificate request: only ECDSA keys are accepted")
        return self.sign(key, str(names[0].value), role)

    # ------------------------------------------------------------ revocation

    @property
    def revoked_path(self) -> Path:
        return self.dir / "revoked"

    def revoked(self) -> set[str]:
        try:
            return {line.strip() for line in self.revoked_path.read_text().splitlines()
                    if line.strip()}
        except FileNotFoundError:
            return set()

    def is_revoked(self, name: str) -> bool:
        return name in self.revoked()

    def revoke(self, name: str) -> None:
        check_name(name)
        if name not in self.revoked():
            with open(self.revoked_path, "a") as f:
                f.write(name + "\n")

    # ------------------------------------------------------------ the scheduler's own

    def scheduler_identity(self, hosts: tuple[str, ...] = ()) -> Path:
        """The scheduler's key and certificate, issued on first start (and again
        when a listen address is not among its names)."""
        out = self.dir / "scheduler"
        names = tuple(dict.fromkeys(("localhost", "127.0.0.1", "::1", socket.gethostname(),
                                     socket.getfqdn(), *hosts)))
        crt = out / "cert.pem"
        if crt.exists():
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            have = {str(v) for v in cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)} | \
                {str(v) for v in cert.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)}
            if all(n in have for n in hosts if n not in ("", "0.0.0.0", "::")):
                return out
        key = new_key()
        cert = self.sign(key.public_key(), "scheduler", "scheduler",
                         server_names=tuple(n for n in names if n not in ("", "0.0.0.0", "::")))
        return write_identity(out, key_pem(key), cert_pem(cert), cert_pem(self.cert))


def write_identity(out: Path, key: bytes, cert: bytes, ca: bytes) -> Path:
    """An identity folder: key.pem (0600), cert.pem, ca.pem."""
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    write_private(out / "key.pem", key)
    (out / "cert.pem").write_bytes(cert)
    (out / "ca.pem").write_bytes(ca)
    return out
