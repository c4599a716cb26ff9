"""Enrolment: a newcomer spends a join token for a certificate, over 9P.

On the scheduler's TLS port a client with no certificate may attach `join`, which
serves two files: `ca` (the CA's certificate) and `join` (write `token TOKEN`
and a certificate request; read back the certificate).  The client first reads
`ca`, checks it against the fingerprint in its token and checks that the CA
signed the server's certificate, and only then sends the token: a man in the
middle learns nothing it can use.  A name already given out is refused.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ..ninep.client import open_client
from ..ninep.errors import EPERM, NinePError
from ..ninep.messages import ORDWR
from ..ninep.synthetic import BytesHandle, File, StaticDir, everyone
from ..ninep.tree import Handle, Node
from . import tls, tokens
from .ca import CA, CAError, cert_pem, check_name, identity_of, key_pem, new_key, write_identity
from .identity import Identity


class _JoinHandle(Handle):
    """Write `token TOKEN` then a PEM certificate request; read the certificate."""

    def __init__(self, ca: CA) -> None:
        self.ca = ca
        self.issued = b""

    def read_nowait(self, offset: int, count: int) -> bytes:
        if not self.issued:
            raise NinePError("nothing issued yet: write 'token TOKEN' and a request first")
        return self.issued[offset:offset + count]

    def write_nowait(self, offset: int, data: bytes) -> int:
        text = data.decode(errors="replace")
        first, _, csr = text.partition("\n")
        words = first.split()
        if len(words) != 2 or words[0] != "token":
            raise NinePError("want 'token TOKEN' and then the certificate request")
        try:
            csr_obj = x509.load_pem_x509_csr(csr.encode())
            names = csr_obj.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            name = check_name(str(names[0].value)) if names else ""
            if not name or name in self.ca.issued() or name in reserved_names():
                raise CAError(f"{EPERM}: the name {name!r} is taken")
            role = tokens.spend(self.ca, words[1])
            cert = self.ca.sign_csr(csr.encode(), role)
            self.ca.record(name, role)
        except (CAError, ValueError) as exc:
            raise NinePError(str(exc)) from None
        self.issued = cert_pem(cert)
        return len(data)


def reserved_names() -> set[str]:
    """Names no one may enrol under: they would read as someone with more rights
    (root, the scheduler's own user, the owner of the tree's files)."""
    return {"root", "scheduler", "grid", "admin", "nobody", pwd.getpwuid(os.getuid()).pw_name}


def enrol_root(ca: CA) -> Node:
    """The tree a certificate-less TLS client sees when it attaches `join`."""
    root = StaticDir("/", 0, permit=everyone)
    root.add(File("ca", 1, root, lambda s, m: BytesHandle(cert_pem(ca.cert)), 0o666, everyone))
    root.add(File("join", 2, root, lambda s, m: _JoinHandle(ca), 0o666, everyone))
    return root


async def enrol(host: str, port: int, token_text: str, name: str, out: Path) -> Identity:
    """Spend a token at the scheduler for a certificate named `name`; the key never
    leaves this machine.  Writes the identity folder `out`."""
    token = tokens.Token.parse(token_text)
    check_name(name)
    key = new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    stream = await tls.connect(host, port, tls.pinning_context())
    server_der = stream.getpeercert(binary_form=True)
    async with open_client(stream, uname=name, aname="join") as client:
        ca_pem = await client.read_file("ca")
        tls.check_pinned(server_der, ca_pem, token.fingerprint)
        f = await client.open("join", ORDWR)
        async with f:
            await f.pwrite(0, f"token {token}\n".encode() +
                           csr.public_bytes(serialization.Encoding.PEM))
            issued = await f.pread(0, 65536)
    cert = x509.load_pem_x509_certificate(issued)
    if identity_of(cert)[0] != name:
        raise CAError("the scheduler issued a certificate for another name")
    write_identity(out, key_pem(key), issued, ca_pem)
    return Identity(out)

