"""Join tokens: how a new worker or user gets a certificate without anyone handling
one by hand.

A token is `sgj1.ID.SECRET.FINGERPRINT`: the scheduler keeps only a hash of the
secret, with the role, the expiry and the uses left (CA/tokens/ID.json); the
fingerprint is the CA certificate's SHA-256, so the newcomer can pin the CA on its
very first connection.  Each use is counted when it is spent; a token past its
uses or its time is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass

from .ca import CA, ROLES, CAError

PREFIX = "sgj1"
_TOKEN = re.compile(r"^sgj1\.([0-9a-f]{16})\.([0-9A-Za-z_-]{20,})\.([0-9a-f]{64})$")


class TokenError(CAError):
    """A token that cannot be used; the text says why."""


@dataclass(frozen=True)
class Token:
    id: str
    secret: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{PREFIX}.{self.id}.{self.secret}.{self.fingerprint}"

    @classmethod
    def parse(cls, text: str) -> "Token":
        m = _TOKEN.match(text.strip())
        if not m:
            raise TokenError("not a styxgrid join token (sgj1.ID.SECRET.FINGERPRINT)")
        return cls(m.group(1), m.group(2), m.group(3))


def parse_ttl(text: str) -> float:
    """`90s`, `15m`, `1h`, `2d` (or plain seconds) in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not m:
        raise TokenError(f"bad duration {text!r}: want e.g. 30m, 1h, 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(ca: CA, role: str, *, ttl: float = 3600, uses: int = 1) -> Token:
    if role not in ("user", "worker"):
        raise TokenError(f"bad role {role!r}: tokens are for user or worker")
    if uses < 1:
        raise TokenError("uses must be at least 1")
    token = Token(secrets.token_hex(8), secrets.token_urlsafe(24), ca.fingerprint)
    record = {"hash": _hash(token.secret), "role": role, "expires": time.time() + ttl,
              "uses": uses}
    path = ca.dir / "tokens" / f"{token.id}.json"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    return token


def spend(ca: CA, text: str) -> str:
    """Check a token and use it up once; returns its role."""
    token = Token.parse(text)
    if token.fingerprint != ca.fingerprint:
        raise TokenError("token is for another grid (CA fingerprint differs)")
    path = ca.dir / "tokens" / f"{token.id}.json"
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        raise TokenError("unknown token") from None
    if not hmac.compare_digest(record["hash"], _hash(token.secret)):
        raise TokenError("unknown token")
    if time.time() > record["expires"]:
        raise TokenError("token expired")
    if record["uses"] < 1:
        raise TokenError("token already used up")
    record["uses"] -= 1
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    if record["role"] not in ROLES:
        raise TokenError("token has a bad role")
    return record["role"]
