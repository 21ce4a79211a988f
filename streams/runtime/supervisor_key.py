"""The supervisor's Ed25519 key pair on disk (PEM): made once, the private key readable by its
owner only.

The private key stays where the supervisor runs (`metasup up` and its workers, by default
<data_dir>/supervisor.key, mode 600); the public key (<data_dir>/supervisor.pub) is what
every reader verifies governance facts with, and may be copied anywhere. `metasup up` and
every worker create the pair when it is missing, so a fresh clone runs with no
configuration; workers that must agree share one data dir or point
METASUP_SUPERVISOR_KEY_FILE at the same file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streams.core.signing import FactSigner, FactVerifier
from streams.runtime.settings import Settings


class SupervisorKeyError(RuntimeError):
    """A missing or unusable key file; the message says what to do."""


def _write(path: Path, data: bytes, mode: int, replace: bool) -> bool:
    """Write `data` to `path` atomically with `mode`; without `replace`, an existing file
    wins (two workers starting at once end up with one key). True when written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_key_pair(private_path: Path, public_path: Path, replace: bool = False) -> bool:
    """Generate a key pair into the two files (private mode 600, public 644). Without
    `replace` an existing private key is kept. True when a new key was written."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    created = _write(private_path, private_pem, 0o600, replace)
    if created:
        _write(public_path, _public_pem(key.public_key()), 0o644, replace=True)
    return created


def ensure_key_pair(settings: Settings) -> bool:
    """Create the supervisor's key pair when its private key is missing (and the public key
    when only that is missing). True when a new key was made."""
    private_path, public_path = (
        settings.supervisor_key_path(),
        settings.supervisor_public_key_path(),
    )
    created = not private_path.exists() and write_key_pair(private_path, public_path)
    if not public_path.exists():
        public_pem = _public_pem(_read_private(private_path).public_key())
        _write(public_path, public_pem, 0o644, replace=True)
    return created


def _load_key(path: Path, what: str, when_missing: str) -> object:
    """The PEM key in `path` (private or public, per `what`); SupervisorKeyError says what
    is wrong, and what to do when the file is missing."""
    try:
        data = path.read_bytes()
        if what == "private key":
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except FileNotFoundError:
        raise SupervisorKeyError(f"no supervisor {what} at {path}: {when_missing}") from None
    except ValueError as error:
        raise SupervisorKeyError(f"{path} is not a PEM {what}: {error}") from None


def _not_ed25519(path: Path, key: object) -> SupervisorKeyError:
    return SupervisorKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")


def _read_private(path: Path) -> Ed25519PrivateKey:
    key = _load_key(
        path,
        "private key",
        "run `metasup keys supervisor` where the supervisor runs (`metasup up` makes one "
        "when missing), or set METASUP_SUPERVISOR_KEY_FILE",
    )
    if not isinstance(key, Ed25519PrivateKey):
        raise _not_ed25519(path, key)
    return key


def read_public_key(path: Path) -> FactVerifier:
    """The verifier of the public key in `path`; SupervisorKeyError says how to get one."""
    key = _load_key(
        path,
        "public key",
        "governance facts (kills, policy) are verified with it. Copy supervisor.pub from "
        "where the supervisor runs (its data dir) here, or set "
        "METASUP_SUPERVISOR_PUBLIC_KEY_FILE",
    )
    if not isinstance(key, Ed25519PublicKey):
        raise _not_ed25519(path, key)
    return FactVerifier(key)


def load_verifier(settings: Settings) -> FactVerifier:
    """What a reader verifies with: the public key file of the settings."""
    return read_public_key(settings.supervisor_public_key_path())


def load_signer(settings: Settings) -> FactSigner:
    """The supervisor's signer. Refuses a public key file that does not match the private
    key: every reader would then reject every fact as forged."""
    signer = FactSigner(_read_private(settings.supervisor_key_path()))
    public_path = settings.supervisor_public_key_path()
    if public_path.exists():
        published = read_public_key(public_path).public_key
        if published.public_bytes_raw() != signer.verifier.public_key.public_bytes_raw():
            raise SupervisorKeyError(
                f"the public key {public_path} does not belong to the private key "
                f"{settings.supervisor_key_path()}: readers would reject every fact; "
                "delete the public key file to have it written again"
            )
    return signer
