"""Grading Dataset C's patients (the paper's FaLa program): the grading session, atomic saves, merging graders.

* :class:`GradingSession` holds one grader's grading file for one dataset: the patients and their
  selected images (Table 2 naming, from ``manifest.csv``), the grades so far, and :meth:`set_grades`,
  which validates a change and rewrites the file atomically (temporary file, ``fsync``, rename) so a
  crash or a closed tab never leaves a half-written file.
* Every save is a compare-and-swap on the file's content: under a lock on its folder (``flock``, so
  two servers on one file take turns), the file must still be the one this session last read or
  wrote. When another server or a hand edit changed it, nothing is written, the session reloads the
  file and :class:`GradesConflictError` says so (the page answers 409 and shows the file as it is
  now): a grade already saved is never overwritten unseen.
* The file is the grading CSV the dataset builder reads (:mod:`lumbar.labels`), keyed by the
  dataset's patient pseudonyms (the builder accepts pseudonyms as well as PatientIDs).
* :func:`merge_gradings` combines two graders' files: agreements and discs only one grader graded
  are kept, disagreements are listed per disc (and resolved only when asked), and Cohen's kappa is
  computed per grade between the two graders.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.errors import InputError, LabelError
from lumbar.labels import GRADE_FIELDS, Grades, load_labels, spreadsheet_cell, write_labels
from lumbar.selection import DISC_LEVELS, DISCS

NORMAL = Grades(0, 0, 0, 0, 0)


class GradesConflictError(InputError):
    """The grading file changed since this session read it (another server, an edit); nothing was saved."""


def file_version(path: Path) -> str | None:
    """The SHA-256 of a file's bytes, or None when it does not exist (the version a save compares)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder of ``path`` (other servers saving there wait; no file is left)."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass
class Patient:
    """One patient of the dataset and their selected images (paths relative to the dataset folder)."""

    pseudonym: str
    sagittal: list[str] = field(default_factory=list)
    myelography: list[str] = field(default_factory=list)
    axial: dict[str, str] = field(default_factory=dict)


def dataset_patients(dataset: str | Path) -> list[Patient]:
    """The patients of a Dataset C folder with their images, in manifest order.

    Raises:
        InputError: When the folder has no manifest.
    """
    from lumbar.dataset_c import read_manifest

    patients: dict[str, Patient] = {}
    for row in read_manifest(dataset, ("patient", "series", "image_path")):
        patient = patients.setdefault(row["patient"], Patient(row["patient"]))
        if row.get("disc"):
            patient.axial[row["disc"]] = row["image_path"]
        elif row["series"] == "myelo":
            patient.myelography.append(row["image_path"])
        else:
            patient.sagittal.append(row["image_path"])
    return list(patients.values())


def atomic_write_labels(path: Path, grades: Mapping[tuple[str, str], Grades]) -> None:
    """Write the grading file through a temporary file in the same folder, synced, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_labels(temporary, grades)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _shown(value: Any, limit: int = 60) -> str:
    """A value as it appears in an error message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GradingSession:
    """One grader's file for one dataset; thread-safe (the web server handles requests in threads)."""

    def __init__(self, dataset: str | Path, labels: str | Path) -> None:
        """Open the session; an existing grading file is loaded (and must be valid), a missing one is created.

        Args:
            dataset: A Dataset C folder, or a published version URI (fetched into the cache once).
            labels: The grading CSV.

        Raises:
            InputError: When the dataset has no manifest.
            LabelError: When the existing grading file has bad rows (they are listed).
        """
        from lumbar.versions import fetch_dataset

        self.dataset = fetch_dataset(dataset).resolve()
        self.labels = Path(labels)
        self.patients = dataset_patients(self.dataset)
        self._known = {p.pseudonym for p in self.patients}
        self._lock = threading.Lock()
        if self.labels.exists():
            self.grades, _ = load_labels(self.labels, strict=True)
            self._version = file_version(self.labels)
        else:
            self.grades = {}
            self._version = None
            try:
                self._save({})
            except GradesConflictError:
                pass  # another server created the file meanwhile: its grades are now this session's
            except OSError as exc:
                raise InputError(f"cannot write the grading file {self.labels} ({exc.strerror or exc})") from None

    def refresh(self) -> bool:
        """Reload the file when it changed since this session read or wrote it; returns whether it did.

        Raises:
            LabelError: When the changed file has bad rows (the grades held so far are kept).
        """
        with self._lock:
            return self._reload_if_changed()

    def _reload_if_changed(self) -> bool:
        version = file_version(self.labels)
        if version == self._version:
            return False
        self.grades = load_labels(self.labels, strict=True)[0] if version is not None else {}
        self._version = version
        return True

    def _save(self, updated: dict[tuple[str, str], Grades]) -> None:
        """Write ``updated`` only if the file is still the version this session knows (compare-and-swap).

        Raises:
            GradesConflictError: When the file changed meanwhile; the session then holds the file's grades.
        """
        with _locked(self.labels):
            if self._reload_if_changed():
                raise GradesConflictError(
                    f"the grading file {self.labels.name} was changed by someone else (another grading page or an "
                    "edit) since this page loaded it; nothing was saved, and the page now shows the grades as they "
                    "are: make the change again"
                )
            atomic_write_labels(self.labels, updated)
            self._version = file_version(self.labels)
            self.grades = updated

    def progress(self) -> dict[str, int]:
        """Patients with every disc graded, and the total."""
        done = sum(1 for p in self.patients if all((p.pseudonym, d) in self.grades for d in DISCS))
        return {"graded": done, "total": len(self.patients)}

    def patient_grades(self, pseudonym: str) -> dict[str, dict[str, int]]:
        """The grades of one patient's graded discs: disc -> field -> grade."""
        self._check_patient(pseudonym)
        return {d: self.grades[(pseudonym, d)].as_dict() for d in DISCS if (pseudonym, d) in self.grades}

    def _check_patient(self, pseudonym: str) -> None:
        if pseudonym not in self._known:
            raise InputError(f"patient {_shown(pseudonym)} is not in the dataset {self.dataset.name}")

    def set_grades(self, pseudonym: str, disc: str, values: Mapping[str, Any]) -> Grades:
        """Change some grades of one disc (the rest keep their value, or 0 on a new disc) and save.

        Raises:
            InputError: For an unknown patient, disc or field, or a grade that is not an integer 0-3.
            GradesConflictError: When the file changed since this session read it (nothing is saved).
        """
        self._check_patient(pseudonym)
        if disc not in DISCS:
            raise InputError(f"unknown disc {_shown(disc)}; expected one of {', '.join(DISCS)}")
        unknown = sorted(set(values) - set(GRADE_FIELDS))
        if unknown:
            raise InputError(f"unknown field {_shown(unknown[0])}; expected {', '.join(GRADE_FIELDS)}")
        clean = {}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
                raise InputError(f"{name} of {DISC_LEVELS[disc]} must be a grade 0-3, got {_shown(value)}")
            clean[name] = value
        with self._lock:
            current = self.grades.get((pseudonym, disc), NORMAL).as_dict()
            grades = Grades(**{**current, **clean})
            self._save({**self.grades, (pseudonym, disc): grades})
        return grades

    def set_all_normal(self, pseudonym: str) -> None:
        """Grade every disc of a patient normal (0 everywhere), in one save."""
        self._check_patient(pseudonym)
        with self._lock:
            self._save({**self.grades, **{(pseudonym, d): NORMAL for d in DISCS}})


