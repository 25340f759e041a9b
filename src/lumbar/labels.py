"""The grading file (the paper's FaLa grading, Tables 3 and 4): loading and validation.

One row per patient and disc::

    patient_id,disc,disc_state,herniation,scs,rfs,lfs
    P000001,L45,2,0,1,0,1

``disc`` is one of ``L12, L23, L34, L45, L51``; every grade is an integer 0-3. The binary target of
the paper is normal (``disc_state == 0``) versus abnormal (1-3).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from lumbar.errors import LabelError
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
        value: The offending value as written.
        reason: Why it was rejected.
    """

    line: int
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, field {self.field!r}, value {self.value!r}: {self.reason}"


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
        spanning = next((f for f in COLUMNS if "\n" in str(row.get(f) or "")), None)
        if spanning is not None:
            value = str(row.get(spanning))
            shown = value.splitlines()[0][:40] if value.strip() else ""
            extent = _spanned(value)
            problems.append(
                LabelProblem(
                    line,
                    spanning,
                    shown,
                    f"a quote opened in this value is not closed on its line; the next {extent} line(s) were read "
                    "into it (close the quote or remove it)",
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
                    ",".join(values)[:60],
                    f"the row has {len(values)} field(s) more than the header's columns (an unquoted comma?)",
                )
            )
            continue
        row_problems: list[LabelProblem] = []
        patient = str(row.get("patient_id") or "").strip()
        if not patient:
            row_problems.append(LabelProblem(line, "patient_id", patient, "empty patient id"))
        raw_disc = str(row.get("disc") or "").strip()
        disc = normalise_disc(raw_disc)
        if disc is None:
            row_problems.append(
                LabelProblem(line, "disc", raw_disc, f"unknown disc; expected one of {', '.join(DISCS)}")
            )
        values: dict[str, int] = {}
        for field in GRADE_FIELDS:
            raw = str(row.get(field) or "").strip()
            try:
                value = int(raw)
            except ValueError:
                row_problems.append(LabelProblem(line, field, raw, "not an integer"))
                continue
            if not 0 <= value <= 3:
                row_problems.append(LabelProblem(line, field, raw, "grade out of range 0-3"))
                continue
            values[field] = value
        if row_problems:
            problems.extend(row_problems)
            continue
        key = (patient, disc)
        if key in grades:
            problems.append(
                LabelProblem(
                    line, "disc", raw_disc, f"duplicate patient/disc {patient}/{disc} (first on line {first_seen[key]})"
                )
            )
            continue
        grades[key] = Grades(**values)
        first_seen[key] = line
    return grades, problems


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
        with path.open(newline="", encoding="utf-8-sig") as handle:
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
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"labels file {path} is not a readable UTF-8 CSV file ({exc})") from exc
    if strict and problems:
        raise LabelError(
            f"labels file {path} has {len(problems)} bad value(s): " + "; ".join(map(str, problems)), problems
        )
    return grades, problems


def write_labels(path: str | Path, grades: Mapping[tuple[str, str], Grades]) -> None:
    """Write grades to a CSV file in the grading format, sorted by patient then disc."""
    order = {d: i for i, d in enumerate(DISCS)}
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for (patient, disc), g in sorted(grades.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
            writer.writerow([patient, disc, g.disc_state, g.herniation, g.scs, g.rfs, g.lfs])
