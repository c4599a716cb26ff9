"""TLS for the scheduler's one TCP port: TLS 1.3 only, certificates from the grid CA.

The server asks every client for a certificate.  A client without one gets a
connection that can only enrol (spend a join token for a certificate); every
other client must present one signed by the grid CA, not expired and not
revoked.  Its name is the 9P user and its role what that user may do.
"""

from __future__ import annotations

import ssl
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ..ninep.transport import TLSTransport
from .ca import CAError, fingerprint, identity_of
from .identity import Identity

HANDSHAKE_TIMEOUT = 10.0


def server_context(identity: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(identity.cert, identity.key)
    ctx.load_verify_locations(identity.ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL          # no certificate: enrolment only
    return ctx


def client_context(identity: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(identity.ca)
    ctx.load_cert_chain(identity.cert, identity.key)
    return ctx


def pinning_context() -> ssl.SSLContext:
    """For enrolment: the CA is not known yet; the server's certificate is checked
    afterwards against the fingerprint in the token (`check_pinned`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_pinned(server_der: bytes, ca_pem: bytes, expected: str) -> None:
    """The CA the server sent is the one the token names, and it signed the server's
    certificate: otherwise someone is in the middle."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    if fingerprint(ca) != expected:
        raise CAError("the scheduler's CA is not the one the token names: someone may "
                      "be in the middle, or the token is for another grid")
    leaf = x509.load_der_x509_certificate(server_der)
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert leaf.signature_hash_algorithm is not None
    try:
        key.verify(leaf.signature, leaf.tbs_certificate_bytes,
                   ec.ECDSA(leaf.signature_hash_algorithm))
    except Exception:  # cryptography raises InvalidSignature
        raise CAError("the scheduler's certificate is not signed by the CA the token "
                      "names: someone may be in the middle") from None


async def accept(stream: trio.SocketStream,
                 ctx: ssl.SSLContext) -> tuple[TLSTransport, dict[str, Any]]:
    """Server side of the handshake; returns the TLS transport and what it proved."""
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        tls = await TLSTransport.handshake(stream, ctx, server_side=True)
    der = tls.getpeercert(binary_form=True)
    peer: dict[str, Any] = {"transport": "tls", "name": None, "role": None}
    if der:
        name, role = identity_of(x509.load_der_x509_certificate(der))
        peer.update(name=name, role=role)
    return tls, peer


async def connect(host: str, port: int, ctx: ssl.SSLContext,
                  server_hostname: str | None = None) -> TLSTransport:
    tcp = await trio.open_tcp_stream(host, port)
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            return await TLSTransport.handshake(tcp, ctx, server_side=False,
                                                server_hostname=server_hostname or host)
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
