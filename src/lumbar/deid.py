"""Pseudonymisation of patient identifiers.

A pseudonym is the HMAC-SHA256 of the PatientID keyed with a secret, so the same patient keeps the
same pseudonym across builds that use the same secret, and nobody without the secret can recompute
or reverse it. The secret comes from an environment variable, never from the command line (which
would land in shell history, logs and pipeline parameters).
"""

from __future__ import annotations

import hashlib
import hmac
import math
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
#: Prefix of a file token (the keyed stand-in for a source path or UID in every output).
TOKEN_PREFIX = "F"

#: Words that mark a secret as a placeholder copied from documentation (matched without punctuation or case).
PLACEHOLDER_WORDS: tuple[str, ...] = (
    "example",
    "changeme",
    "secret",
    "password",
    "placeholder",
    "replace",
    "dummy",
    "default",
    "sample",
)
#: Least estimated entropy (bits: Shannon entropy of the characters times the length) a secret must have.
MIN_SECRET_BITS = 36.0


def secret_bits(value: str) -> float:
    """Estimate a secret's entropy in bits: the Shannon entropy of its characters times its length.

    A random 16-character hexadecimal string scores about 55 bits (below 36 about once in a thousand),
    ``aaaaaaaaaaaaaaaaaaaa`` 0 and ``abcabcabcabcabcabc`` 29: the estimate catches repetition and tiny
    alphabets, not every guessable phrase.
    """
    if not value:
        return 0.0
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    n = len(value)
    return -n * sum(c / n * math.log2(c / n) for c in counts.values())


def check_secret(value: str, variable: str) -> None:
    """Refuse a pseudonymisation secret that is a known placeholder, too short or of too little entropy.

    Args:
        value: The secret.
        variable: The environment variable it came from (named in the message, the value never is).

    Raises:
        InputError: With one sentence saying what is wrong and how to make a good secret.
    """
    how = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    squashed = re.sub(r"[^a-z0-9]", "", value.lower())
    word = next((w for w in PLACEHOLDER_WORDS if w in squashed), None)
    if word is not None:
        raise InputError(
            f"the pseudonymisation secret in {variable} looks like a placeholder (it contains {word!r}); {how}"
        )
    if len(value.encode("utf-8")) < 16:
        raise InputError(f"the pseudonymisation secret in {variable} is shorter than 16 bytes; {how}")
    bits = secret_bits(value)
    if bits < MIN_SECRET_BITS:
        raise InputError(
            f"the pseudonymisation secret in {variable} has too little entropy (about {bits:.0f} bits, "
            f"{MIN_SECRET_BITS:.0f} needed); {how}"
        )


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

    def token(self, text: str | bytes) -> str:
        """Return a keyed, non-reversible token for any other identifying string (paths, UIDs).

        A ``str`` is encoded as the file system does (``os.fsencode``), so a file name that is not
        valid UTF-8 (read back with surrogate escapes) gets a token like any other.
        """
        data = text if isinstance(text, bytes) else os.fsencode(text)
        return hmac.new(self.secret, b"token:" + data, hashlib.sha256).hexdigest()[:16]

    def file_token(self, relpath: str) -> str:
        """Return the token that names an input file in every output (``F`` + 16 hex digits)."""
        return TOKEN_PREFIX + self.token(relpath)

    @classmethod
    def from_env(cls, variable: str | None = None, environ: Mapping[str, str] | None = None) -> Pseudonymizer:
        """Build a pseudonymizer from a secret in the environment.

        Args:
            variable: The variable to read. When None, :data:`DEFAULT_SECRET_ENV` is used if set,
                otherwise a random secret is generated for this build (pseudonyms then differ
                between builds).
            environ: The environment (defaults to ``os.environ``).

        Raises:
            InputError: If ``variable`` is named but unset or empty, or the secret is refused by
                :func:`check_secret` (a placeholder, too short, too little entropy).
        """
        env = os.environ if environ is None else environ
        if variable is not None:
            value = env.get(variable, "")
            if not value:
                raise InputError(f"environment variable {variable} (named by --key-secret-env) is not set or empty")
            check_secret(value, variable)
            return cls(value.encode("utf-8"))
        value = env.get(DEFAULT_SECRET_ENV, "")
        if value:
            check_secret(value, DEFAULT_SECRET_ENV)
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
