"""Real lumbar MRI: the public SPIDER dataset imported into Dataset C's format.

SPIDER: J. W. van der Graaf et al., "Lumbar spine segmentation in MR images: a dataset and a public
benchmark", Scientific Data 11, 264 (2024), doi:10.1038/s41597-024-03090-w; data on Zenodo,
doi:10.5281/zenodo.10159290, licence CC BY 4.0 (credit the authors wherever the data or anything
derived from it is shown). :data:`CREDIT` is that sentence; the data card and the report print it.

The layout read here is the 2-D sample of ``../shared/data/spider-lumbar`` (its README): ``boxed/``
renderings with a red rectangle around each disc, ``discs/`` crops inside those rectangles, ``slices/``
clean mid-slices, SPIDER's ``radiological_gradings.csv`` and ``overview.csv``. One imported unit is one
disc of one series:

* the rectangles are found on the boxed rendering itself (it is not the pixels of ``slices/``); the ROI
  image is the inside of a rectangle with no red pixel left, the full image a declared wider window
  around the same disc (:data:`FULL_WINDOW`) with every drawn line filled from its neighbours by
  OpenCV's inpainting (Telea), so that no drawing is left for a network to learn;
* crops are numbered from the top and SPIDER's ``IVD label`` from the bottom (1 = L5-S1): the k-th of N
  rectangles is IVD label N + 1 - k, and a series whose N differs from its patient's graded discs is
  quarantined, never guessed;
* labels follow :func:`disc_state` (herniation over bulging over degeneration) and :func:`binary`;
  the Pfirrmann grade is kept for ``--target pfirrmann``.

The clean ``slices/`` have no rectangles: they are real unlabelled MRI, written to ``unlabelled/`` as a
self-supervised pretraining source (``lumbar dataset build-unlabelled --source <out>/unlabelled``) except
those of validation and test patients.

Every input file is accounted for in ``report.json`` (used, not needed, or quarantined with a reason),
as in a Dataset C build, and the output is a Dataset C folder: training, evaluation, the pipelines and
the report read it unchanged.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lumbar import __version__
from lumbar.dataset_c import MANIFEST_COLUMNS, assign_splits
from lumbar.deid import PUBLIC_DATA_SECRET, Pseudonymizer
from lumbar.errors import InputError
from lumbar.paths import build_time, replacing_folder
from lumbar.progress import NullProgress, Progress

#: The licence's credit, shown wherever SPIDER or anything derived from it is.
CREDIT = (
    'SPIDER: J. W. van der Graaf et al., "Lumbar spine segmentation in MR images: a dataset and a public '
    'benchmark", Scientific Data 11, 264 (2024), doi:10.1038/s41597-024-03090-w; data CC BY 4.0, '
    "doi:10.5281/zenodo.10159290"
)
#: SPIDER's sequences, by the suffix of its file names (``<patient>_<sequence>``).
SEQUENCES: tuple[str, ...] = ("t1", "t2", "t2_space")
#: The full image: a window centred on the disc's rectangle, this many rectangle widths wide and
#: heights tall (the disc with half a vertebra above and below, and the canal behind), cut at the border.
FULL_WINDOW: tuple[float, float] = (1.6, 3.0)
#: The four disc states of the paper (Dataset C's ``disc_state`` codes 0-3).
DISC_STATES: tuple[str, ...] = ("normal", "degeneration", "bulge", "herniation")
#: Manifest columns beyond Dataset C's: the sequence and SPIDER's own gradings.
SPIDER_COLUMNS: tuple[str, ...] = (
    "sequence",
    "pfirrmann",
    "modic",
    "bulging",
    "narrowing",
    "spider_herniation",
    "up_endplate",
    "low_endplate",
    "spondylolisthesis",
)
#: ``radiological_gradings.csv``: column -> (manifest column, allowed values).
GRADING_COLUMNS: dict[str, tuple[str, range]] = {
    "Pfirrman grade": ("pfirrmann", range(1, 6)),
    "Modic": ("modic", range(4)),
    "Disc bulging": ("bulging", range(2)),
    "Disc narrowing": ("narrowing", range(2)),
    "Disc herniation": ("spider_herniation", range(2)),
    "UP endplate": ("up_endplate", range(2)),
    "LOW endplate": ("low_endplate", range(2)),
    "Spondylolisthesis": ("spondylolisthesis", range(2)),
}
#: The folder of an import that holds the unlabelled slices (a self-supervised pretraining source).
UNLABELLED = "unlabelled"
#: Smallest height and width of a usable sagittal slice (SPIDER's across-the-stack renderings are 17-21 px).
MIN_SLICE = 64
_NAME = re.compile(r"(?P<patient>\d+)_(?P<sequence>t1|t2|t2_SPACE)(?:_disc_(?P<k>\d+))?\.png", re.IGNORECASE)


def level(ivd: int) -> tuple[str, str]:
    """SPIDER's ``IVD label`` as ``(code, name)``: 1 is ``("L51", "L5-S1")``, 5 ``("L12", "L1-L2")``, 6 ``T12-L1``.

    SPIDER counts discs from the most caudal upwards; the names assume five lumbar vertebrae (a spine
    with a transitional vertebra shifts them, and SPIDER's gradings do not say which spines have one).
    """
    if ivd < 1:
        raise InputError(f"IVD label {ivd} names no disc (SPIDER's labels start at 1, the most caudal disc)")
    lower = ["S1", "L5", "L4", "L3", "L2", "L1", *(f"T{n}" for n in range(12, 0, -1))]
    if ivd >= len(lower):
        raise InputError(f"IVD label {ivd} is above the thoracic spine")
    below, above = lower[ivd - 1], lower[ivd]
    if ivd == 1:
        return "L51", "L5-S1"  # Dataset C's code for the lumbosacral disc
    return f"{above}{below[1:] if above[0] == below[0] else below}", f"{above}-{below}"


def disc_state(grades: Mapping[str, int]) -> int:
    """The paper's disc state (0-3) from SPIDER's findings, which are multi-label.

    Precedence: herniation (3) over bulging (2) over degeneration (1, Pfirrmann grade 3 or more) over
    normal (0). Narrowing, Modic changes, endplate defects and spondylolisthesis are kept in the manifest
    but do not set the state: the paper's four states name none of them.
    """
    if grades["spider_herniation"]:
        return 3
    if grades["bulging"]:
        return 2
    if grades["pfirrmann"] >= 3:
        return 1
    return 0


def binary(grades: Mapping[str, int]) -> int:
    """The paper's binary label: abnormal (1) unless the disc state is normal."""
    return int(disc_state(grades) != 0)


@dataclass(frozen=True)
class SpiderConfig:
    """Settings of a SPIDER import.

    Attributes:
        source: The SPIDER folder (the shared sample's layout).
        out: The dataset folder to write (replaced if it holds an earlier build).
        sequences: The sequences to import (T2 by default, the paper's).
        fractions: Train / validation / test shares of patients.
        seed: Split seed.
        secret: Pseudonymisation key; None uses :data:`lumbar.deid.PUBLIC_DATA_SECRET`, the key declared for
            public data, so every import of the same files splits the same way.
    """

    source: Path
    out: Path
    sequences: tuple[str, ...] = ("t2",)
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    seed: int = 0
    secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "sequences", tuple(s.strip().lower() for s in self.sequences if s.strip()))
        unknown = [s for s in self.sequences if s not in SEQUENCES]
        if unknown or not self.sequences:
            raise InputError(f"--sequences takes some of {', '.join(SEQUENCES)}, got {', '.join(unknown) or 'none'}")
        if len(self.fractions) != 3 or abs(sum(self.fractions) - 1) > 1e-6 or min(self.fractions) < 0:
            raise InputError(f"split fractions must be three non-negative shares summing to 1, got {self.fractions}")
        if not self.source.is_dir():
            raise InputError(f"SPIDER folder {self.source} does not exist or is not a folder")
        if not (self.source / "radiological_gradings.csv").is_file():  # both layouts have it
            raise InputError(f"{self.source} has no radiological_gradings.csv: is it a SPIDER folder?")
        out, source = self.out.resolve(), self.source.resolve()
        if out == source or source in out.parents or out in source.parents:
            raise InputError(f"output folder {self.out} must be outside the SPIDER folder {self.source}")


