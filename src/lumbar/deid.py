"""Pseudonymisation of patient identifiers.

A pseudonym is the HMAC-SHA256 of the PatientID keyed with a secret, so the same patient keeps the
same pseudonym across builds that use the same secret, and nobody without the secret can recompute
or reverse it. The secret comes from an environment variable, never from the command line (which
would land in shell history, logs and pipeline parameters).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lumbar.errors import InputError

#: Environment variable read for the secret when none is named.
DEFAULT_SECRET_ENV = "LUMBAR_PSEUDONYM_SECRET"

PSEUDONYM_PREFIX = "S"
PSEUDONYM_HEX_LENGTH = 16


@dataclass(frozen=True)
class Pseudonymizer:
    """Maps patient identifiers to keyed, stable pseudonyms.

    Attributes:
        secret: The HMAC key (bytes). Never logged or written.
        ephemeral: True when the secret was generated for this build only.
    """

    secret: bytes = field(repr=False)
    ephemeral: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise InputError("the pseudonymisation secret must be at least 16 bytes long")

    def pseudonym(self, patient_id: str) -> str:
        """Return the pseudonym of ``patient_id`` (``S`` + 16 hex digits of its HMAC-SHA256)."""
        digest = hmac.new(self.secret, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_LENGTH]

    def token(self, text: str) -> str:
        """Return a keyed, non-reversible token for any other identifying string (paths, UIDs)."""
        return hmac.new(self.secret, b"token:" + text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    @classmethod
    def from_env(cls, variable: str | None = None, environ: Mapping[str, str] | None = None) -> Pseudonymizer:
        """Build a pseudonymizer from a secret in the environment.

        Args:
            variable: The variable to read. When None, :data:`DEFAULT_SECRET_ENV` is used if set,
                otherwise a random secret is generated for this build (pseudonyms then differ
                between builds).
            environ: The environment (defaults to ``os.environ``).

        Raises:
            InputError: If ``variable`` is named but unset or empty.
        """
        env = os.environ if environ is None else environ
        if variable is not None:
            value = env.get(variable, "")
            if not value:
                raise InputError(f"environment variable {variable} (named by --key-secret-env) is not set or empty")
            return cls(value.encode("utf-8"))
        value = env.get(DEFAULT_SECRET_ENV, "")
        if value:
            return cls(value.encode("utf-8"))
        return cls(secrets.token_bytes(32), ephemeral=True)


def scrub(text: str, replacements: Mapping[str, str]) -> str:
    """Replace every occurrence of each identifier in ``text`` by its pseudonym (longest first, case-insensitive)."""
    for needle in sorted(replacements, key=len, reverse=True):
        if needle:
            text = re.sub(re.escape(needle), replacements[needle], text, flags=re.IGNORECASE)
    return text


def name_variants(patient_name: str) -> Iterable[str]:
    """Return the spellings of a DICOM person name that may appear in folder names (``DOE^JANE``, ``DOE JANE``...)."""
    name = patient_name.strip().strip("^")
    if not name:
        return []
    parts = [p for p in re.split(r"[\^ ]+", name) if p]
    variants = {name, " ".join(parts), "_".join(parts), "^".join(parts), "".join(parts), ",".join(parts)}
    return sorted(v for v in variants if len(v) >= 4)