# --- merging two graders --------------------------------------------------------------------------


def cohen_kappa(a: Sequence[int], b: Sequence[int], categories: Sequence[int] = (0, 1, 2, 3)) -> float | None:
    """Cohen's kappa of two raters' grades of the same items (None when undefined: no items, or chance = 1)."""
    if len(a) != len(b):
        raise ValueError("both raters must grade the same items")
    if not a:
        return None
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    total = table.sum()
    observed = np.trace(table) / total
    expected = float((table.sum(axis=0) * table.sum(axis=1)).sum() / total**2)
    if expected == 1.0:
        return None
    return float((observed - expected) / (1 - expected))


@dataclass
class MergeResult:
    """Two graders' files combined."""

    merged: dict[tuple[str, str], Grades]
    disagreements: list[dict[str, Any]]
    kappa: dict[str, float | None]
    both: int
    only_first: int
    only_second: int


def merge_gradings(first: str | Path, second: str | Path, prefer: str | None = None) -> MergeResult:
    """Merge two grading files.

    Args:
        first: The first grader's file.
        second: The second grader's file.
        prefer: ``first`` or ``second`` to resolve disagreements with that grader's grades; None leaves
            disagreeing discs out of the merged grades (to adjudicate).

    Raises:
        LabelError: When a file is invalid.
        InputError: For an unknown ``prefer``.
    """
    if prefer not in (None, "first", "second"):
        raise InputError("prefer must be first or second")
    a, _ = load_labels(first, strict=True)
    b, _ = load_labels(second, strict=True)
    common = sorted(set(a) & set(b))
    merged = {k: v for k, v in a.items() if k not in b}
    merged.update({k: v for k, v in b.items() if k not in a})
    disagreements = []
    for key in common:
        if a[key] == b[key]:
            merged[key] = a[key]
            continue
        fields = [f for f in GRADE_FIELDS if getattr(a[key], f) != getattr(b[key], f)]
        disagreements.append(
            {
                "patient_id": key[0],
                "disc": key[1],
                "fields": fields,
                "first": a[key].as_dict(),
                "second": b[key].as_dict(),
            }
        )
        if prefer:
            merged[key] = a[key] if prefer == "first" else b[key]
    kappa = {
        name: cohen_kappa([getattr(a[k], name) for k in common], [getattr(b[k], name) for k in common])
        for name in GRADE_FIELDS
    }
    return MergeResult(merged, disagreements, kappa, len(common), len(set(a) - set(b)), len(set(b) - set(a)))


def write_disagreements(path: str | Path, disagreements: Sequence[Mapping[str, Any]]) -> None:
    """One row per disagreeing disc: patient, disc, the fields that differ, both graders' grades (formulas escaped)."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "disc", "fields", *(f"first_{f}" for f in GRADE_FIELDS)]
                        + [f"second_{f}" for f in GRADE_FIELDS])  # fmt: skip
        for d in disagreements:
            writer.writerow(
                [spreadsheet_cell(d["patient_id"]), d["disc"], " ".join(d["fields"])]
                + [d["first"][f] for f in GRADE_FIELDS]
                + [d["second"][f] for f in GRADE_FIELDS]
            )


__all__ = [
    "GradesConflictError",
    "GradingSession",
    "LabelError",
    "MergeResult",
    "Patient",
    "atomic_write_labels",
    "cohen_kappa",
    "dataset_patients",
    "merge_gradings",
    "write_disagreements",
]
