"""Dataset C: from a PACS DICOM export to a selected, de-identified, labelled, ROI-cropped, split dataset.

The build runs in stages, each streaming over the export:

1. Index every file by its header only (parallel over ``workers`` processes).
2. Identify each patient's series and apply the paper's slice-selection rule.
3. Decode only the selected frames, window them to 8 bits and write lossless PNG files named by
   pseudonym as in the paper's Table 2, with the ROI crop beside each axial disc image.
4. Join the grading file, split by patient (or by image) stratified on the binary label, and write
   ``manifest.csv``, ``datacard.md`` and ``report.json``, which accounts for every input file.

The build writes into a hidden sibling folder and renames it into place at the end, so a crash never
leaves a half-written dataset where a complete one is expected.

No output names an input by its path, UID or free text: every input file is named by a keyed token
(``F`` + 16 hex digits of an HMAC with the pseudonym secret), every patient by its pseudonym, every
series by its kind. ``--write-key`` writes the pseudonym -> PatientID key and, beside it, the token ->
source path map (both mode 0600, never inside the dataset). Only regular files are read; other entries
(named pipes, sockets, devices) are accounted as not needed, never opened. Symbolic links are followed
once: a linked folder already read (a loop, or a second link to it) is accounted and not read again.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import os
import re
import stat
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lumbar import __version__
from lumbar.deid import DEFAULT_SECRET_ENV, IdentifierGuard, Pseudonymizer, name_variants
from lumbar.dicom import (
    FrameRecord,
    FrameRefusedError,
    IndexResult,
    SeriesRules,
    classify_series,
    decode_frame,
    file_kind,
    frame_digest,
    order_frames,
    read_header,
)
from lumbar.errors import InputError
from lumbar.labels import FIELD_TITLES, GRADE_FIELDS, GRADE_NAMES, Grades, LabelProblem, load_labels
from lumbar.limits import ImageLimits
from lumbar.paths import build_time, check_output_file, replacing_folder, write_private
from lumbar.progress import NullProgress, Progress
from lumbar.roi import crop_roi
from lumbar.selection import (
    DISC_LEVELS,
    DISCS,
    ITEMS,
    MIN_AXIAL_FRAMES,
    Item,
    axial_frames,
    myelo_frames,
    sagittal_frame,
)
from lumbar.split import SPLITS, stratified_assign

MANIFEST_COLUMNS: tuple[str, ...] = (
    "patient",
    "item",
    "disc",
    "series",
    "source_frame",
    "image_path",
    "roi_path",
    "disc_state",
    "herniation",
    "scs",
    "rfs",
    "lfs",
    "label",
    "split",
)
SPLIT_BY: tuple[str, ...] = ("patient", "image")
_DOCUMENT_SUFFIXES = {".csv", ".txt", ".md", ".json", ".xml", ".html", ".htm", ".pdf", ".ini", ".log", ".yaml", ".yml"}
_PNG_LEVEL = 3  # zlib level: lossless either way; 3 writes about 3x faster than the default 6 for ~5% more bytes
_SERIES_TITLES = {"sag_t2": "sagittal T2", "ax_t2": "axial T2", "myelo": "myelography"}


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a Dataset C build.

    Attributes:
        source: The PACS export folder (any tree of DICOM files).
        out: The dataset folder to write (replaced if it holds an earlier build).
        labels: The grading CSV file, or None to build images only.
        key_secret_env: Environment variable holding the pseudonymisation secret; None uses
            ``LUMBAR_PSEUDONYM_SECRET`` when set, else a random secret for this build only.
        split_by: ``patient`` (no patient in two splits; default) or ``image`` (the paper's setting).
        fractions: Train / validation / test shares (paper: 75/15/10).
        seed: Split seed.
        workers: Processes for indexing and decoding.
        strict: Fail (exit non-zero) on any problem instead of building what can be built.
        write_key: Where to write the pseudonym -> PatientID key (never inside ``out``), or None; the
            token -> source path map is written beside it (``<stem>-files.csv``).
        rules: Series identification rules.
        limits: Bounds on what a file may declare (image size, frames) before it is quarantined.
    """

    source: Path
    out: Path
    labels: Path | None = None
    key_secret_env: str | None = None
    split_by: str = "patient"
    fractions: tuple[float, float, float] = (0.75, 0.15, 0.10)
    seed: int = 0
    workers: int = 1
    strict: bool = False
    write_key: Path | None = None
    rules: SeriesRules = field(default_factory=SeriesRules)
    limits: ImageLimits = field(default_factory=ImageLimits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "out", Path(self.out))
        if self.labels is not None:
            object.__setattr__(self, "labels", Path(self.labels))
        if self.write_key is not None:
            object.__setattr__(self, "write_key", Path(self.write_key))
        if self.split_by not in SPLIT_BY:
            raise InputError(f"--split-by must be one of {', '.join(SPLIT_BY)}, got {self.split_by!r}")
        if len(self.fractions) != 3 or abs(sum(self.fractions) - 1) > 1e-6 or min(self.fractions) < 0:
            raise InputError(f"split fractions must be three non-negative shares summing to 1, got {self.fractions}")
        if self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if not self.source.is_dir():
            raise InputError(f"source folder {self.source} does not exist or is not a folder")
        if self.labels is not None and not self.labels.is_file():
            if self.labels.exists():
                raise InputError(f"labels file {self.labels} is not a regular file; give a CSV file")
            raise InputError(f"labels file {self.labels} does not exist")
        out, source = self.out.resolve(), self.source.resolve()
        if out == source or source in out.parents or out in source.parents:
            raise InputError(
                f"output folder {self.out} must be outside the source folder {self.source} and not contain it"
            )
        if self.write_key is not None:
            key = self.write_key.resolve()
            if key == out or out in key.parents:
                raise InputError(
                    f"--write-key {self.write_key} is inside the dataset folder; the key must stay apart from it"
                )


