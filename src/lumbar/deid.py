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

from lumbar.errors import InputError, LumbarError

#: Environment variable read for the secret when none is named.
DEFAULT_SECRET_ENV = "LUMBAR_PSEUDONYM_SECRET"

PSEUDONYM_PREFIX = "S"
PSEUDONYM_HEX_LENGTH = 16
#: The published key ``lumbar demo`` pseudonymises its made-up patients with, so every demo splits them the
#: same way. Anyone can reverse pseudonyms made with it: it is accepted only for exports ``lumbar synth``
#: wrote (:func:`lumbar.dataset_c.check_demo_key`).
DEMO_SECRET = "lumbar-demo-synthetic-patients-only"
#: The published key for public datasets whose patient ids are already public numbers, not identifiers
#: (SPIDER's 1-257): pseudonyms made with it hide nothing, they only make every import split the same
#: way. ``lumbar dataset import spider`` uses it unless given another key; no PACS export may use it.
PUBLIC_DATA_SECRET = "lumbar-public-datasets-ids-are-public"

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

    @property
    def is_demo(self) -> bool:
        """Whether the secret is the published demo key (:data:`DEMO_SECRET`)."""
        return hmac.compare_digest(self.secret, DEMO_SECRET.encode("utf-8"))

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


class IdentifierLeakError(LumbarError):
    """An output about to be written holds a patient identifier (a bug: outputs are built from keyed values)."""


_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


class IdentifierGuard:
    """The last check before an output is written: does it hold a known identifier as a whole word sequence?

    Outputs are built from keyed values (pseudonyms, file tokens, fixed sentences and numbers), so this
    guard should never fire; when it does, the output is refused, never rewritten. An identifier is
    matched as its sequence of words (letters and digits, case-folded), so ``DOE^JANE`` is found in
    ``Doe Jane`` but ``12`` is not found in ``123``. Identifiers made only of digits are not searched
    for: outputs are full of counts and frame numbers, and a numbered research export (PatientID 1, 2,
    3...) would match them all; those IDs are kept out by construction. The check costs time linear in
    the text's words (times the few identifiers that share a first word).
    """

    def __init__(self, identifiers: Iterable[str]) -> None:
        """Index the identifiers by their first word.

        Args:
            identifiers: PatientIDs, spellings of names, any text that must not appear.
        """
        self._by_first: dict[str, set[tuple[str, ...]]] = {}
        for identifier in identifiers:
            words = tuple(_words(identifier))
            if not words or all(w.isdigit() for w in words):
                continue
            self._by_first.setdefault(words[0], set()).add(words)

    def found_in(self, text: str) -> bool:
        """Whether ``text`` holds an identifier as a whole word sequence."""
        if not self._by_first:
            return False
        words = _words(text)
        for i, word in enumerate(words):
            for candidate in self._by_first.get(word, ()):
                if tuple(words[i : i + len(candidate)]) == candidate:
                    return True
        return False

    def check_json(self, value: object, output: str, where: str = "") -> None:
        """Refuse a JSON-like value (dicts, lists, strings) whose keys or strings hold an identifier.

        Raises:
            IdentifierLeakError: Naming the output and the field (never the identifier).
        """
        stack: list[tuple[object, str]] = [(value, where)]
        while stack:
            item, path = stack.pop()
            if isinstance(item, str):
                if self.found_in(item):
                    self._refuse(output, path or "(the whole value)")
            elif isinstance(item, dict):
                for key, child in item.items():
                    child_path = f"{path}.{key}" if path else str(key)
                    if isinstance(key, str) and self.found_in(key):
                        self._refuse(output, f"the name of field {child_path}")
                    stack.append((child, child_path))
            elif isinstance(item, list | tuple):
                stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))

    def check_text(self, text: str, output: str) -> None:
        """Refuse a text output that holds an identifier, naming its line.

        Raises:
            IdentifierLeakError: Naming the output and the line (never the identifier).
        """
        for number, line in enumerate(text.splitlines(), start=1):
            if self.found_in(line):
                self._refuse(output, f"line {number}")

    @staticmethod
    def _refuse(output: str, where: str) -> None:
        raise IdentifierLeakError(
            f"{output} would hold a patient identifier in {where}; nothing was written or published "
            "(this is a bug in lumbar: please report it without the data)"
        )


def name_variants(patient_name: str) -> Iterable[str]:
    """Return the spellings of a DICOM person name that may appear in folder names (``DOE^JANE``, ``DOE JANE``...)."""
    name = patient_name.strip().strip("^")
    if not name:
        return []
    parts = [p for p in re.split(r"[\^ ]+", name) if p]
    variants = {name, " ".join(parts), "_".join(parts), "^".join(parts), "".join(parts), ",".join(parts)}
    return sorted(v for v in variants if len(v) >= 4)