@dataclass(frozen=True)
class Rectangle:
    """One drawn rectangle: its outer box and the inside with no red pixel.

    Both are ``(top, bottom, left, right)``, bottom and right exclusive.
    """

    outer: tuple[int, int, int, int]
    inner: tuple[int, int, int, int]


class RectangleError(ValueError):
    """The rectangles of a rendering cannot be read without a guess."""


def red_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the drawn lines: red, and the reddish edge pixels a renderer blends into the grey."""
    r, g, b = (rgb[..., i].astype(np.int16) for i in range(3))
    return (r - np.maximum(g, b) > 40) & (r > 100)


def find_rectangles(rgb: np.ndarray, min_inner: int = 8) -> list[Rectangle]:
    """The red rectangles of a boxed rendering, top to bottom.

    Each drawn rectangle is one connected set of red pixels whose bounding box it outlines. Its inside is
    the outline's box less the line on each side, then shrunk until no red pixel is left in it.

    Raises:
        RectangleError: When no rectangle is drawn, when a red shape is not a hollow rectangle (two
            rectangles touching or overlapping make one such shape), or when an inside is under
            ``min_inner`` pixels.
    """
    from scipy import ndimage

    red = red_mask(rgb)
    labels, count = ndimage.label(red, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        raise RectangleError("no red rectangle is drawn")
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[box] == index
        height, width = part.shape
        if part.sum() < 20:  # a stray reddish pixel, not a drawing
            continue
        thickness = max(_run(part[height // 2, :]), _run(part[height // 2, ::-1]), _run(part[:, width // 2]), 1)
        inside = part[thickness:-thickness, thickness:-thickness] if min(height, width) > 2 * thickness else part
        border = part.sum() - inside.sum()
        if (
            inside.size == 0
            or inside.mean() > 0.02
            or border < 0.8 * (2 * (height + width) * thickness - 4 * thickness**2)
        ):
            raise RectangleError(
                f"the red shape at rows {box[0].start}-{box[0].stop} is not one hollow rectangle "
                "(rectangles that touch or overlap)"
            )
        top, bottom, left, right = box[0].start, box[0].stop, box[1].start, box[1].stop
        inner = [top + thickness, bottom - thickness, left + thickness, right - thickness]
        while inner[1] - inner[0] >= min_inner and inner[3] - inner[2] >= min_inner:
            if not red[inner[0] : inner[1], inner[2] : inner[3]].any():
                break
            inner = [inner[0] + 1, inner[1] - 1, inner[2] + 1, inner[3] - 1]
        if inner[1] - inner[0] < min_inner or inner[3] - inner[2] < min_inner:
            raise RectangleError(f"the rectangle at rows {top}-{bottom} has no red-free inside of {min_inner} px")
        found.append(Rectangle((top, bottom, left, right), tuple(inner)))
    if not found:
        raise RectangleError("no red rectangle is drawn")
    found.sort(key=lambda r: (r.outer[0] + r.outer[1]) / 2)
    for upper, lower in itertools.pairwise(found):
        if _overlap(upper.outer, lower.outer):
            raise RectangleError(f"rectangles at rows {upper.outer[0]} and {lower.outer[0]} overlap")
    return found


def _run(line: np.ndarray) -> int:
    """Length of the run of True values a line of a shape starts with."""
    off = np.flatnonzero(~line)
    return int(off[0]) if off.size else len(line)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def grey(rgb: np.ndarray) -> np.ndarray:
    """The rendering's grey values (ITU-R 601 luma; the MRI pixels are grey, so R = G = B there)."""
    weights = np.asarray([0.299, 0.587, 0.114])
    return np.clip(np.rint(rgb[..., :3].astype(np.float64) @ weights), 0, 255).astype(np.uint8)