@dataclass
class BuildResult:
    """What a build produced."""

    out: Path
    images: int
    labelled_images: int
    patients: int
    files: Counter
    problems: int
    ephemeral_secret: bool
    labels_given: bool

    @property
    def usable(self) -> bool:
        """True when at least one labelled image (or, built without labels, any image) was written."""
        return self.labelled_images > 0 if self.labels_given else self.images > 0


@dataclass(slots=True)
class _Selected:
    item: Item
    frame: FrameRecord | None
    source_frame: int
    reason: str = ""
    problem: bool = True


@dataclass(slots=True)
class _PatientJob:
    source: str
    out: str
    pseudonym: str
    selections: list[_Selected]
    limits: ImageLimits


@dataclass(slots=True)
class _ItemResult:
    item: Item
    source_frame: int
    ok: bool
    reason: str = ""
    problem: bool = True
    image_path: str = ""
    roi_path: str = ""
    file: str = ""


def _iter_files(source: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """List the regular files under ``source`` (relative POSIX paths, any bytes in the names).

    Symbolic links are followed once: a linked folder is read unless the same folder was already read
    (a loop, or a second link to it). Entries that are not read are returned with their fate.

    Returns:
        ``(files, skipped)``: the regular files, and ``(relpath, status, reason)`` per entry not read.
    """
    files: list[str] = []
    skipped: list[tuple[str, str, str]] = []
    root = os.stat(source)
    seen = {(root.st_dev, root.st_ino)}
    stack = [""]
    while stack:
        rel = stack.pop()
        folder = os.path.join(source, rel) if rel else str(source)
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            skipped.append((rel or ".", "quarantined", f"folder could not be listed ({exc.strerror or exc})"))
            continue
        folders = []
        for entry in entries:
            relpath = f"{rel}/{entry.name}" if rel else entry.name
            try:
                info = entry.stat(follow_symlinks=True)
            except OSError:
                reason = "broken symbolic link" if entry.is_symlink() else "could not be examined"
                skipped.append((relpath, "quarantined", reason))
                continue
            if stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen:
                    reason = "symbolic link to a folder already read (a loop or a second link); not read again"
                    skipped.append((relpath, "not_needed", reason))
                    continue
                seen.add((info.st_dev, info.st_ino))
                folders.append(relpath)
            elif stat.S_ISREG(info.st_mode):
                files.append(relpath)
            else:
                skipped.append((relpath, "not_needed", f"{file_kind(info.st_mode)}: not opened"))
        stack.extend(reversed(folders))
    return files, skipped


def _index_one(args: tuple[str, str, ImageLimits]) -> IndexResult:
    root, relpath, limits = args
    try:
        result = read_header(root, relpath, limits)
    except Exception as exc:  # any failure of one file is that file's quarantine entry, never a stopped build
        return IndexResult(relpath, status="quarantined", reason=f"could not be indexed ({exc.__class__.__name__})")
    suffix = Path(relpath).suffix.lower()
    if result.status == "quarantined" and result.reason.startswith("not a DICOM file") and suffix in _DOCUMENT_SUFFIXES:
        return IndexResult(relpath, status="not_needed", reason=f"not DICOM ({suffix} document)")
    return result


class _Workers:
    """A process pool shared by the build's stages (or plain in-process calls for one worker).

    Workers start from a forkserver that has already imported the DICOM and image libraries, so
    starting them is cheap and no thread state of the parent (progress bars) is forked.
    """

    def __init__(self, workers: int) -> None:
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["lumbar.dicom", "pydicom", "numpy", "PIL.PngImagePlugin"])
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)

    def map(self, fn, jobs: Sequence, chunksize: int = 1) -> Iterable:  # type: ignore[no-untyped-def]
        """Map ``fn`` over ``jobs`` in order."""
        if self._pool is None or len(jobs) <= 1:
            return map(fn, jobs)
        return self._pool.map(fn, jobs, chunksize=chunksize)

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _write_patient(job: _PatientJob) -> list[_ItemResult]:
    """Decode the selected frames of one patient and write their PNG (and ROI) files.

    A frame that cannot be decoded, for whatever reason, is that frame's result; only a failure to
    write the output stops the build (every later file would fail the same way).
    """
    from PIL import Image

    results = []
    for sel in job.selections:
        if sel.frame is None:
            results.append(_ItemResult(sel.item, sel.source_frame, False, sel.reason, sel.problem))
            continue
        try:
            pixels = decode_frame(job.source, sel.frame, job.limits)
            roi = crop_roi(pixels) if sel.item.series == "ax_t2" else None
        except Exception as exc:  # a refusal carries a fixed reason; anything else is named by its class only
            reason = (
                str(exc) if isinstance(exc, FrameRefusedError) else f"could not be decoded ({exc.__class__.__name__})"
            )
            results.append(_ItemResult(sel.item, sel.source_frame, False, reason, file=sel.frame.path))
            continue
        name = sel.item.filename(job.pseudonym)
        image_path = f"images/{name}"
        roi_path = f"roi/{name}" if roi is not None else ""
        try:
            Image.fromarray(pixels).save(Path(job.out, image_path), format="PNG", compress_level=_PNG_LEVEL)
            if roi is not None:
                Image.fromarray(roi).save(Path(job.out, roi_path), format="PNG", compress_level=_PNG_LEVEL)
        except OSError as exc:
            raise InputError(f"cannot write {image_path} into the dataset folder ({exc.strerror or exc})") from None
        results.append(_ItemResult(sel.item, sel.source_frame, True, "", False, image_path, roi_path, sel.frame.path))
    return results


