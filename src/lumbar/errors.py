"""Exceptions with messages meant for people: one sentence naming the file, row or field."""

from __future__ import annotations

from collections.abc import Iterable


class LumbarError(Exception):
    """Base class for errors the CLI reports as one line instead of a traceback."""


class InputError(LumbarError):
    """Bad user input: a missing file, an unreadable table, an invalid option value."""


class LabelError(InputError):
    """A grading (labels) file that cannot be used; carries every problem found."""

    def __init__(self, message: str, problems: list | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


def check_choice(kind: str, value: str, choices: Iterable[str]) -> None:
    """Raise :class:`InputError` naming the choices when ``value`` is not one of ``choices``.

    Args:
        kind: What the value names, for the message (``backbone``, ``mode``).
        value: The value given.
        choices: The valid values (a registry's keys), in the order the message lists them.
    """
    names = tuple(choices)
    if value not in names:
        raise InputError(f"unknown {kind} {value!r}; choose one of {', '.join(names)}")
