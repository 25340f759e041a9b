"""The grading file (the paper's FaLa grading, Tables 3 and 4): loading and validation.

One row per patient and disc::

    patient_id,disc,disc_state,herniation,scs,rfs,lfs
    P000001,L45,2,0,1,0,1

``disc`` is one of ``L12, L23, L34, L45, L51``; every grade is one of the values its field's vocabulary
allows (Table 3: 0-3), written as plain ASCII digits (``+1``, ``0_3``, ``٣`` or ``３`` are refused). The
binary target of the paper is normal (``disc_state == 0``) versus abnormal (1-3).

The file is read only when it is a regular file (a named pipe would block the reader). A cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a leading ``'`` so a
spreadsheet shows it as text instead of running it as a formula, and read back without it.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lumbar.errors import LabelError
from lumbar.paths import file_kind
from lumbar.selection import DISC_LEVELS, DISCS

GRADE_FIELDS: tuple[str, ...] = ("disc_state", "herniation", "scs", "rfs", "lfs")
COLUMNS: tuple[str, ...] = ("patient_id", "disc", *GRADE_FIELDS)

#: Grade names per field (Table 3).
GRADE_NAMES: dict[str, tuple[str, str, str, str]] = {
    "disc_state": ("normal", "degeneration", "bulge", "herniation"),
    "herniation": ("none", "normal", "migration", "sequestration"),
    "scs": ("normal", "mild", "moderate", "severe"),
    "rfs": ("normal", "mild", "moderate", "severe"),
    "lfs": ("normal", "mild", "moderate", "severe"),
}

#: The values each grade may take (Table 3); other targets (e.g. Pfirrmann grades 1-5) declare their own.
GRADE_VALUES: dict[str, tuple[int, ...]] = {name: (0, 1, 2, 3) for name in GRADE_FIELDS}

FIELD_TITLES: dict[str, str] = {
    "disc_state": "Disc state",
    "herniation": "Herniation type",
    "scs": "Spinal canal stenosis",
    "rfs": "Right foraminal stenosis",
    "lfs": "Left foraminal stenosis",
}

_DISC_ALIASES: dict[str, str] = {
    **{d.upper(): d for d in DISCS},
    **{level.upper(): d for d, level in DISC_LEVELS.items()},
    **{level.replace("-", "").upper(): d for d, level in DISC_LEVELS.items()},
}


@dataclass(frozen=True)
class Grades:
    """The five grades of one disc."""

    disc_state: int
    herniation: int
    scs: int
    rfs: int
    lfs: int

    @property
    def label(self) -> int:
        """Binary target: 0 normal, 1 abnormal (any disc state other than normal)."""
        return int(self.disc_state != 0)

    def as_dict(self) -> dict[str, int]:
        """Return the grades as a field -> value mapping."""
        return asdict(self)


@dataclass(frozen=True)
class LabelProblem:
    """One bad value in the grading file.

    Attributes:
        line: 1-based line number in the file (the header is line 1).
        field: The column name.
        value: The offending value as written (shown to the file's own user; see :meth:`public` for outputs).
        reason: Why it was rejected: a fixed sentence that never repeats a value of the file.
        patient_id: The row's patient id as written ("" when there is none), to name the row by pseudonym.
    """

    line: int
    field: str
    value: str
    reason: str
    patient_id: str = ""

    def __str__(self) -> str:
        lines = self.value.splitlines()
        shown = lines[0][:40] + ("..." if len(lines) > 1 or len(lines[0]) > 40 else "") if lines else ""
        return f"line {self.line}, field {self.field!r}, value {shown!r}: {self.reason}"

    def public(self, pseudonym: str | None, withheld: set[str] | frozenset[str] = frozenset()) -> dict[str, object]:
        """The problem as an output may show it: the patient by pseudonym, the value only when it is harmless.

        A value is shown when it is at most 8 printable ASCII characters (a mistyped grade or disc) and is
        not one of ``withheld`` (the identifiers the build knows); patient ids and anything longer are
        described, never copied.

        Args:
            pseudonym: The pseudonym of the row's patient, or None when the row has no patient id.
            withheld: Case-folded identifiers that must not be shown.
        """
        value = self.value
        if self.field == "patient_id" or value.casefold() in withheld or not _HARMLESS.fullmatch(value):
            value = f"(withheld: {len(self.value)} characters)" if self.value else ""
        return {"line": self.line, "field": self.field, "value": value, "patient": pseudonym, "reason": self.reason}


_HARMLESS = re.compile(r"[ -~]{0,8}")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a leading ``'`` before a formula-like start."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _unescape_cell(value: str) -> str:
    """Undo :func:`spreadsheet_cell` on a value read back."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


def parse_grade(raw: str, allowed: Sequence[int]) -> int | None:
    """A grade written as plain ASCII digits naming one of ``allowed``, else None.

    ``"2"`` and ``" 2 "`` give 2; ``"+2"``, ``"02"``, ``"2.0"``, ``"0_2"`` and non-ASCII digits (``"٢"``,
    ``"２"``) give None, though Python's ``int`` accepts several of them.
    """
    text = raw.strip(" \t")
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if text in {str(v) for v in allowed} else None


def normalise_disc(value: str) -> str | None:
    """Return the disc code for ``value`` (``L45``, ``l45``, ``L4-L5``, ``L4L5``), or None if unknown."""
    return _DISC_ALIASES.get(value.strip().upper())


def _spanned(value: str) -> int:
    """How many further lines a quoted value ran over (a newline closing the file is not one)."""
    return value.count("\n") - value.endswith("\n")


def parse_labels(
    rows: Iterable[Mapping[str | None, object]],
    first_line: int = 2,
    lines: Iterable[int] | None = None,
    seen: dict[tuple[str, str], int] | None = None,
) -> tuple[dict[tuple[str, str], Grades], list[LabelProblem]]:
    """Validate grading rows and return the good ones with every problem found.

    Args:
        rows: Mappings with the columns of :data:`COLUMNS` (as read by ``csv.DictReader``; values a
            row has beyond the header are under the key ``None``).
        first_line: Line number of the first row, for the problem messages (when ``lines`` is None).
        lines: The line number of each row (a quoted value may span lines), instead of counting.
        seen: Filled with the line of each accepted ``(patient_id, disc)``.

    Returns:
        ``(grades, problems)``: grades keyed by ``(patient_id, disc)`` for the valid rows, and one
        :class:`LabelProblem` per bad value. A row with any bad value, with more fields than the
        header, or with a value running over several lines (an unclosed quote) is left out entirely
        and reported once for that; a duplicated patient/disc keeps its first occurrence.
    """
    grades: dict[tuple[str, str], Grades] = {}
    first_seen: dict[tuple[str, str], int] = {} if seen is None else seen
    problems: list[LabelProblem] = []
    numbers = iter(lines) if lines is not None else None
    for count, row in enumerate(rows):
        line = next(numbers) if numbers is not None else first_line + count  # type: ignore[arg-type]
        patient = _unescape_cell(str(row.get("patient_id") or "").strip())
        spanning = next((f for f in COLUMNS if "\n" in str(row.get(f) or "")), None)
        if spanning is not None:
            value = str(row.get(spanning))
            extent = _spanned(value)
            problems.append(
                LabelProblem(
                    line,
                    spanning,
                    value,
                    f"a quote opened in this value is not closed on its line; the next {extent} line(s) were read "
                    "into it (close the quote or remove it)",
                    "" if spanning == "patient_id" else patient,
                )
            )
            continue
        extra = row.get(None)
        if extra:
            values = [str(v) for v in extra] if isinstance(extra, list) else [str(extra)]
            problems.append(
                LabelProblem(
                    line,
                    "(extra fields)",
                    ",".join(values),
                    f"the row has {len(values)} field(s) more than the header's columns (an unquoted comma?)",
                    patient,
                )
            )
            continue
        row_problems: list[LabelProblem] = []
        if not patient:
            row_problems.append(LabelProblem(line, "patient_id", patient, "empty patient id"))
        raw_disc = _unescape_cell(str(row.get("disc") or "").strip())
        disc = normalise_disc(raw_disc)
        if disc is None:
            row_problems.append(
                LabelProblem(line, "disc", raw_disc, f"unknown disc; expected one of {', '.join(DISCS)}", patient)
            )
        values: dict[str, int] = {}
        for field in GRADE_FIELDS:
            raw = str(row.get(field) or "")
            allowed = GRADE_VALUES[field]
            value = parse_grade(raw, allowed)
            if value is None:
                shown = ", ".join(map(str, allowed))
                row_problems.append(
                    LabelProblem(
                        line, field, raw.strip(), f"not a grade: expected one of {shown} in ASCII digits", patient
                    )
                )
                continue
            values[field] = value
        if row_problems:
            problems.extend(row_problems)
            continue
        key = (patient, disc)
        if key in grades:
            problems.append(
                LabelProblem(
                    line,
                    "disc",
                    raw_disc,
                    f"this patient's disc {disc} is graded twice (first on line {first_seen[key]})",
                    patient,
                )
            )
            continue
        grades[key] = Grades(**values)
        first_seen[key] = line
    return grades, problems


def _open_regular(path: Path):  # type: ignore[no-untyped-def]
    """Open a grading file for reading only when it is a regular file (never blocking on a named pipe).

    Raises:
        FileNotFoundError: When it does not exist.
        LabelError: When it is a pipe, socket, device or folder.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise LabelError(f"labels file {path} is a {file_kind(mode)}; give a CSV file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return open(fd, newline="", encoding="utf-8-sig")


def load_labels(
    path: str | Path, strict: bool = False, seen: dict[tuple[str, str], int] | None = None
) -> tuple[dict[tuple[str, str], Grades], list[LabelProblem]]:
    """Load and validate a grading CSV file.

    Args:
        path: The CSV file.
        strict: Raise :class:`LabelError` listing every problem instead of returning them.
        seen: Filled with the line of each accepted ``(patient_id, disc)``.

    Returns:
        ``(grades, problems)`` as in :func:`parse_labels`.

    Raises:
        LabelError: If the file is missing, unreadable, lacks required columns, or (``strict``) has
            any bad row.
    """
    path = Path(path)
    try:
        with _open_regular(path) as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in COLUMNS if name not in header]
            if missing:
                raise LabelError(
                    f"labels file {path} lacks the column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
                )
            reader.fieldnames = header
            rows: list[dict] = []
            lines: list[int] = []
            for row in reader:
                rows.append(row)
                spread = sum(_spanned(v) for v in row.values() if isinstance(v, str))
                lines.append(reader.line_num - spread)  # where the row starts: a quoted value may run over lines
            grades, problems = parse_labels(rows, lines=lines, seen=seen)
    except FileNotFoundError as exc:
        raise LabelError(f"labels file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise LabelError(f"labels file {path} is a folder; give a CSV file") from exc
    except PermissionError as exc:
        raise LabelError(f"labels file {path} cannot be read (permission denied)") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"labels file {path} is not a readable UTF-8 CSV file ({exc})") from exc
    if strict and problems:
        raise LabelError(
            f"labels file {path} has {len(problems)} bad value(s): " + "; ".join(map(str, problems)), problems
        )
    return grades, problems


def write_labels(path: str | Path, grades: Mapping[tuple[str, str], Grades]) -> None:
    """Write grades to a CSV file in the grading format, sorted by patient then disc (formula-like ids escaped)."""
    order = {d: i for i, d in enumerate(DISCS)}
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for (patient, disc), g in sorted(grades.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
            writer.writerow([spreadsheet_cell(patient), disc, g.disc_state, g.herniation, g.scs, g.rfs, g.lfs])