class _Accounting:
    """Keeps one status per input file (used > quarantined > not_needed)."""

    _RANK: ClassVar[dict[str, int]] = {"not_needed": 0, "quarantined": 1, "used": 2}

    def __init__(self) -> None:
        self.files: dict[str, dict] = {}

    def mark(
        self,
        path: str,
        status: str,
        reason: str = "",
        patient: str | None = None,
        series: str | None = None,
        other: str | None = None,
    ) -> None:
        """Record a file's fate; ``other`` is a second file the reason refers to (named by token in the report)."""
        entry = self.files.get(path)
        if entry is None or self._RANK[status] > self._RANK[entry["status"]]:
            self.files[path] = {
                "path": path,
                "status": status,
                "reason": reason,
                "patient": patient,
                "series": series,
                "other": other,
            }

    def entries(self, pseudonymizer: Pseudonymizer) -> list[dict]:
        """The report's file list: each file by its token, sorted by token (no path, UID or free text)."""
        out = []
        for entry in self.files.values():
            item = {
                "file": pseudonymizer.file_token(entry["path"]),
                "status": entry["status"],
                "reason": entry["reason"],
                "patient": entry["patient"],
                "series": entry["series"],
            }
            if entry["other"]:
                item["same_image_as"] = pseudonymizer.file_token(entry["other"])
            out.append(item)
        return sorted(out, key=lambda e: e["file"])

    def counts(self) -> Counter:
        return Counter(entry["status"] for entry in self.files.values())