def full_window(rect: Rectangle, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The full image's box: :data:`FULL_WINDOW` around the rectangle's centre, cut at the image border."""
    top, bottom, left, right = rect.outer
    centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
    half_h, half_w = (bottom - top) * FULL_WINDOW[1] / 2, (right - left) * FULL_WINDOW[0] / 2
    return (
        max(0, round(centre_y - half_h)),
        min(shape[0], round(centre_y + half_h)),
        max(0, round(centre_x - half_w)),
        min(shape[1], round(centre_x + half_w)),
    )


def without_lines(rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The grey image inside ``box`` with every drawn line filled from its neighbours, and the filled mask.

    The mask is the red pixels grown by one pixel (the renderer's blended edge); OpenCV's Telea inpainting
    fills it from the surrounding MRI.
    """
    import cv2
    from scipy import ndimage

    top, bottom, left, right = box
    window = rgb[top:bottom, left:right]
    mask = ndimage.binary_dilation(red_mask(window), structure=np.ones((3, 3), dtype=bool))
    filled = cv2.inpaint(grey(window), mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return filled, mask


# --------------------------------------------------------------------------------------------------
# gradings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradingProblem:
    """A row of ``radiological_gradings.csv`` left out, and why (patients by pseudonym in reports)."""

    row: int
    patient: str
    reason: str


def read_gradings(path: Path) -> tuple[dict[tuple[str, int], dict[str, int]], list[GradingProblem]]:
    """SPIDER's gradings by ``(patient, IVD label)``, and the rows left out.

    A row is left out when its ``IVD label`` is not a disc (0), a grade is missing or out of its range,
    or it repeats a disc already graded. Values are checked as whole numbers, never guessed.

    Raises:
        InputError: When the file is unreadable or lacks SPIDER's columns.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = set(reader.fieldnames or ())
            missing = [c for c in ("Patient", "IVD label", *GRADING_COLUMNS) if c not in header]
            if missing:
                raise InputError(f"{path} is not SPIDER's gradings file: no column {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} cannot be read ({exc.__class__.__name__})") from None
    gradings: dict[tuple[str, int], dict[str, int]] = {}
    problems = []
    for number, row in enumerate(rows, start=2):
        patient = (row.get("Patient") or "").strip()
        ivd = (row.get("IVD label") or "").strip()
        if not patient.isdigit() or not ivd.isdigit():
            problems.append(GradingProblem(number, patient, "Patient and IVD label must be whole numbers"))
            continue
        if int(ivd) == 0:
            problems.append(GradingProblem(number, patient, "IVD label 0 names no disc"))
            continue
        grades, bad = {}, []
        for column, (name, allowed) in GRADING_COLUMNS.items():
            value = (row.get(column) or "").strip()
            if not value.isdigit() or int(value) not in allowed:
                bad.append(column)
            else:
                grades[name] = int(value)
        if bad:
            problems.append(GradingProblem(number, patient, f"{', '.join(bad)} missing or out of range"))
            continue
        key = (patient, int(ivd))
        if key in gradings:
            problems.append(GradingProblem(number, patient, f"IVD label {ivd} graded twice; the first row is kept"))
            continue
        gradings[key] = grades
    return gradings, problems


# --------------------------------------------------------------------------------------------------
# the import
# --------------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What an import wrote."""

    out: Path
    images: int
    labelled_images: int
    patients: int
    files: Counter
    version: str


class _Accounting:
    """The fate of every input file: ``used``, ``not_needed`` or ``quarantined``, with one reason."""

    def __init__(self, files: Iterable[str]) -> None:
        self.fates: dict[str, tuple[str, str]] = dict.fromkeys(files, ("quarantined", "not read (a bug in lumbar)"))

    def mark(self, relpath: str, fate: str, reason: str) -> None:
        self.fates[relpath] = (fate, reason)

    def counts(self) -> Counter:
        return Counter(fate for fate, _ in self.fates.values())


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)


def import_spider(config: SpiderConfig, progress: Progress | None = None) -> ImportResult:
    """Import the SPIDER folder of ``config`` into a Dataset C folder (see the module docstring).

    Raises:
        InputError: For a folder that is not SPIDER's, or when no labelled disc is left.
    """
    from lumbar.versions import file_index, version_of

    progress = progress or NullProgress()
    source = config.source
    files = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    accounting = _Accounting(files)
    gradings, grading_problems = read_gradings(source / "radiological_gradings.csv")
    accounting.mark("radiological_gradings.csv", "used", "SPIDER's per-disc gradings")
    pseudonymizer = Pseudonymizer((config.secret or PUBLIC_DATA_SECRET).encode("utf-8"))
    graded: dict[str, set[int]] = defaultdict(set)
    for patient, ivd in gradings:
        graded[patient].add(ivd)

    rows: list[dict] = []
    series_report: list[dict] = []
    imported: set[tuple[str, str]] = set()
    with replacing_folder(config.out) as work:
        (work / "images").mkdir()
        (work / "roi").mkdir()
        original = is_original_layout(source)
        folder, suffix = ("images/", ".mha") if original else ("boxed/", ".png")
        series = [f for f in files if f.startswith(folder)]
        step = progress.task("SPIDER series", len(series))
        for relpath in series:
            step(1)
            match = _NAME.fullmatch(Path(relpath).stem + ".png")
            if match is None or match["k"] or not relpath.endswith(suffix):
                accounting.mark(relpath, "quarantined", f"not named <patient>_<sequence>{suffix}")
                continue
            patient, sequence = match["patient"], match["sequence"].lower()
            pseudonym = pseudonymizer.pseudonym(patient)
            if sequence not in config.sequences:
                accounting.mark(relpath, "not_needed", f"sequence {sequence} not imported (--sequences)")
                continue
            note = ""
            if original:
                mask = f"masks/{Path(relpath).name}"
                if mask not in accounting.fates:
                    outcome: list[dict] | str = f"no mask {mask}: the discs cannot be located"
                else:
                    outcome = _import_volume(
                        source / relpath, source / mask, patient, pseudonym, sequence, gradings, work
                    )
                    if not isinstance(outcome, str):
                        outcome, note = outcome
                        accounting.mark(mask, "used", f"the disc positions of {relpath}")
            else:
                outcome = _import_series(source / relpath, patient, pseudonym, sequence, gradings, graded, work)
            if isinstance(outcome, str):
                accounting.mark(relpath, "quarantined", outcome)
                series_report.append({"patient": pseudonym, "sequence": sequence, "quarantined": outcome})
                continue
            rows.extend(outcome)
            imported.add((patient, sequence))
            accounting.mark(relpath, "used", f"{len(outcome)} discs" + (f"; {note}" if note else ""))
            series_report.append({"patient": pseudonym, "sequence": sequence, "discs": len(outcome), "note": note})
        for relpath in files:
            if relpath.startswith("masks/") and accounting.fates[relpath][1].startswith("not read"):
                accounting.mark(relpath, "not_needed", "the mask of a series not imported")
        _account_crops(files, accounting, imported)
        for relpath in files:
            if relpath == "overview.csv":
                accounting.mark(relpath, "not_needed", "series metadata; not needed for the images or labels")
            elif relpath.lower().endswith((".md", ".txt")) and "/" not in relpath:
                accounting.mark(relpath, "not_needed", "documentation")
        labelled = [r for r in rows if r["label"] != ""]
        if not labelled:
            raise InputError(f"no labelled disc could be imported from {source} (see the reasons above)")
        assign_splits(rows, "patient", config.fractions, config.seed)
        rows.sort(key=lambda r: (r["patient"], r["sequence"], r["disc"]))
        held_out = {r["patient"] for r in rows if r["split"] in ("val", "test")}
        unlabelled = _unlabelled_slices(files, source, accounting, pseudonymizer, held_out, work / UNLABELLED)
        columns = (*MANIFEST_COLUMNS, *SPIDER_COLUMNS)
        with (work / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        seen_patients = {r["patient"] for r in rows}
        imported_patients = {p for p, _ in imported}
        without_images = [key for key in gradings if key[0] not in imported_patients]
        counts = accounting.counts()
        report = {
            "lumbar_version": __version__,
            "created": build_time(),
            "source": "SPIDER (original layout: volumes and masks)" if original else "SPIDER (sample layout)",
            "credit": CREDIT,
            "settings": {
                "sequences": list(config.sequences),
                "fractions": list(config.fractions),
                "seed": config.seed,
                "pseudonym_secret": "the key declared for public data" if config.secret is None else "given",
                "full_window": list(FULL_WINDOW),
                "disc_state": "herniation > bulging > degeneration (Pfirrmann >= 3) > normal",
            },
            "summary": {
                "files": len(files),
                "used": counts.get("used", 0),
                "not_needed": counts.get("not_needed", 0),
                "quarantined": counts.get("quarantined", 0),
                "patients": len(seen_patients),
                "images": len(rows),
                "labelled_images": len(labelled),
                "unlabelled_slices": unlabelled,
                "grading_rows_left_out": len(grading_problems),
            },
            "files": [
                {"file": f, "fate": fate, "reason": reason} for f, (fate, reason) in sorted(accounting.fates.items())
            ],
            "series": series_report,
            "gradings": {
                "left_out": [
                    {
                        "row": p.row,
                        "patient": pseudonymizer.pseudonym(p.patient) if p.patient else "",
                        "reason": p.reason,
                    }
                    for p in grading_problems
                ],
                "graded_discs_without_an_image": len(without_images),
            },
        }
        (work / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (work / "datacard.md").write_text(spider_datacard(rows, report), encoding="utf-8")
    version = version_of(file_index(config.out))
    return ImportResult(config.out, len(rows), len(labelled), len(seen_patients), counts, version)


def _ivd_of(code: str) -> int:
    for ivd in range(1, 18):
        if level(ivd)[0] == code:
            return ivd
    return 0


def _import_series(
    path: Path,
    patient: str,
    pseudonym: str,
    sequence: str,
    gradings: Mapping[tuple[str, int], Mapping[str, int]],
    graded: Mapping[str, set[int]],
    work: Path,
) -> list[dict] | str:
    """The rows of one boxed series with its images written, or the reason it is quarantined."""
    try:
        rgb = _read_png(path)
    except (OSError, ValueError, SyntaxError) as exc:
        return f"not a readable PNG ({exc.__class__.__name__})"
    if rgb.ndim != 3:
        return "a grey image: no rectangle can be drawn in it"
    if min(rgb.shape[:2]) < MIN_SLICE:
        return f"{rgb.shape[0]}x{rgb.shape[1]} px: not a sagittal image"
    try:
        rectangles = find_rectangles(rgb)
    except RectangleError as exc:
        return str(exc)
    discs = graded.get(patient, set())
    if len(rectangles) != len(discs) or discs != set(range(1, len(discs) + 1)):
        return (
            f"{len(rectangles)} rectangles but {len(discs)} graded discs (IVD labels "
            f"{_ranges(sorted(discs)) or 'none'}): which rectangle is which disc would be a guess"
        )
    rows = []
    count = len(rectangles)
    for k, rect in enumerate(rectangles, start=1):
        ivd = count + 1 - k  # crops from the top, IVD labels from the bottom (SPIDER's README)
        top, bottom, left, right = rect.inner
        roi = grey(rgb[top:bottom, left:right])
        full, _ = without_lines(rgb, full_window(rect, rgb.shape[:2]))
        rows.append(_disc_row(pseudonym, sequence, ivd, gradings[(patient, ivd)], roi, full, work))
    return rows


def _disc_row(
    pseudonym: str,
    sequence: str,
    ivd: int,
    grades: Mapping[str, int] | None,
    roi: np.ndarray,
    full: np.ndarray,
    work: Path,
) -> dict:
    """Write one disc's ROI and full image; its manifest row (unlabelled when ``grades`` is None)."""
    from PIL import Image

    code, _ = level(ivd)
    stem = f"{pseudonym}_{sequence}_{code}"
    Image.fromarray(roi).save(work / "roi" / f"{stem}.png", optimize=False, compress_level=3)
    Image.fromarray(full).save(work / "images" / f"{stem}.png", optimize=False, compress_level=3)
    labels = (
        {"disc_state": disc_state(grades), "label": binary(grades), **grades}
        if grades
        else {"disc_state": "", "label": ""}
    )
    return {
        "patient": pseudonym,
        "item": f"{sequence}_{code}",
        "disc": code,
        "series": f"sag_{sequence}",
        "source_frame": "",
        "image_path": f"images/{stem}.png",
        "roi_path": f"roi/{stem}.png",
        "herniation": "",
        "scs": "",
        "rfs": "",
        "lfs": "",
        "split": "",
        "sequence": sequence,
        **labels,
    }


# --------------------------------------------------------------------------------------------------
# SPIDER's original layout: 3-D MetaImage volumes and masks (as downloaded from Zenodo)
# --------------------------------------------------------------------------------------------------

#: In SPIDER's masks a disc's voxels hold 200 + its IVD label (the spinal canal 100, vertebrae 1-25), as
#: read in public code that uses SPIDER; not checked on the original files here (they were not available).
DISC_MASK_OFFSET = 200


def is_original_layout(source: Path) -> bool:
    """Whether ``source`` holds SPIDER as downloaded: ``images/*.mha`` and ``masks/*.mha``."""
    return (source / "images").is_dir() and (source / "masks").is_dir()


def window_to_8bit(values: np.ndarray) -> np.ndarray:
    """MRI intensities (any range) to 8-bit grey: the 0.5th to 99.5th percentile stretched to 0-255."""
    low, high = np.percentile(values, (0.5, 99.5))
    scaled = (values.astype(np.float64) - low) / (high - low) if high > low else np.zeros(values.shape)
    return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)


def mid_sagittal(volume: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
    """The sagittal slice with the most disc voxels, oriented with the spine upright, caudal discs at the bottom.

    The sagittal axis is the volume's shortest (a sagittal stack has tens of slices of hundreds of
    pixels). Returns the 8-bit slice and its mask slice, or the reason there is none.
    """
    if volume.shape != mask.shape:
        return f"image {volume.shape} and mask {mask.shape} differ in shape"
    if volume.ndim != 3:
        return f"a {volume.ndim}-D image, not a 3-D volume"
    axis = int(np.argmin(volume.shape))
    discs = (mask > DISC_MASK_OFFSET) & (mask < DISC_MASK_OFFSET + 100)
    per_slice = discs.sum(axis=tuple(a for a in range(3) if a != axis))
    if not per_slice.any():
        return "the mask holds no disc"
    middle = volume.shape[axis] / 2
    best = max(range(volume.shape[axis]), key=lambda i: (per_slice[i], -abs(i - middle)))
    image, labels = np.take(volume, best, axis=axis), np.take(mask, best, axis=axis)
    centres = {
        int(v) - DISC_MASK_OFFSET: np.argwhere(labels == v).mean(axis=0)
        for v in np.unique(labels)
        if DISC_MASK_OFFSET < v < DISC_MASK_OFFSET + 100
    }
    if len(centres) >= 2:
        spread = np.ptp(np.asarray(list(centres.values())), axis=0)
        if spread[1] > spread[0]:  # the discs stack along the columns: turn the spine upright
            image, labels = image.T, labels.T
            centres = {k: c[::-1] for k, c in centres.items()}
        if centres[min(centres)][0] < centres[max(centres)][0]:  # IVD label 1 must be the lowest disc
            image, labels = image[::-1], labels[::-1]
    return window_to_8bit(image), labels


def _import_volume(
    image_path: Path,
    mask_path: Path,
    patient: str,
    pseudonym: str,
    sequence: str,
    gradings: Mapping[tuple[str, int], Mapping[str, int]],
    work: Path,
) -> tuple[list[dict], str] | str:
    """The rows of one original series (its graded discs found in the mask) and a note, or why it is quarantined."""
    import SimpleITK

    try:
        volume = SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(str(image_path)))
        mask = SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(str(mask_path)))
    except RuntimeError as exc:
        return f"not a readable MetaImage ({str(exc).strip().splitlines()[-1][:80] if str(exc).strip() else 'ITK'})"
    sliced = mid_sagittal(volume, mask)
    if isinstance(sliced, str):
        return sliced
    image, labels = sliced
    rows, missing = [], []
    found = sorted(
        int(v) - DISC_MASK_OFFSET for v in np.unique(labels) if DISC_MASK_OFFSET < v < DISC_MASK_OFFSET + 100
    )
    for ivd in found:
        where = np.argwhere(labels == DISC_MASK_OFFSET + ivd)
        (top, left), (bottom, right) = where.min(axis=0), where.max(axis=0) + 1
        if min(bottom - top, right - left) < 4:
            missing.append(ivd)
            continue
        rect = Rectangle((int(top), int(bottom), int(left), int(right)), (int(top), int(bottom), int(left), int(right)))
        wtop, wbottom, wleft, wright = full_window(rect, image.shape)
        rows.append(
            _disc_row(
                pseudonym,
                sequence,
                ivd,
                gradings.get((patient, ivd)),
                image[top:bottom, left:right].copy(),
                image[wtop:wbottom, wleft:wright].copy(),
                work,
            )
        )
    graded = {ivd for p, ivd in gradings if p == patient}
    notes = []
    if graded - set(found):
        notes.append(f"graded discs not in the mid-sagittal slice: IVD {_ranges(sorted(graded - set(found)))}")
    if missing:
        notes.append(f"discs under 4 px in that slice: IVD {_ranges(missing)}")
    return rows, "; ".join(notes)


def _ranges(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)


def _account_crops(files: list[str], accounting: _Accounting, imported: set[tuple[str, str]]) -> None:
    """``discs/`` crops: a check of the rectangles found, never an image of the dataset."""
    per_series: dict[tuple[str, str], list[str]] = defaultdict(list)
    for relpath in files:
        if not relpath.startswith("discs/"):
            continue
        match = _NAME.fullmatch(Path(relpath).name)
        if match is None or not match["k"]:
            accounting.mark(relpath, "quarantined", "not named <patient>_<sequence>_disc_<k>.png")
            continue
        per_series[(match["patient"], match["sequence"].lower())].append(relpath)
    for (patient, sequence), crops in per_series.items():
        reason = (
            "a crop of the red-bordered rectangle; the imported images are cut from the boxed rendering"
            if (patient, sequence) in imported
            else "a crop of a series not imported"
        )
        for relpath in crops:
            accounting.mark(relpath, "not_needed", reason)


def _unlabelled_slices(
    files: list[str],
    source: Path,
    accounting: _Accounting,
    pseudonymizer: Pseudonymizer,
    held_out: set[str],
    out: Path,
) -> int:
    """``slices/``: the pretraining pool of real unlabelled MRI, written to ``out``; returns how many.

    A slice is quarantined when it is not a sagittal image; it stays out of the pool when its patient
    is a validation or test patient of the labelled split (self-supervised pretraining must not see
    them); every other slice, of any sequence, is written as ``<pseudonym>_<sequence>.png`` (8-bit grey).
    """
    from PIL import Image

    out.mkdir()
    written = 0
    for relpath in files:
        if not relpath.startswith("slices/"):
            continue
        match = _NAME.fullmatch(Path(relpath).name)
        try:
            with Image.open(source / relpath) as image:
                image.load()
                pixels = image.convert("L")
        except (OSError, ValueError, SyntaxError) as exc:
            accounting.mark(relpath, "quarantined", f"not a readable image ({exc.__class__.__name__})")
            continue
        width, height = pixels.size
        if min(width, height) < MIN_SLICE:
            reason = f"{height}x{width} px: a slice across the stack, not a sagittal image"
            accounting.mark(relpath, "quarantined", reason)
            continue
        if match is None or match["k"]:
            accounting.mark(relpath, "quarantined", "not named <patient>_<sequence>.png")
            continue
        pseudonym = pseudonymizer.pseudonym(match["patient"])
        if pseudonym in held_out:
            accounting.mark(relpath, "not_needed", "a validation or test patient's slice: kept out of pretraining")
            continue
        pixels.save(out / f"{pseudonym}_{match['sequence'].lower()}.png", compress_level=3)
        accounting.mark(relpath, "used", f"unlabelled real MRI for self-supervised pretraining ({UNLABELLED}/)")
        written += 1
    return written


def spider_datacard(rows: list[dict], report: Mapping) -> str:
    """The data card: what the data is and its credit first, the class counts per level, the splits."""
    s = report["summary"]
    discs = {(r["patient"], r["disc"]): r for r in rows if r["label"] != ""}  # one disc counts once
    codes = sorted({code for _, code in discs}, key=_ivd_of, reverse=True)
    names = [level(_ivd_of(code))[1] for code in codes]
    lines = [
        "# Dataset: SPIDER lumbar MRI (real, sagittal), imported by lumbar",
        "",
        f"Real sagittal lumbar-spine MRI from {CREDIT}. One image per disc of each imported series "
        f"({', '.join(report['settings']['sequences'])}): the ROI image is the inside of the disc's "
        "rectangle, the full image a wider window with the drawn lines inpainted. Labels are SPIDER's "
        "radiological gradings mapped to the paper's disc states (herniation > bulging > degeneration, "
        "Pfirrmann grade 3 or more > normal); the paper itself graded axial T2 images of its own patients.",
        "",
        f"Imported by lumbar {__version__} on {report['created']}.",
        "",
        f"- Patients: {s['patients']}; disc images: {s['images']}; labelled: {s['labelled_images']}",
        f"- Input files: {s['files']} ({s['used']} used, {s['not_needed']} not needed, {s['quarantined']} "
        "quarantined; see `report.json`)",
        f"- Grading rows left out: {s['grading_rows_left_out']}",
        "",
        "## Disc state per level (counted once per disc, paper Table 5 layout)",
        "",
        "| Disc state | " + " | ".join(names) + " | Total |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for state, title in enumerate(DISC_STATES):
        values = [
            sum(1 for (_, c), r in discs.items() if c == code and int(r["disc_state"]) == state) for code in codes
        ]
        lines.append(f"| {state} {title} | " + " | ".join(map(str, values)) + f" | {sum(values)} |")
    lines += ["", "## Pfirrmann grade per level", "", "| Grade | " + " | ".join(names) + " | Total |"]
    lines.append("|---|" + "---|" * (len(names) + 1))
    for grade in range(1, 6):
        values = [sum(1 for (_, c), r in discs.items() if c == code and int(r["pfirrmann"]) == grade) for code in codes]
        lines.append(f"| {grade} | " + " | ".join(map(str, values)) + f" | {sum(values)} |")
    lines += ["", "## Splits (by patient)", "", "| Split | Patients | Disc images | Abnormal |", "|---|---|---|---|"]
    for split in ("train", "val", "test"):
        members = [r for r in rows if r["split"] == split and r["label"] != ""]
        lines.append(
            f"| {split} | {len({r['patient'] for r in members})} | {len(members)} | "
            f"{sum(int(r['label']) for r in members)} |"
        )
    return "\n".join(lines) + "\n"
