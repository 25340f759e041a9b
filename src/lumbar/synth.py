"""A generator of realistic synthetic lumbar-spine PACS exports (the embedded default data).

No real lumbar MRI may be downloaded here, so tests, benchmarks and the demo run on studies written
by this module: real DICOM files (pydicom) whose pixels are an anatomical phantom, with the series a
PACS export holds, vendor-style series descriptions, fake patient identifiers to test
de-identification, a grading file and the generator's ground truth.

Per patient the export holds a localizer (3 planes), sagittal T1 and T2 (13-17 frames), axial T1 and
T2 (25-30 frames: five 5-slice blocks through the discs from L5-S1 up to L1-L2, then extra cranial
slices) and an MR myelography (1-4 frames). Files are named by SOPInstanceUID, so their order must
come from the DICOM tags.

Each disc gets a state drawn with the frequencies of the paper's Table 5 at its level (mostly normal
at L1-L3, mostly bulge at L4-L5, herniation only at L4-L5 and L5-S1): normal, degeneration (dark T2
nucleus), bulge (broad posterior extension), herniation (focal protrusion into the canal), with
spinal-canal and foraminal narrowing graded 0-3. Noise,
a bias field, pose and size jitter and overlapping signal ranges make the task learnable but not
trivial.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from lumbar.dicom import SYNTH_MARK, SYNTH_MARK_TAG
from lumbar.errors import InputError
from lumbar.labels import GRADE_NAMES
from lumbar.paper import table5_counts
from lumbar.selection import AXIAL_DISC_ORDER, DISCS


@cache
def disc_state_frequencies() -> dict[str, tuple[float, ...]]:
    """Disc-state probabilities per disc (normal, degeneration, bulge, herniation), from the paper's Table 5.

    Each level's counts (:func:`lumbar.paper.table5_counts`) over the level's total, so a synthetic
    export has the paper's class balance (545 of 905 discs normal, about 60%). States the paper never
    saw at a level (herniation at L1-L4) have probability 0.
    """
    states = GRADE_NAMES["disc_state"]
    frequencies = {}
    for disc, counts in table5_counts().items():
        total = sum(counts.values())
        frequencies[disc] = tuple(counts[state] / total for state in states)
    return frequencies


#: Stenosis grade frequencies (0-3) given the disc state.
_STENOSIS_GIVEN_STATE: dict[int, tuple[float, float, float, float]] = {
    0: (0.88, 0.10, 0.02, 0.00),
    1: (0.70, 0.22, 0.06, 0.02),
    2: (0.45, 0.33, 0.17, 0.05),
    3: (0.25, 0.30, 0.28, 0.17),
}

COMPRESSIONS: tuple[str, ...] = ("none", "rle", "j2k", "mixed")

#: Signal per tissue for (T1, T2) contrast; myelography uses heavy T2.
_TISSUE: dict[str, tuple[float, float]] = {
    "fat": (900.0, 620.0),
    "muscle": (380.0, 230.0),
    "organ": (520.0, 480.0),
    "marrow": (620.0, 380.0),
    "cortex": (180.0, 140.0),
    "annulus": (330.0, 190.0),
    "nucleus": (420.0, 900.0),
    "csf": (150.0, 1100.0),
    "nerve": (430.0, 480.0),
    "epidural": (820.0, 600.0),
}

_FAMILY = ("MUSTERMANN", "ROSSI", "GARCIA", "NOWAK", "DUBOIS", "JANSEN", "SILVA", "KOWALSKI", "MOREAU", "FISCHER")
_GIVEN = ("ERIKA", "MARIO", "LUCIA", "PIOTR", "CAMILLE", "SANNE", "JOAO", "ANNA", "LOUIS", "HELGA")
_INSTITUTIONS = ("St. Elsewhere General Hospital", "Clinica Fictiva del Norte", "Hopital Imaginaire Central")
_VENDORS: tuple[dict[str, str], ...] = (
    {
        "manufacturer": "SIEMENS",
        "loc": "localizer",
        "sag_t1": "t1_tse_sag",
        "sag_t2": "t2_tse_sag",
        "ax_t1": "t1_tse_tra",
        "ax_t2": "t2_tse_tra",
        "myelo": "MYELO 3D",
    },
    {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "loc": "3-pl loc",
        "sag_t1": "SAG T1",
        "sag_t2": "T2 SAG",
        "ax_t1": "AX T1",
        "ax_t2": "AX T2",
        "myelo": "MR Myelography",
    },
    {
        "manufacturer": "Philips",
        "loc": "Survey",
        "sag_t1": "Sagittal T1",
        "sag_t2": "Sagittal T2/STIR",
        "ax_t1": "T1W_TSE tra",
        "ax_t2": "T2W_TSE tra",
        "myelo": "MYELO",
    },
    # A site whose technologists leave descriptions uninformative: identification falls back on tags.
    {
        "manufacturer": "Canon_MEC",
        "loc": "SCOUT",
        "sag_t1": "SE 2",
        "sag_t2": "SE 3",
        "ax_t1": "SE 4",
        "ax_t2": "SE 5",
        "myelo": "SE 6",
    },
)

_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."


@dataclass(frozen=True)
class SynthConfig:
    """Settings of a synthetic PACS export.

    Attributes:
        patients: Number of patients.
        seed: Random seed; the same seed writes the same export.
        size: Matrix size (rows = columns) of the sagittal and axial series, in pixels.
        compression: Transfer syntax: ``none`` (explicit VR little endian), ``rle`` (RLE lossless),
            ``j2k`` (JPEG 2000 lossless) or ``mixed`` (a different one per patient, as a PACS fed by
            several scanners exports).
        first_id: Number of the first patient (ids are ``P`` + 6 digits).
        workers: Processes used to write patients in parallel.
        phi_folders: Lay the export out as careless real exports do, with identifiers in folder names
            (``<accession>/<FAMILY^GIVEN>/<series>/`` or ``<institution>/<Family_Given_birthdate>/<date_accession>/``)
            and the accession number and institution in every SeriesDescription: the input of the
            identifier-leak test (no output of a build may contain any of them).
    """

    patients: int = 10
    seed: int = 0
    size: int = 256
    compression: str = "none"
    first_id: int = 1
    workers: int = 1
    phi_folders: bool = False

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise InputError(f"patients must be at least 1, got {self.patients}")
        if not 64 <= self.size <= 1024:
            raise InputError(f"size must be between 64 and 1024 pixels, got {self.size}")
        if self.compression not in COMPRESSIONS:
            raise InputError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if self.first_id < 0 or self.workers < 1:
            raise InputError("first_id must be >= 0 and workers >= 1")


@dataclass(frozen=True)
class DiscTruth:
    """The drawn state of one disc and how it was painted."""

    disc: str
    disc_state: int
    herniation: int
    scs: int
    rfs: int
    lfs: int
    nucleus_t2: float
    bulge_px: float
    hernia_px: float
    hernia_side: float


# --------------------------------------------------------------------------------------------------
# Drawing helpers (all in pixel units of a square canvas)
# --------------------------------------------------------------------------------------------------


class _Canvas:
    """A square float image painted with anti-aliased superellipses (only their bounding boxes are touched)."""

    def __init__(self, size: int, background: float = 0.0) -> None:
        self.size = size
        self.image = np.full((size, size), background, dtype=np.float32)

    def ellipse(
        self, cx: float, cy: float, rx: float, ry: float, value: float, power: float = 2.0, weight: float = 1.0
    ) -> None:
        """Paint a superellipse (power 2 = ellipse, 4 = rounded box) of ``value``, blended by ``weight``."""
        if weight <= 0.0:
            return
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        x0, x1 = max(int(cx - rx - 2), 0), min(int(cx + rx + 3), self.size)
        y0, y1 = max(int(cy - ry - 2), 0), min(int(cy + ry + 3), self.size)
        if x0 >= x1 or y0 >= y1:
            return
        xs = (np.arange(x0, x1, dtype=np.float32) - cx) / rx
        ys = (np.arange(y0, y1, dtype=np.float32) - cy) / ry
        r = (np.abs(ys)[:, None] ** power + np.abs(xs)[None, :] ** power) ** (1.0 / power)
        mask = np.clip((1.0 - r) * min(rx, ry) + 0.5, 0.0, 1.0) * weight
        window = self.image[y0:y1, x0:x1]
        window += (value - window) * mask

    def band(
        self, centre_x: np.ndarray, half_width: float, y0: int, y1: int, value: float, weight: float = 1.0
    ) -> None:
        """Paint a vertical band of rows ``y0..y1`` whose centre column per row is ``centre_x``."""
        y0, y1 = max(y0, 0), min(y1, self.size)
        if weight <= 0.0 or y0 >= y1:
            return
        xs = np.arange(self.size, dtype=np.float32)[None, :]
        mask = np.clip(half_width - np.abs(xs - centre_x[y0:y1, None]) + 0.5, 0.0, 1.0) * weight
        window = self.image[y0:y1]
        window += (value - window) * mask


def _pick(rng: np.random.Generator, probabilities: tuple[float, ...]) -> int:
    return int(rng.choice(len(probabilities), p=np.asarray(probabilities) / sum(probabilities)))


def draw_discs(rng: np.random.Generator, frequencies: Mapping[str, tuple[float, ...]] | None = None) -> list[DiscTruth]:
    """Draw the state and the painting parameters of the five discs of one patient.

    Args:
        rng: The patient's random generator.
        frequencies: Disc-state probabilities (normal, degeneration, bulge, herniation) per disc; None
            for the paper's Table 5 (:func:`disc_state_frequencies`).
    """
    frequencies = frequencies or disc_state_frequencies()
    truths = []
    for disc in DISCS:
        state = _pick(rng, frequencies[disc])
        herniation = _pick(rng, (0.0, 0.6, 0.3, 0.1)) if state == 3 else 0
        scs, rfs, lfs = (_pick(rng, _STENOSIS_GIVEN_STATE[state]) for _ in range(3))
        nucleus = float(rng.uniform(700, 1000)) if state in (0, 2) else float(rng.uniform(330, 620))
        if state == 3:
            nucleus = float(rng.uniform(450, 900))
        bulge = float(rng.uniform(3.5, 7.5)) if state == 2 else float(rng.uniform(0.0, 1.5))
        hernia = float(rng.uniform(4.0, 8.0)) if state == 3 else 0.0
        truths.append(
            DiscTruth(
                disc, state, herniation, scs, rfs, lfs, nucleus, bulge, hernia, float(rng.choice([-1, -0.4, 0, 0.4, 1]))
            )
        )
    return truths


def _signal(tissue: str, weighting: str) -> float:
    t1, t2 = _TISSUE[tissue]
    return t1 if weighting == "t1" else t2


def _finish(canvas: _Canvas, rng: np.random.Generator, noise: float, gain: float) -> np.ndarray:
    """Blur (PSF), bias field and Rician noise; returns non-negative float signal."""
    img = canvas.image
    img = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 1)) / 5.0
    s = canvas.size
    grid = np.arange(s, dtype=np.float32) / s - 0.5
    u, v = grid[None, :], grid[:, None]
    a = rng.normal(0, 0.25, size=3)
    bias = 1.0 + a[0] * u + a[1] * v + a[2] * (u * u + v * v)
    img = img * np.clip(bias, 0.6, 1.4) * gain
    n1 = rng.normal(0, noise, img.shape).astype(np.float32)
    n2 = rng.normal(0, noise, img.shape).astype(np.float32)
    return np.sqrt((img + n1) ** 2 + n2**2)


def axial_image(
    size: int,
    disc: DiscTruth,
    level: int,
    offset: float,
    weighting: str,
    rng: np.random.Generator,
    pose: tuple[float, float, float],
) -> np.ndarray:
    """Paint one axial slice (anterior up, patient right on the image left).

    Args:
        size: Matrix size.
        disc: The disc this slice block passes through.
        level: 0 for L5-S1 ... 4 for L1-L2 (5 and more: above L1-L2, vertebral body only).
        offset: Slice offset from the disc centre in slice units (0 = disc centre).
        weighting: ``t1`` or ``t2``.
        rng: Random generator for noise.
        pose: ``(dx, dy, scale)`` jitter of this patient.
    """
    k = size / 256.0
    dx, dy, scale = pose
    c = _Canvas(size)

    def sig(tissue: str) -> float:
        return _signal(tissue, weighting)

    cx, cy = (128 + dx) * k, (112 + dy) * k
    # body outline, subcutaneous fat, abdomen and muscles
    c.ellipse(128 * k, 128 * k, 120 * k, 104 * k, sig("fat"))
    c.ellipse(128 * k, 126 * k, 110 * k, 94 * k, sig("muscle"))
    c.ellipse(128 * k, 60 * k, 96 * k, 46 * k, sig("organ"))
    grow = 4 - min(level, 4)
    rx = (29 - 0.8 * grow) * k * scale
    ry = (21 - 0.5 * grow) * k * scale
    for side in (-1, 1):
        c.ellipse(cx + side * (rx + 17 * k), cy + 8 * k, 15 * k, 13 * k, sig("muscle") * 0.85)
    canal_y = cy + ry + 13 * k
    # posterior arch, spinous process, paraspinal muscles
    c.ellipse(cx, canal_y + 3 * k, 24 * k, 19 * k, sig("cortex"))
    c.ellipse(cx, canal_y + 3 * k, 20 * k, 15 * k, sig("marrow"))
    c.ellipse(cx, canal_y + 34 * k, 4 * k, 17 * k, sig("cortex"), power=4)
    for side in (-1, 1):
        c.ellipse(cx + side * 27 * k, canal_y + 38 * k, 19 * k, 16 * k, sig("muscle"))
    # disc versus vertebral body: the disc shows fully at its centre slice and fades into the endplates
    weight = float(np.exp(-((offset / 1.25) ** 2))) if level < 5 else 0.0
    c.ellipse(cx, cy, rx, ry, sig("cortex"))
    c.ellipse(cx, cy, rx - 2.5 * k, ry - 2.5 * k, sig("marrow"))
    near = abs(offset) < 2.5 and level < 5
    narrowing = 1.0 - 0.17 * disc.scs if near else 1.0
    c.ellipse(cx, canal_y, 13 * k * narrowing, 10 * k * narrowing, sig("csf"))
    for side in (-1, 1):
        c.ellipse(cx + side * 4 * k, canal_y + 4 * k, 1.8 * k, 1.8 * k, sig("nerve"))
    for side, grade in ((-1, disc.rfs), (1, disc.lfs)):
        shrink = 1.0 - 0.27 * grade if near else 1.0
        c.ellipse(cx + side * 19 * k, canal_y - 5 * k, 6 * k * shrink, 4.5 * k * shrink, sig("epidural"))
    if weight > 0.02:
        # the annulus, with a broad posterior extension for a bulge (painted over the canal's front)
        bulge = disc.bulge_px * k
        c.ellipse(cx, cy, rx + 1 * k, ry + 1 * k, sig("annulus"), weight=weight)
        c.ellipse(cx, cy + bulge * 0.55, rx + 1 * k, ry + 1 * k + bulge * 0.45, sig("annulus"), weight=weight)
        nucleus = disc.nucleus_t2 if weighting == "t2" else _signal("nucleus", "t1")
        c.ellipse(cx, cy + 1 * k, rx * 0.6, ry * 0.52, nucleus, weight=weight)
    # a focal herniation protrudes into the canal (migrated fragments show on neighbouring slices)
    if disc.hernia_px > 0 and level < 5:
        reach = 1.8 if disc.herniation >= 2 else 1.1
        hw = float(np.exp(-((offset / reach) ** 2)))
        if hw > 0.05:
            hx = cx + disc.hernia_side * 6 * k
            hy = cy + ry + disc.hernia_px * 0.6 * k
            c.ellipse(hx, hy, disc.hernia_px * k, disc.hernia_px * 0.8 * k, sig("annulus") * 1.1, weight=hw)
            inner = disc.nucleus_t2 * 0.8 if weighting == "t2" else _signal("nucleus", "t1")
            c.ellipse(hx, hy - 1 * k, disc.hernia_px * 0.5 * k, disc.hernia_px * 0.4 * k, inner, weight=hw)
    return _finish(c, rng, noise=float(rng.uniform(22, 40)), gain=float(rng.uniform(0.85, 1.15)))


def sagittal_image(
    size: int,
    discs: list[DiscTruth],
    lateral: float,
    weighting: str,
    rng: np.random.Generator,
    pose: tuple[float, float, float],
) -> np.ndarray:
    """Paint one sagittal slice (anterior left, cranial up); ``lateral`` is the offset from midline in mm."""
    k = size / 256.0
    dx, dy, scale = pose
    c = _Canvas(size)

    def sig(tissue: str) -> float:
        return _signal(tissue, weighting)

    c.ellipse(150 * k, 128 * k, 150 * k, 170 * k, sig("organ"))
    c.ellipse(212 * k, 128 * k, 40 * k, 170 * k, sig("muscle"))
    c.ellipse(252 * k, 128 * k, 8 * k, 170 * k, sig("fat"))
    midline = float(np.clip(1.0 - abs(lateral) / 11.0, 0.0, 1.0))
    body_h, body_w, disc_h = 24 * k * scale, 34 * k * scale, 8.5 * k * scale
    # the column's anterior-posterior centre follows the lumbar lordosis
    rows = np.arange(size, dtype=np.float32)
    curve = (110 + dx + 10 * np.sin(np.pi * np.clip(rows / (225 * k), 0, 1))) * k
    canal_x = curve + body_w / 2 + 8 * k
    c.band(canal_x + 13 * k, 6 * k, int(6 * k), int(226 * k), sig("cortex"))  # posterior longitudinal structures
    c.band(canal_x, 7 * k, int(6 * k), int(228 * k), sig("csf"), weight=midline)
    c.band(canal_x, 7 * k, int(6 * k), int(228 * k), sig("nerve"), weight=1.0 - midline)
    by_name = {d.disc: d for d in discs}
    y = (14 + dy) * k
    for name in ("T12L1", "L12", "L23", "L34", "L45", "L51"):
        row = int(np.clip(y + body_h / 2, 0, size - 1))
        bx, cy_body = float(curve[row]), y + body_h / 2
        c.ellipse(bx, cy_body, body_w / 2, body_h / 2, sig("cortex"), power=4)
        c.ellipse(bx, cy_body, body_w / 2 - 2 * k, body_h / 2 - 2 * k, sig("marrow"), power=4)
        c.ellipse(bx + body_w / 2 + 40 * k, cy_body + 4 * k, 11 * k, 9 * k, sig("cortex"), weight=0.6 + 0.4 * midline)
        y += body_h
        disc = by_name.get(name)
        height = disc_h * (0.7 if disc is not None and disc.disc_state == 1 else 1.0)
        dcx, dcy = bx + 1 * k, y + height / 2
        c.ellipse(dcx, dcy, body_w / 2, height / 2 + 0.5 * k, sig("annulus"))
        if disc is not None and disc.bulge_px > 0:
            c.ellipse(dcx + body_w / 2 - 1 * k, dcy, disc.bulge_px * k * 0.9, height / 2, sig("annulus"))
        nucleus = (disc.nucleus_t2 if disc else 880.0) if weighting == "t2" else _signal("nucleus", "t1")
        c.ellipse(dcx, dcy, body_w * 0.3, height * 0.3, nucleus)
        if disc is not None and disc.hernia_px > 0 and abs(lateral - 4 * disc.hernia_side) < 9:
            shift = {2: 1.0, 3: 1.6}.get(disc.herniation, 0.0) * disc.hernia_px * k
            c.ellipse(
                dcx + body_w / 2 + disc.hernia_px * 0.5 * k,
                dcy + shift,
                disc.hernia_px * 0.7 * k,
                disc.hernia_px * 0.8 * k,
                sig("annulus") * 1.1,
            )
        y += height
    row = int(np.clip(y + 30 * k, 0, size - 1))
    c.ellipse(float(curve[row]) - 6 * k, y + 30 * k, body_w / 2 + 4 * k, 30 * k, sig("marrow"), power=3)
    return _finish(c, rng, noise=float(rng.uniform(22, 40)), gain=float(rng.uniform(0.85, 1.15)))


def myelo_image(
    size: int, discs: list[DiscTruth], angle: float, rng: np.random.Generator, pose: tuple[float, float, float]
) -> np.ndarray:
    """Paint one heavily T2-weighted myelography projection (coronal view of the thecal sac)."""
    k = size / 256.0
    dx, dy, _ = pose
    c = _Canvas(size, background=40.0)
    by_level = {d.disc: d for d in discs}
    cx = (128 + dx + 6 * np.sin(angle)) * k
    c.ellipse(cx, (120 + dy) * k, 12 * k, 110 * k, 1150.0, power=3)
    for i, name in enumerate(("L12", "L23", "L34", "L45", "L51")):
        yl = (62 + 34 * i + dy) * k
        d = by_level[name]
        waist = 0.18 * d.scs + (0.12 if d.disc_state == 2 else 0.0) + (0.2 if d.disc_state == 3 else 0.0)
        c.ellipse(cx, yl, 12 * k * (0.2 + waist), 4 * k, 60.0)
        for side in (-1, 1):
            sleeve = 1.0 - 0.3 * (d.rfs if side < 0 else d.lfs)
            c.ellipse(cx + side * 18 * k, yl + 9 * k, 8 * k * sleeve, 2.2 * k, 900.0)
    return _finish(c, rng, noise=float(rng.uniform(15, 25)), gain=float(rng.uniform(0.9, 1.1)))


# --------------------------------------------------------------------------------------------------
# DICOM writing
# --------------------------------------------------------------------------------------------------


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=_UID_ROOT, entropy_srcs=[str(p) for p in parts]))


def _transfer_syntax(compression: str, rng: np.random.Generator) -> str:
    if compression == "mixed":
        compression = str(rng.choice(["none", "rle", "j2k"]))
    return compression


def _write_frame(path: Path, meta: dict, pixels: np.ndarray, compression: str) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = meta["SOPInstanceUID"]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = _UID_ROOT + "1"
    for key, value in meta.items():
        setattr(ds, key, value)
    # the mark of a made-up patient: the published demo key is accepted only for files that carry it
    ds.add_new(SYNTH_MARK_TAG, "LO", SYNTH_MARK)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if compression == "none":
        ds.PixelData = pixels.tobytes()
    else:
        ds.compress(RLELossless if compression == "rle" else JPEG2000Lossless, pixels, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


class _PatientWriter:
    """Writes the series of one patient."""

    def __init__(self, out: Path, number: int, config: SynthConfig) -> None:
        self.rng = np.random.default_rng([config.seed, number])
        self.config = config
        self.number = number
        self.patient_id = f"P{number:06d}"
        self.folder = out / self.patient_id
        rng = self.rng
        self.compression = _transfer_syntax(config.compression, rng)
        self.vendor = _VENDORS[int(rng.integers(len(_VENDORS)))]
        born = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 22000)))
        study = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1800)))
        self.study_uid = _uid(config.seed, number, "study")
        self.frame_of_reference = _uid(config.seed, number, "for")
        self.common = {
            "SOPClassUID": _MR_IMAGE_STORAGE,
            "Modality": "MR",
            "Manufacturer": self.vendor["manufacturer"],
            "PatientName": f"{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}",
            "PatientID": self.patient_id,
            "PatientBirthDate": born.strftime("%Y%m%d"),
            "PatientSex": str(rng.choice(["F", "M"])),
            "InstitutionName": str(rng.choice(_INSTITUTIONS)),
            "ReferringPhysicianName": f"DR^{rng.choice(_FAMILY)}",
            "StudyDate": study.strftime("%Y%m%d"),
            "StudyTime": "101500",
            "AccessionNumber": f"A{int(rng.integers(10**7, 10**8))}",
            "StudyID": "1",
            "StudyInstanceUID": self.study_uid,
            "FrameOfReferenceUID": self.frame_of_reference,
            "MagneticFieldStrength": float(rng.choice([1.5, 3.0])),
            "BodyPartExamined": "LSPINE",
        }
        if config.phi_folders:
            family, given = self.common["PatientName"].split("^")
            accession, institution = self.common["AccessionNumber"], self.common["InstitutionName"]
            if number % 2:
                self.folder = out / accession / f"{family}^{given}"
            else:
                born_text = self.common["PatientBirthDate"]
                self.folder = out / institution / f"{family.title()}_{given.title()}_{born_text}"
                self.folder = self.folder / f"{self.common['StudyDate']}_{accession}"
        self.discs = draw_discs(rng)
        self.pose = (float(rng.normal(0, 3)), float(rng.normal(0, 3)), float(rng.uniform(0.92, 1.08)))
        self.frames_written = 0

    def _series(
        self,
        series_number: int,
        kind: str,
        images: Iterator[tuple[np.ndarray, dict]],
        te: float,
        tr: float,
        thickness: float,
        spacing: float,
    ) -> None:
        rng = self.rng
        series_uid = _uid(self.config.seed, self.number, "series", series_number)
        slope = float(rng.choice([1.0, 1.0, 0.5]))
        with_window = rng.random() > 0.2
        with_instance = rng.random() > 0.12 or kind in ("localizer", "myelo")
        images = list(images)
        for instance, (signal, geometry) in enumerate(images, start=1):
            stored = np.clip(np.rint(signal / slope), 0, 4095).astype(np.uint16)
            meta = dict(self.common)
            description = self.vendor["loc" if kind == "localizer" else kind]
            if self.config.phi_folders:  # free text as some sites fill it: accession number and institution
                description = f"{description} {meta['AccessionNumber']} {meta['InstitutionName']}"[:64]
            meta.update(
                SOPInstanceUID=_uid(self.config.seed, self.number, series_number, instance),
                SeriesInstanceUID=series_uid,
                SeriesNumber=series_number,
                SeriesDescription=description,
                InstanceNumber=instance if with_instance else "",
                ImagesInAcquisition=len(images),
                EchoTime=te,
                RepetitionTime=tr,
                SliceThickness=thickness,
                SpacingBetweenSlices=spacing,
                PixelSpacing=[geometry["spacing"], geometry["spacing"]],
                ImageOrientationPatient=geometry["iop"],
                ImagePositionPatient=geometry["ipp"],
                RescaleSlope=slope,
                RescaleIntercept=0.0,
                RescaleType="US",
            )
            if kind == "localizer":
                meta["ImageType"] = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
            if with_window:
                lo, hi = np.percentile(signal, [1, 99.5])
                meta["WindowCenter"] = round(float((lo + hi) / 2 * rng.uniform(0.95, 1.05)), 1)
                meta["WindowWidth"] = round(float((hi - lo) * rng.uniform(0.9, 1.1)), 1)
            folder = self.folder
            if self.config.phi_folders:
                folder = folder / re.sub(r"[^\w.^ -]", "_", f"{series_number:02d} {description}")
                folder.mkdir(parents=True, exist_ok=True)
            _write_frame(folder / f"{meta['SOPInstanceUID']}.dcm", meta, stored, self.compression)
            self.frames_written += 1

    def write(self) -> list[dict]:
        """Write every series; return the ground-truth rows of this patient."""
        self.folder.mkdir(parents=True, exist_ok=True)
        rng, size, pose = self.rng, self.config.size, self.pose
        pixel = round(260.0 / size, 4)
        sag_iop = [0, 1, 0, 0, 0, -1]
        ax_iop = [1, 0, 0, 0, 1, 0]

        def sag_geometry(lateral: float) -> dict:
            return {"spacing": pixel, "iop": sag_iop, "ipp": [round(lateral, 2), -130.0, 130.0]}

        def ax_geometry(z: float) -> dict:
            return {"spacing": pixel, "iop": ax_iop, "ipp": [-130.0, -130.0, round(z, 2)]}

        # 1. localizer: three planes in one series
        loc_size = max(64, size // 2)

        def localizer() -> Iterator[tuple[np.ndarray, dict]]:
            yield sagittal_image(loc_size, self.discs, 0.0, "t2", rng, pose), sag_geometry(0.0)
            yield axial_image(loc_size, self.discs[3], 1, 0.0, "t2", rng, pose), ax_geometry(0.0)
            cor = sagittal_image(loc_size, self.discs, 12.0, "t1", rng, pose).T.copy()
            yield cor, {"spacing": pixel, "iop": [1, 0, 0, 0, 0, -1], "ipp": [-130.0, 0.0, 130.0]}

        self._series(1, "localizer", localizer(), te=2.0, tr=8.0, thickness=10.0, spacing=10.0)

        # 2-3. sagittal T1 and T2, 13-17 frames, 4 mm apart, the midline at frame floor(n/2)+1
        n_sag = int(rng.integers(13, 18))
        mid = n_sag // 2
        for series_number, weighting, te, tr in (
            (2, "t1", float(rng.uniform(9, 14)), 600.0),
            (3, "t2", float(rng.uniform(95, 125)), 3500.0),
        ):
            laterals = [(i - mid) * 4.0 for i in range(n_sag)]
            images = (
                (sagittal_image(size, self.discs, lat, weighting, rng, pose), sag_geometry(lat)) for lat in laterals
            )
            self._series(series_number, f"sag_{weighting}", images, te=round(te, 1), tr=tr, thickness=4.0, spacing=4.0)

        # 4-5. axial T1 and T2: 5 slices through each disc from L5-S1 upwards, then extra cranial slices
        n_ax = int(rng.integers(25, 31))
        slices: list[tuple[int, float]] = []  # (level, offset from disc centre)
        for level in range(5):
            slices.extend((level, float(o)) for o in (-2, -1, 0, 1, 2))
        slices.extend((5, float(i)) for i in range(n_ax - 25))
        disc_by_level = {
            level: next(d for d in self.discs if d.disc == code) for level, code in enumerate(AXIAL_DISC_ORDER)
        }
        z_positions = [-60.0 + 4.0 * i for i in range(n_ax)]
        for series_number, weighting, te, tr in (
            (4, "t1", float(rng.uniform(9, 14)), 550.0),
            (5, "t2", float(rng.uniform(95, 125)), 4000.0),
        ):
            images = (
                (axial_image(size, disc_by_level[min(level, 4)], level, offset, weighting, rng, pose), ax_geometry(z))
                for (level, offset), z in zip(slices, z_positions, strict=True)
            )
            self._series(series_number, f"ax_{weighting}", images, te=round(te, 1), tr=tr, thickness=3.5, spacing=4.0)

        # 6. MR myelography: 1-4 thick-slab projections
        n_myelo = int(rng.integers(1, 5))
        angles = np.linspace(-0.6, 0.6, n_myelo) if n_myelo > 1 else [0.0]
        images = (
            (
                myelo_image(size, self.discs, float(a), rng, pose),
                {"spacing": pixel, "iop": [1, 0, 0, 0, 0, -1], "ipp": [-130.0, round(float(a) * 10, 2), 130.0]},
            )
            for a in angles
        )
        self._series(
            6, "myelo", images, te=float(round(rng.uniform(700, 1000))), tr=8000.0, thickness=40.0, spacing=40.0
        )

        centre = {code: 5 * x + 3 for x, code in enumerate(AXIAL_DISC_ORDER)}
        return [
            {
                "patient_id": self.patient_id,
                "disc": d.disc,
                "axial_frame": centre[d.disc],
                "axial_frames": n_ax,
                "sagittal_frame": mid + 1,
                "sagittal_frames": n_sag,
                "myelo_frames": n_myelo,
                "disc_state": d.disc_state,
                "herniation": d.herniation,
                "scs": d.scs,
                "rfs": d.rfs,
                "lfs": d.lfs,
                "vendor": self.vendor["manufacturer"],
                "compression": self.compression,
                "files": self.frames_written,
            }
            for d in self.discs
        ]


def draw_patient_discs(config: SynthConfig, number: int) -> list[DiscTruth]:
    """The discs patient ``number`` gets in an export written with ``config``, without writing a file."""
    return _PatientWriter(Path(), number, config).discs


def _write_one(args: tuple[str, int, SynthConfig]) -> list[dict]:
    out, number, config = args
    return _PatientWriter(Path(out), number, config).write()


TRUTH_COLUMNS = (
    "patient_id",
    "disc",
    "axial_frame",
    "axial_frames",
    "sagittal_frame",
    "sagittal_frames",
    "myelo_frames",
    "disc_state",
    "herniation",
    "scs",
    "rfs",
    "lfs",
    "vendor",
    "compression",
    "files",
)


def write_pacs_export(out: str | Path, config: SynthConfig, progress: Callable[[int], None] | None = None) -> Path:
    """Write a synthetic PACS export with ``labels.csv`` and ``truth.csv``.

    Args:
        out: Output folder (created; existing patient folders are overwritten).
        config: The export's settings.
        progress: Called with 1 after each patient.

    Returns:
        The output folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), config.first_id + i, config) for i in range(config.patients)]
    rows: list[dict] = []
    if config.workers > 1:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            for result in pool.map(_write_one, jobs):
                rows.extend(result)
                if progress:
                    progress(1)
    else:
        for job in jobs:
            rows.extend(_write_one(job))
            if progress:
                progress(1)
    with (out / "truth.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with (out / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "disc", "disc_state", "herniation", "scs", "rfs", "lfs"])
        for r in rows:
            writer.writerow(
                [r["patient_id"], r["disc"], r["disc_state"], r["herniation"], r["scs"], r["rfs"], r["lfs"]]
            )
    return out