def _select_series(
    frames: list[FrameRecord],
    rules: SeriesRules,
    accounting: _Accounting,
    pseudonym: str,
    root: str,
    rejected: dict[str, list[tuple[int | None, str]]],
    limits: ImageLimits,
) -> tuple[dict[str, list[FrameRecord | None]], dict[str, str]]:
    """Group a patient's frames into series, pick one series per needed kind and order its frames.

    The same image exported twice (same SOPInstanceUID) is kept once when the pixel data are the
    same; when they differ, both copies are quarantined as conflicting duplicates (which one is right
    cannot be known) and the frame is reported missing with that reason. Each frame is decoded at most
    once for this comparison. Of several series of a kind, the one with the most intact frames wins
    (a damaged file never displaces an intact series).

    Returns:
        ``(ordered, missing)``: ordered frame slots per kind (``sag_t2``, ``ax_t2``, ``myelo``) and
        the reason each needed kind is unavailable.
    """
    by_series: dict[str, list[FrameRecord]] = defaultdict(list)
    kept: dict[tuple[str, int], FrameRecord] = {}
    conflicts: dict[tuple[str, int], list[FrameRecord]] = {}
    digests: dict[tuple[str, int], str] = {}

    def digest(frame: FrameRecord) -> str:
        key = (frame.path, frame.frame_index)
        if key not in digests:
            digests[key] = frame_digest(root, frame, limits)
        return digests[key]

    for frame in sorted(frames, key=lambda f: (bool(f.problem), f.path, f.frame_index)):
        key = (frame.sop_uid, frame.frame_index)
        first = kept.setdefault(key, frame)
        if first is frame:
            by_series[frame.series_uid].append(frame)
            continue
        if frame.problem:  # a damaged second copy of a readable image
            accounting.mark(
                frame.path, "quarantined", f"{frame.problem} (and a duplicate)", pseudonym, other=first.path
            )
        elif first.problem or digest(frame) == digest(first):
            accounting.mark(
                frame.path, "not_needed", "duplicate (same SOPInstanceUID and pixel data)", pseudonym, other=first.path
            )
        else:
            conflicts.setdefault(key, [first]).append(frame)
    for (_, _), copies in conflicts.items():
        reason = f"conflicting duplicate: {len(copies)} files have the same SOPInstanceUID but different pixel data"
        for copy in copies:
            accounting.mark(
                copy.path,
                "quarantined",
                reason,
                pseudonym,
                other=copies[0].path if copy is not copies[0] else copies[1].path,
            )
        first = copies[0]
        by_series[first.series_uid] = [f for f in by_series[first.series_uid] if f is not first]
        rejected.setdefault(first.series_uid, []).append((first.instance_number, reason))
    candidates: dict[str, list[list[FrameRecord]]] = defaultdict(list)
    for series_frames in by_series.values():
        if not series_frames:
            continue
        kind = classify_series(series_frames, rules)
        if kind in _SERIES_TITLES:
            candidates[kind].append(series_frames)
        else:
            number = series_frames[0].series_number
            for f in series_frames:
                accounting.mark(
                    f.path,
                    "not_needed",
                    f"series number {number} of kind {kind} is not used by the selection rule",
                    pseudonym,
                    kind,
                )
    ordered: dict[str, list[FrameRecord | None]] = {}
    missing: dict[str, str] = {}
    for kind, title in _SERIES_TITLES.items():
        options = sorted(
            candidates.get(kind, []),
            key=lambda s: (
                len({(f.path, f.frame_index) for f in s if not f.problem}),
                len({(f.path, f.frame_index) for f in s}),
                s[0].series_number,
            ),
        )
        if not options:
            missing[kind] = f"no {title} series found"
            continue
        chosen = options[-1]
        for other in options[:-1]:
            for f in other:
                accounting.mark(
                    f.path,
                    "not_needed",
                    f"another {title} series (number {chosen[0].series_number}) was selected",
                    pseudonym,
                    kind,
                )
        try:
            slots = order_frames(chosen)
        except ValueError as exc:
            missing[kind] = f"{title} series: {exc}"
            for f in chosen:
                accounting.mark(f.path, "quarantined", f"{title} series: {exc}", pseudonym, kind)
            continue
        if kind == "ax_t2" and len(slots) < MIN_AXIAL_FRAMES:
            reason = f"axial T2 series has {len(slots)} frames; the selection rule needs at least {MIN_AXIAL_FRAMES}"
            missing[kind] = reason
            for f in chosen:
                accounting.mark(f.path, "quarantined", reason, pseudonym, kind)
            continue
        ordered[kind] = slots
    return ordered, missing


def _missing_frame_reason(title: str, number: int, series_uid: str, rejected: dict[str, list]) -> str:
    """Why frame ``number`` of a series is missing: the problem of the file that held it, when one was rejected."""
    files = rejected.get(series_uid, [])
    exact = [reason for instance, reason in files if instance == number]
    if exact:
        return f"{title} frame {number}: its file was quarantined ({exact[0]})"
    if files:
        reasons = "; ".join(sorted({reason for _, reason in files}))
        return f"{title} frame {number} is missing; {len(files)} file(s) of this series were quarantined ({reasons})"
    return f"{title} frame {number} is missing from the export"


def _selections(
    ordered: dict[str, list[FrameRecord | None]],
    missing: dict[str, str],
    accounting: _Accounting,
    pseudonym: str,
    rejected: dict[str, list[tuple[int | None, str]]],
) -> list[_Selected]:
    """Apply the paper's rule to the ordered series; mark unselected frames as not needed."""
    picks: list[_Selected] = []
    frame_numbers: dict[str, list[tuple[Item, int]]] = {
        "sag_t2": [(ITEMS[2], sagittal_frame(len(ordered["sag_t2"])))] if "sag_t2" in ordered else [],
        "ax_t2": [(next(i for i in ITEMS if i.disc == d), n) for d, n in axial_frames().items()]
        if "ax_t2" in ordered
        else [],
        "myelo": list(zip(ITEMS[:2], myelo_frames(len(ordered["myelo"])), strict=False)) if "myelo" in ordered else [],
    }
    for kind, title in _SERIES_TITLES.items():
        items = [i for i in ITEMS if i.series == kind]
        if kind not in ordered:
            picks.extend(_Selected(item, None, 0, missing.get(kind, f"no {title} series")) for item in items)
            continue
        slots = ordered[kind]
        chosen = {n for _, n in frame_numbers[kind]}
        for number, frame in enumerate(slots, start=1):
            if frame is not None and number not in chosen:
                reason = frame.problem or f"{title} frame {number} of {len(slots)} is not selected"
                accounting.mark(frame.path, "quarantined" if frame.problem else "not_needed", reason, pseudonym, kind)
        numbered = dict(frame_numbers[kind])
        for item in items:
            if item not in numbered:  # a myelography series with a single frame has no second image
                picks.append(_Selected(item, None, 0, f"{title} series has only {len(slots)} frame(s)", problem=False))
                continue
            number = numbered[item]
            frame = slots[number - 1]
            if frame is None:
                series_uid = next(f.series_uid for f in slots if f is not None)
                picks.append(_Selected(item, None, number, _missing_frame_reason(title, number, series_uid, rejected)))
            else:
                picks.append(_Selected(item, frame, number))
    return picks


