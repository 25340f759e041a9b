"""Exceptions with messages meant for people: one sentence naming the file, row or field."""

from __future__ import annotations


class LumbarError(Exception):
    """Base class for errors the CLI reports as one line instead of a traceback."""


class InputError(LumbarError):
    """Bad user input: a missing file, an unreadable table, an invalid option value."""


class LabelError(InputError):
    """A grading (labels) file that cannot be used; carries every problem found."""

    def __init__(self, message: str, problems: list | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])
