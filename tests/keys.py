"""The test session's supervisor key pair: made once, on disk for the worker processes, and
as a signer for tests that publish governance facts as the supervisor would."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from schemas.events import GovernanceFact
from streams.core.signing import FactSigner, FactVerifier
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_signer, write_key_pair

F = TypeVar("F", bound=GovernanceFact)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @classmethod
    def fresh(cls) -> KeyPair:
        """A new pair in a directory removed when the session ends."""
        directory = Path(tempfile.mkdtemp(prefix="metasup-test-key-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        pair = cls(directory / "supervisor.key", directory / "supervisor.pub")
        write_key_pair(pair.private, pair.public)
        return pair

    @cached_property
    def signer(self) -> FactSigner:
        return load_signer(
            Settings(
                METASUP_SUPERVISOR_KEY_FILE=self.private,
                METASUP_SUPERVISOR_PUBLIC_KEY_FILE=self.public,
            )
        )

    @property
    def verifier(self) -> FactVerifier:
        return self.signer.verifier


SUPERVISOR_KEY = KeyPair.fresh()


def signed(fact: F) -> F:
    """`fact` signed with the session's supervisor key, as the supervisor writes it."""
    return SUPERVISOR_KEY.signer.sign(fact)