@dataclass
class _Index:
    """What indexing found: frames per patient, the patients' names (for the identifier guard) and every file's fate.

    ``rejected`` keeps, per series, the instance number and reason of each file rejected although its
    header was readable (a CT image, a file without pixel data), so a missing frame names its real cause;
    ``rejected_patients`` keeps those reasons per PatientID for series that were not found at all.
    """

    files: list[str]
    accounting: _Accounting
    frames_by_patient: dict[str, list[FrameRecord]]
    names: dict[str, str]
    rejected: dict[str, list[tuple[int | None, str]]] = field(default_factory=dict)
    rejected_patients: dict[str, list[str]] = field(default_factory=dict)


def _index(config: BuildConfig, workers: _Workers, progress: Progress) -> _Index:
    """Stage 1: read every file's header, in parallel; pixels are not decoded."""
    files, skipped = _iter_files(config.source)
    index = _Index([*files, *(entry for entry, _, _ in skipped)], _Accounting(), defaultdict(list), {})
    for entry, status, reason in skipped:
        index.accounting.mark(entry, status, reason)
    advance = progress.task("indexing files", len(files))
    chunk = max(1, min(64, len(files) // (config.workers * 8) or 1))
    for result in workers.map(_index_one, [(str(config.source), f, config.limits) for f in files], chunk):
        if result.status != "indexed":
            index.accounting.mark(result.path, result.status, result.reason)
            if result.series_uid:
                index.rejected.setdefault(result.series_uid, []).append((result.instance_number, result.reason))
            if result.patient_id:
                index.rejected_patients.setdefault(result.patient_id, []).append(result.reason)
        for frame in result.frames:
            index.frames_by_patient[frame.patient_id].append(frame)
            index.names.setdefault(frame.patient_id, frame.patient_name)
        advance(1)
    return index


def _write_images(
    jobs: list[_PatientJob], index: _Index, workers: _Workers, progress: Progress
) -> tuple[list[dict], list[dict]]:
    """Stage 3: decode the selected frames and write PNG files; return manifest rows and per-patient entries."""
    advance = progress.task("writing images", sum(len(j.selections) for j in jobs))
    rows: list[dict] = []
    patients: list[dict] = []
    for job, results in zip(jobs, workers.map(_write_patient, jobs), strict=True):
        missing, notes = [], []
        for res in results:
            advance(1)
            if res.ok:
                index.accounting.mark(res.file, "used", f"image {res.item.number}", job.pseudonym, res.item.series)
                rows.append(
                    {
                        "patient": job.pseudonym,
                        "item": res.item.number,
                        "disc": res.item.disc,
                        "series": res.item.series,
                        "source_frame": res.source_frame,
                        "image_path": res.image_path,
                        "roi_path": res.roi_path,
                    }
                )
                continue
            if res.file:
                index.accounting.mark(res.file, "quarantined", res.reason, job.pseudonym, res.item.series)
            (missing if res.problem else notes).append({"item": res.item.number, "reason": res.reason})
        patients.append(
            {"patient": job.pseudonym, "images": sum(r.ok for r in results), "missing": missing, "notes": notes}
        )
    return rows, patients


def _join_labels(
    rows: list[dict], grades: dict[tuple[str, str], Grades], pseudonyms: dict[str, str], pseudonymizer: Pseudonymizer
) -> tuple[list[dict], list[str]]:
    """Stage 4a: put the grades on the disc rows; return graded discs without an image and ungraded patients.

    A grading row names its patient by PatientID (the hospital's file) or by the dataset's pseudonym (a
    file written by ``lumbar label serve``, which only ever sees pseudonyms).
    """
    pid_of = {p: pid for pid, p in pseudonyms.items()}
    for row in rows:
        g = None
        if row["disc"]:
            g = grades.get((pid_of[row["patient"]], row["disc"])) or grades.get((row["patient"], row["disc"]))
        for name in GRADE_FIELDS:
            row[name] = getattr(g, name) if g else ""
        row["label"] = g.label if g else ""
    written = {(r["patient"], r["disc"]) for r in rows if r["disc"]}
    without_images = []
    for who, disc in sorted(grades):
        pseudonym = _pseudonym_of(who, pseudonymizer)
        if (pseudonym, disc) not in written:
            known = who in pseudonyms or who in pid_of
            reason = "no images for this patient in the export" if not known else "no axial image for this disc"
            without_images.append({"patient": pseudonym, "disc": disc, "reason": reason})
    graded = {who for who, _ in grades}
    return without_images, sorted(p for pid, p in pseudonyms.items() if pid not in graded and p not in graded)


_PSEUDONYM_PATTERN = re.compile(r"S[0-9a-f]{16}")


def _merge_aliases(
    grades: dict[tuple[str, str], Grades],
    lines: dict[tuple[str, str], int],
    pseudonymizer: Pseudonymizer,
    problems: list[LabelProblem],
) -> dict[tuple[str, str], Grades]:
    """Find discs graded twice, once by PatientID and once by pseudonym, and report each (none is dropped silently).

    The same grades are kept once; different grades are both left out (which one is right cannot be
    known). Each case is appended to ``problems`` on the later line, naming the patient by pseudonym.
    """
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for who, disc in grades:
        groups[(_pseudonym_of(who, pseudonymizer), disc)].append((who, disc))
    kept = dict(grades)
    for (pseudonym, disc), keys in groups.items():
        if len(keys) < 2:
            continue
        keys.sort(key=lambda k: lines.get(k, 0))
        where = " and ".join(
            f"line {lines.get(k, 0)} ({'pseudonym' if _PSEUDONYM_PATTERN.fullmatch(k[0]) else 'PatientID'})"
            for k in keys
        )
        same = len({grades[k] for k in keys}) == 1
        for key in keys[1 if same else 0 :]:
            kept.pop(key)
        outcome = "the same grades, kept once" if same else "different grades, both left out"
        problems.append(
            LabelProblem(
                lines.get(keys[-1], 0),
                "disc",
                disc,
                f"disc {disc} of patient {pseudonym} is graded twice, on {where}: {outcome}",
                pseudonym,
            )
        )
    return kept


def _pseudonym_of(who: str, pseudonymizer: Pseudonymizer) -> str | None:
    """The pseudonym naming a grading row's patient (a pseudonym stays as it is), or None without an id."""
    if not who:
        return None
    return who if _PSEUDONYM_PATTERN.fullmatch(who) else pseudonymizer.pseudonym(who)


def _key_rows(pseudonyms: dict[str, str]) -> list[list[str]]:
    """The pseudonym -> PatientID key, sorted by pseudonym."""
    return [["pseudonym", "patient_id"], *([p, pid] for pid, p in sorted(pseudonyms.items(), key=lambda kv: kv[1]))]


def files_key_path(key: Path) -> Path:
    """Where ``--write-key KEY`` writes the token -> source path map: ``KEY``'s folder, ``<stem>-files.csv``."""
    return key.with_name(f"{key.stem}-files.csv")


def _file_key_rows(files: Iterable[str], pseudonymizer: Pseudonymizer) -> list[list[str]]:
    """The token -> source path map; names that are not UTF-8 are written with backslash escapes."""
    return [
        ["file", "source_path"],
        *(
            [pseudonymizer.file_token(relpath), os.fsencode(relpath).decode("utf-8", errors="backslashreplace")]
            for relpath in sorted(files, key=pseudonymizer.file_token)
        ),
    ]


def check_demo_key(pseudonymizer: Pseudonymizer, frames: Iterable[FrameRecord]) -> None:
    """Refuse the published demo key unless every image of the export was written by ``lumbar synth``.

    The demo key is public, so pseudonyms made with it can be reversed by anyone: it may only name
    patients that do not exist. ``lumbar synth`` marks every file it writes (:data:`lumbar.dicom.SYNTH_MARK`).

    Raises:
        InputError: When the key is the demo key and an image is not marked (or there is none).
    """
    if not pseudonymizer.is_demo:
        return
    marked = unmarked = 0
    for frame in frames:
        if frame.synthetic:
            marked += 1
        else:
            unmarked += 1
    if unmarked or not marked:
        raise InputError(
            f"the pseudonymisation secret is lumbar's published demo key, which is only for exports written by "
            f"`lumbar synth`, and {unmarked} image(s) of this export are not; set {DEFAULT_SECRET_ENV} to a secret "
            "of your own"
        )


def build_dataset_c(config: BuildConfig, progress: Progress | None = None) -> BuildResult:
    """Build Dataset C from a PACS export.

    Args:
        config: The build settings.
        progress: Progress sink (files indexed, images written).

    Returns:
        A :class:`BuildResult` summary; the dataset is in ``config.out``.

    Raises:
        InputError: For unusable options or an unreadable labels file (missing columns).
    """
    progress = progress or NullProgress()
    pseudonymizer = Pseudonymizer.from_env(config.key_secret_env)
    if config.write_key is not None:
        check_output_file(config.write_key, "--write-key")
    grades: dict[tuple[str, str], Grades] = {}
    label_problems: list[LabelProblem] = []
    if config.labels is not None:
        label_lines: dict[tuple[str, str], int] = {}
        grades, label_problems = load_labels(config.labels, seen=label_lines)
        grades = _merge_aliases(grades, label_lines, pseudonymizer, label_problems)
    out = config.out
    with replacing_folder(out) as work:
        (work / "images").mkdir()
        (work / "roi").mkdir()
        with _Workers(config.workers) as workers:
            index = _index(config, workers, progress)
            check_demo_key(pseudonymizer, (f for frames in index.frames_by_patient.values() for f in frames))
            # stage 2: select, one patient at a time
            pseudonyms = {pid: pseudonymizer.pseudonym(pid) for pid in index.frames_by_patient}
            jobs: list[_PatientJob] = []
            for patient_id in sorted(index.frames_by_patient, key=lambda p: pseudonyms[p]):
                pseudonym = pseudonyms[patient_id]
                frames = index.frames_by_patient.pop(patient_id)
                ordered, missing = _select_series(
                    frames, config.rules, index.accounting, pseudonym, str(config.source), index.rejected, config.limits
                )
                quarantined = index.rejected_patients.get(patient_id, [])
                for kind in missing:
                    if quarantined and missing[kind].startswith("no "):
                        missing[kind] += (
                            f"; {len(quarantined)} file(s) of this patient were quarantined "
                            f"({'; '.join(sorted(set(quarantined)))})"
                        )
                selections = _selections(ordered, missing, index.accounting, pseudonym, index.rejected)
                jobs.append(_PatientJob(str(config.source), str(work), pseudonym, selections, config.limits))
            rows, patients_report = _write_images(jobs, index, workers, progress)
        without_images, patients_without_labels = _join_labels(rows, grades, pseudonyms, pseudonymizer)
        assign_splits(rows, config.split_by, config.fractions, config.seed)
        order = {item.number: i for i, item in enumerate(ITEMS)}
        with (work / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda r: (r["patient"], order[r["item"]])))

        for relpath in sorted(set(index.files) - set(index.accounting.files)):  # a bug, never a silent drop
            index.accounting.mark(relpath, "quarantined", "not accounted for by the build (a bug in lumbar)")
        counts = index.accounting.counts()
        labelled = sum(1 for r in rows if r["label"] != "")
        # every identifier the build has seen: the guard's list, and values a label problem must not show
        identifiers = {*pseudonyms, *(p.patient_id for p in label_problems), *(pid for pid, _ in grades)}
        for pid in pseudonyms:
            identifiers.update(name_variants(index.names.get(pid, "")))
        identifiers = {i for i in identifiers if i and not _PSEUDONYM_PATTERN.fullmatch(i)}  # a pseudonym is keyed
        withheld = {i.casefold() for i in identifiers}
        report = {
            "lumbar_version": __version__,
            "created": build_time(),
            "settings": {
                "split_by": config.split_by,
                "fractions": list(config.fractions),
                "seed": config.seed,
                "pseudonym_secret": "random for this build (pseudonyms are not stable)"
                if pseudonymizer.ephemeral
                else "from the environment (stable pseudonyms)",
                "limits": dataclasses.asdict(config.limits),
            },
            "summary": {
                "files": len(index.files),
                "used": counts.get("used", 0),
                "not_needed": counts.get("not_needed", 0),
                "quarantined": counts.get("quarantined", 0),
                "patients": len(pseudonyms),
                "images": len(rows),
                "labelled_images": labelled,
                "label_rows": len(grades),
                "bad_label_values": len(label_problems),
            },
            "files": index.accounting.entries(pseudonymizer),
            "patients": patients_report,
            "labels": {
                "bad_values": [p.public(_pseudonym_of(p.patient_id, pseudonymizer), withheld) for p in label_problems],
                "without_images": without_images,
                "patients_without_labels": patients_without_labels,
            },
        }
        card = datacard(rows, report, config)
        guard = IdentifierGuard(identifiers)
        guard.check_json(report, "report.json")
        guard.check_text(card, "datacard.md")
        guard.check_json(rows, "manifest.csv")
        (work / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        (work / "datacard.md").write_text(card, encoding="utf-8")
        if config.write_key is not None:
            write_private(config.write_key, _key_rows(pseudonyms), "--write-key")
            write_private(
                files_key_path(config.write_key),
                _file_key_rows(index.files, pseudonymizer),
                "the file key beside --write-key",
            )
    problems = (
        counts.get("quarantined", 0)
        + len(label_problems)
        + len(without_images)
        + sum(len(p["missing"]) for p in patients_report)
        + (len(patients_without_labels) if config.labels else 0)
    )
    return BuildResult(
        out, len(rows), labelled, len(pseudonyms), counts, problems, pseudonymizer.ephemeral, config.labels is not None
    )


def assign_splits(
    rows: list[dict], split_by: str = "patient", fractions: Sequence[float] = (0.75, 0.15, 0.10), seed: int = 0
) -> None:
    """Set ``row["split"]`` on manifest rows, stratified on the binary label.

    By patient, every row of a labelled patient gets that patient's split, and patients are
    stratified on their number of abnormal discs; by image, each labelled row is split on its own.
    Rows without a label get an empty split (by image) or their patient's split (by patient).
    """
    for row in rows:
        row["split"] = ""
    if split_by == "patient":
        abnormal: Counter = Counter()
        labelled: set[str] = set()
        for row in rows:
            if row["label"] != "":
                labelled.add(row["patient"])
                abnormal[row["patient"]] += int(row["label"])
        patients = sorted(labelled)
        assignment = stratified_assign(patients, [abnormal[p] for p in patients], fractions, SPLITS, seed)
        for row in rows:
            row["split"] = assignment.get(row["patient"], "")
    else:
        keyed = [(f"{r['patient']}_{r['item']}", r) for r in rows if r["label"] != ""]
        assignment = stratified_assign([k for k, _ in keyed], [r["label"] for _, r in keyed], fractions, SPLITS, seed)
        for key, row in keyed:
            row["split"] = assignment[key]


# --------------------------------------------------------------------------------------------------
# Data card and description (paper Table 5 layout)
# --------------------------------------------------------------------------------------------------


def grade_table(rows: Iterable[dict], field_name: str) -> list[list[str]]:
    """Counts of each grade of ``field_name`` per disc level, as rows ``[name, L1-L2, ..., L5-S1, total]``."""
    counts: Counter = Counter()
    for row in rows:
        if row.get(field_name, "") not in ("", None) and row.get("disc"):
            counts[(int(row[field_name]), row["disc"])] += 1
    table = []
    for grade, name in enumerate(GRADE_NAMES[field_name]):
        values = [counts[(grade, d)] for d in DISCS]
        table.append([f"{grade} {name}", *map(str, values), str(sum(values))])
    totals = [sum(counts[(g, d)] for g in range(4)) for d in DISCS]
    if field_name == "disc_state":
        abnormal = [sum(counts[(g, d)] for g in (1, 2, 3)) for d in DISCS]
        table.append(["abnormal (1-3)", *map(str, abnormal), str(sum(abnormal))])
    table.append(["total", *map(str, totals), str(sum(totals))])
    return table


def split_table(rows: Iterable[dict]) -> list[list[str]]:
    """Patients, labelled images and class balance per split.

    Returns:
        Rows ``[split, patients, images, normal, abnormal, abnormal %]``.
    """
    patients: dict[str, set] = defaultdict(set)
    counts: Counter = Counter()
    for row in rows:
        if row.get("label", "") in ("", None):
            continue
        split = row.get("split") or "(none)"
        patients[split].add(row["patient"])
        counts[(split, int(row["label"]))] += 1
    table = []
    for split in [*SPLITS, "(none)"]:
        if split not in patients:
            continue
        normal, abnormal = counts[(split, 0)], counts[(split, 1)]
        total = normal + abnormal
        table.append(
            [
                split,
                str(len(patients[split])),
                str(total),
                str(normal),
                str(abnormal),
                f"{100 * abnormal / total:.1f}" if total else "-",
            ]
        )
    return table


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def datacard(rows: list[dict], report: dict, config: BuildConfig) -> str:
    """Return the data card (Markdown): provenance, Table 5 counts, split sizes, and what was left out."""
    s = report["summary"]
    levels = [DISC_LEVELS[d] for d in DISCS]
    parts = [
        "# Dataset C data card",
        "",
        f"Built by lumbar {__version__} on {report['created']}. Images are 8-bit lossless PNG selected by the "
        "paper's rule (sagittal T2 frame floor(n/2)+1; axial T2 frames 3, 8, 13, 18, 23 for L5-S1 ... L1-L2; "
        "two myelography frames) and named by pseudonym as in the paper's Table 2; axial disc images have an "
        "ROI crop (Equation 3) in `roi/`.",
        "",
        f"- Patients: {s['patients']}; images: {s['images']}; labelled disc images: {s['labelled_images']}",
        f"- Input files: {s['files']} ({s['used']} used, {s['not_needed']} not needed, {s['quarantined']} quarantined; "
        "see `report.json`)",
        f"- Split: by {config.split_by}, {'/'.join(str(round(f * 100)) for f in config.fractions)} "
        f"(train/val/test), stratified on the binary label, seed {config.seed}",
        f"- Pseudonyms: HMAC-SHA256 of the PatientID, secret {report['settings']['pseudonym_secret']}",
        "",
        "## Disc state per level (paper Table 5 layout)",
        "",
        _markdown([FIELD_TITLES["disc_state"], *levels, "Total"], grade_table(rows, "disc_state")),
        "",
        "## Split sizes (labelled disc images)",
        "",
        _markdown(["Split", "Patients", "Images", "Normal", "Abnormal", "Abnormal %"], split_table(rows)),
        "",
        "## Other grades per level",
        "",
    ]
    for field_name in GRADE_FIELDS[1:]:
        parts += [_markdown([FIELD_TITLES[field_name], *levels, "Total"], grade_table(rows, field_name)), ""]
    parts += [
        "## Left out",
        "",
        f"- Quarantined input files: {s['quarantined']}",
        f"- Bad values in the grading file: {s['bad_label_values']}",
        f"- Graded discs without an image: {len(report['labels']['without_images'])}",
        f"- Patients with images but no grades: {len(report['labels']['patients_without_labels'])}",
        f"- Patients with missing images: {sum(1 for p in report['patients'] if p['missing'])}",
        "",
    ]
    return "\n".join(parts)


def read_manifest(dataset: str | Path, required: Sequence[str] = MANIFEST_COLUMNS) -> list[dict]:
    """Read a dataset's ``manifest.csv`` as a list of row dicts.

    Args:
        dataset: The dataset folder.
        required: Columns that must be present (default: Dataset C's).

    Raises:
        InputError: If the folder has no readable manifest with the required columns.
    """
    path = Path(dataset) / "manifest.csv"
    if not path.is_file():
        raise InputError(f"{dataset} is not a lumbar dataset: {path} does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"manifest {path} lacks the column(s) {', '.join(missing)}")
        return list(reader)
