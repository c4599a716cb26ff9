"""Identity folders: a key, its certificate and the grid CA's certificate, kept
under the user's config folder (key 0600), plus the scheduler address they are for.

    ~/.config/styxgrid/user/            what `styxgrid login` made
    ~/.config/styxgrid/worker-NAME/     what `styxgrid worker --join` made
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .ca import identity_of


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "styxgrid"


def user_identity_dir() -> Path:
    return Path(os.environ.get("STYXGRID_IDENTITY") or config_dir() / "user")


def worker_identity_dir(name: str) -> Path:
    return config_dir() / f"worker-{name}"


@dataclass(frozen=True)
class Identity:
    dir: Path

    @property
    def cert(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def key(self) -> Path:
        return self.dir / "key.pem"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    def exists(self) -> bool:
        return self.cert.exists() and self.key.exists() and self.ca.exists()

    def name_and_role(self) -> tuple[str, str]:
        return identity_of(x509.load_pem_x509_certificate(self.cert.read_bytes()))

    @property
    def scheduler(self) -> str | None:
        """The scheduler address this identity was made for, if recorded."""
        try:
            return (self.dir / "scheduler").read_text().strip() or None
        except FileNotFoundError:
            return None

    def remember_scheduler(self, addr: str) -> None:
        (self.dir / "scheduler").write_text(addr + "\n")
