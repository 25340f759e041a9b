"""DICOM indexing (headers only), series identification, frame ordering and frame decoding.

Indexing reads each file's header without decoding pixels (pixel data is only located, to catch
truncated files). Series are identified by SeriesDescription keywords with a configurable mapping,
falling back on ImageOrientationPatient (sagittal / coronal / axial) and EchoTime (T2 when
TE > 80 ms). Only the frames the slice-selection rule picks are ever decoded.

Conventions: patient coordinates are DICOM LPS millimetres; slice position is the projection of
ImagePositionPatient on the slice normal (row cosines x column cosines).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lumbar.errors import InputError

#: Series kinds the builder knows.
SERIES_KINDS: tuple[str, ...] = ("localizer", "sag_t1", "sag_t2", "ax_t1", "ax_t2", "myelo", "other")

_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class SeriesRules:
    """Keywords that identify a series from its SeriesDescription, and the fallback thresholds.

    Keywords are matched against the description's tokens (split on anything that is not a letter
    or digit, lower-cased); a keyword matches a token that starts with it, so ``sag`` matches
    ``sagittal`` and ``t2`` matches ``t2w``.

    Attributes:
        myelo: Keywords of MR myelography series.
        localizer: Keywords of survey / localizer / scout series.
        sagittal: Keywords of the sagittal plane.
        axial: Keywords of the axial (transverse) plane.
        coronal: Keywords of the coronal plane.
        t1: Keywords of T1 weighting.
        t2: Keywords of T2 weighting.
        t2_echo_time_ms: Fallback: a series with EchoTime above this is T2-weighted.
        myelo_echo_time_ms: Fallback: a series with EchoTime at or above this is a myelography.
    """

    myelo: tuple[str, ...] = ("myelo", "mrm", "myelogr")
    localizer: tuple[str, ...] = ("loc", "survey", "scout", "3pl", "localizer")
    sagittal: tuple[str, ...] = ("sag",)
    axial: tuple[str, ...] = ("ax", "tra", "transv")
    coronal: tuple[str, ...] = ("cor",)
    t1: tuple[str, ...] = ("t1",)
    t2: tuple[str, ...] = ("t2",)
    t2_echo_time_ms: float = 80.0
    myelo_echo_time_ms: float = 400.0

    def __post_init__(self) -> None:
        for name in ("myelo", "localizer", "sagittal", "axial", "coronal", "t1", "t2"):
            words = getattr(self, name)
            if isinstance(words, str) or not all(isinstance(w, str) and w for w in words):
                raise InputError(f"series rule {name!r} must be a list of non-empty keywords")
            object.__setattr__(self, name, tuple(w.lower() for w in words))
        if not 0 < self.t2_echo_time_ms < self.myelo_echo_time_ms:
            raise InputError("series rules need 0 < t2_echo_time_ms < myelo_echo_time_ms")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SeriesRules:
        """Load rules from a YAML mapping whose keys are this class's fields (missing keys keep defaults)."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"series mapping {path} could not be read ({exc})") from exc
        if not isinstance(data, dict):
            raise InputError(f"series mapping {path} must be a YAML mapping of rule name to keywords")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"series mapping {path} has unknown key(s) {', '.join(unknown)}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except (TypeError, InputError) as exc:
            raise InputError(f"series mapping {path} is invalid: {exc}") from exc


@dataclass(slots=True)
class FrameRecord:
    """What the index keeps of one frame: header facts only, no pixels.

    Attributes:
        path: File path relative to the export root (POSIX separators).
        frame_index: 0-based frame within the file (0 for single-frame files).
        patient_id: PatientID (identifying; never written to outputs).
        patient_name: PatientName as text (identifying; used only to scrub paths in reports).
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID.
        sop_uid: SOPInstanceUID (the same image exported twice has the same one).
        series_number: SeriesNumber, or -1.
        description: SeriesDescription, or "".
        instance_number: InstanceNumber, or None.
        position: Slice position along the normal (mm), or None.
        normal: Slice normal (unit vector), or None.
        echo_time: EchoTime in ms, or None.
        slice_thickness: SliceThickness in mm, or None.
        frames_in_file: NumberOfFrames of the file.
        images_in_acquisition: ImagesInAcquisition (0020,1002) when the scanner wrote it, else None.
        is_localizer: ImageType says LOCALIZER.
        slope: RescaleSlope.
        intercept: RescaleIntercept.
        window_center: First WindowCenter, or None.
        window_width: First WindowWidth, or None.
        monochrome1: PhotometricInterpretation is MONOCHROME1 (inverted).
        problem: Why this frame cannot be decoded although its header is readable, or "".
    """

    path: str
    frame_index: int
    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    sop_uid: str
    series_number: int
    description: str
    instance_number: int | None
    position: float | None
    normal: tuple[float, float, float] | None
    echo_time: float | None
    slice_thickness: float | None
    frames_in_file: int
    images_in_acquisition: int | None
    is_localizer: bool
    slope: float
    intercept: float
    window_center: float | None
    window_width: float | None
    monochrome1: bool
    problem: str = ""


@dataclass(slots=True)
class IndexResult:
    """The outcome of indexing one file: its frames, or why it is not used.

    Attributes:
        path: File path relative to the export root.
        frames: Frame records (empty when the file is rejected).
        status: ``"indexed"``, ``"not_needed"`` or ``"quarantined"``.
        reason: One-line reason for a rejection.
        patient_id: For a rejected file whose header was readable, its PatientID (else "").
        series_uid: For a rejected file whose header was readable, its SeriesInstanceUID (else "").
        instance_number: For a rejected file whose header was readable, its InstanceNumber (else None),
            so that the frame it would have given is reported with the file's real problem.
    """

    path: str
    frames: list[FrameRecord] = field(default_factory=list)
    status: str = "indexed"
    reason: str = ""
    patient_id: str = ""
    series_uid: str = ""
    instance_number: int | None = None


def _first_float(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = next(iter(value))  # type: ignore[call-overload]
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None
    return result if math.isfinite(result) else None


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _normal_and_position(iop: object, ipp: object) -> tuple[tuple[float, float, float] | None, float | None]:
    """Slice normal (row x column cosines, unit length) and the position along it (plain floats: this runs per file)."""
    try:
        r = [float(v) for v in iop][:3]  # type: ignore[union-attr]
        c = [float(v) for v in iop][3:6]  # type: ignore[union-attr]
        n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
        norm = math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
    except (TypeError, ValueError, IndexError):
        return None, None
    if norm < 1e-6:
        return None, None
    normal = (n[0] / norm, n[1] / norm, n[2] / norm)
    try:
        p = [float(v) for v in ipp][:3]  # type: ignore[union-attr]
        position = normal[0] * p[0] + normal[1] * p[1] + normal[2] * p[2]
    except (TypeError, ValueError, IndexError):
        position = None
    return normal, position


#: The header elements the index needs (keyword -> tag); only these are converted, each once.
_HEADER_TAGS: dict[str, int] = {
    "Modality": 0x00080060,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
    "PatientID": 0x00100020,
    "PatientName": 0x00100010,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SOPInstanceUID": 0x00080018,
    "SeriesNumber": 0x00200011,
    "SeriesDescription": 0x0008103E,
    "InstanceNumber": 0x00200013,
    "ImageOrientationPatient": 0x00200037,
    "ImagePositionPatient": 0x00200032,
    "EchoTime": 0x00180081,
    "SliceThickness": 0x00180050,
    "NumberOfFrames": 0x00280008,
    "ImagesInAcquisition": 0x00201002,
    "ImageType": 0x00080008,
    "RescaleSlope": 0x00281053,
    "RescaleIntercept": 0x00281052,
    "WindowCenter": 0x00281050,
    "WindowWidth": 0x00281051,
    "PhotometricInterpretation": 0x00280004,
    "BitsAllocated": 0x00280100,
    "SamplesPerPixel": 0x00280002,
}
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"})


def _header_values(ds: object) -> dict[str, object]:
    """Return the values of the :data:`_HEADER_TAGS` elements present in ``ds``, by keyword.

    Indexing runs once per file of the export, so plain text and US values are decoded straight from
    the raw element bytes (about 20x cheaper than pydicom's full conversion); anything else, and
    PatientName (which may use a non-ASCII character set), goes through pydicom's own conversion.
    """
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import RawDataElement

    values: dict[str, object] = {}
    for keyword, tag in _HEADER_TAGS.items():
        element = ds.get_item(tag, keep_deferred=True)  # type: ignore[attr-defined]
        if element is None:
            continue
        if not isinstance(element, RawDataElement) or keyword == "PatientName" or element.value is None:
            values[keyword] = ds[tag].value  # type: ignore[index]
            continue
        vr = element.VR or dictionary_VR(tag)
        raw: bytes = element.value
        if vr == "US":
            if len(raw) >= 2:
                values[keyword] = int.from_bytes(raw[:2], "little" if element.is_little_endian else "big")
            continue
        if vr not in _TEXT_VRS:
            values[keyword] = ds[tag].value  # type: ignore[index]
            continue
        text = raw.decode("latin-1").strip("\x00 ")
        parts = [part.strip() for part in text.split("\\")]
        values[keyword] = parts if len(parts) > 1 else text
    return values


def read_header(root: str | Path, relpath: str) -> IndexResult:
    """Index one file: read its DICOM header (pixels are located, not decoded).

    Args:
        root: The export root folder.
        relpath: The file's path relative to ``root``.

    Returns:
        An :class:`IndexResult`; never raises for bad content.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = os.path.join(root, relpath)
    try:
        # opened without blocking (a named pipe would block a plain open) and checked before reading
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        reason = f"unreadable: {exc.strerror or exc.__class__.__name__}"
        return IndexResult(relpath, status="quarantined", reason=reason)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return IndexResult(relpath, status="not_needed", reason=f"{file_kind(info.st_mode)}: not opened")
        os.set_blocking(fd, True)
        size = info.st_size
        with os.fdopen(fd, "rb") as handle:
            ds = pydicom.dcmread(handle, defer_size=1024)
    except InvalidDicomError:
        return IndexResult(relpath, status="quarantined", reason="not a DICOM file (no DICM preamble)")
    except (OSError, EOFError) as exc:
        return IndexResult(relpath, status="quarantined", reason=f"unreadable: {_safe_message(exc, path, relpath)}")
    except Exception as exc:  # pydicom raises many types on corrupt headers
        return IndexResult(
            relpath, status="quarantined", reason=f"corrupt DICOM header: {_safe_message(exc, path, relpath)}"
        )

    try:
        media_class = str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
        if media_class == _MEDIA_STORAGE_DIRECTORY:
            return IndexResult(relpath, status="not_needed", reason="DICOMDIR index file")
        v = _header_values(ds)
        modality = str(v.get("Modality") or "").strip()
        if not modality:
            return IndexResult(
                relpath, status="quarantined", reason="incomplete header (no Modality): truncated or corrupt file"
            )
        where = {
            "patient_id": str(v.get("PatientID") or "").strip(),
            "series_uid": str(v.get("SeriesInstanceUID") or "").strip(),
            "instance_number": _int_or_none(v.get("InstanceNumber")),
        }
        if modality != "MR":
            kind = re.sub(r"[^A-Z0-9]", "", modality.upper())[:8] or "unknown"
            return IndexResult(relpath, status="quarantined", reason=f"modality {kind}, not MR", **where)
        if _PIXEL_DATA not in ds:
            return IndexResult(
                relpath, status="quarantined", reason="no pixel data (a DICOM file that is not an image)", **where
            )
        rows, cols = _int_or_none(v.get("Rows")), _int_or_none(v.get("Columns"))
        if not rows or not cols:
            return IndexResult(relpath, status="quarantined", reason="missing Rows/Columns")
        patient_id = str(v.get("PatientID") or "").strip()
        if not patient_id:
            return IndexResult(relpath, status="quarantined", reason="missing PatientID")
        series_uid = str(v.get("SeriesInstanceUID") or "").strip()
        if not series_uid:
            return IndexResult(relpath, status="quarantined", reason="missing SeriesInstanceUID")

        frames_in_file = _int_or_none(v.get("NumberOfFrames")) or 1
        problem = ""
        element = ds.get_item(_PIXEL_DATA, keep_deferred=True)
        length = getattr(element, "length", None)
        tell = getattr(element, "value_tell", None)
        if length is not None and tell is not None and length != _UNDEFINED_LENGTH and tell + length > size:
            problem = f"truncated: pixel data needs {length} bytes, file has {size - tell}"
        elif length is not None and length != _UNDEFINED_LENGTH:
            bits = _int_or_none(v.get("BitsAllocated")) or 16
            samples = _int_or_none(v.get("SamplesPerPixel")) or 1
            expected = rows * cols * samples * frames_in_file * bits // 8
            if length < expected:
                problem = f"truncated: pixel data has {length} bytes, {expected} expected"

        normal, position = _normal_and_position(v.get("ImageOrientationPatient"), v.get("ImagePositionPatient"))
        image_type = v.get("ImageType") or []
        image_type = [str(t).upper() for t in ([image_type] if isinstance(image_type, str) else image_type)]
        series_number = _int_or_none(v.get("SeriesNumber"))
        base = {
            "path": relpath,
            "patient_id": patient_id,
            "patient_name": str(v.get("PatientName") or ""),
            "study_uid": str(v.get("StudyInstanceUID") or ""),
            "series_uid": series_uid,
            "sop_uid": str(v.get("SOPInstanceUID") or "").strip() or relpath,
            "series_number": -1 if series_number is None else series_number,
            "description": str(v.get("SeriesDescription") or "").strip(),
            "instance_number": _int_or_none(v.get("InstanceNumber")),
            "position": position,
            "normal": normal,
            "echo_time": _first_float(v.get("EchoTime")),
            "slice_thickness": _first_float(v.get("SliceThickness")),
            "frames_in_file": frames_in_file,
            "images_in_acquisition": _int_or_none(v.get("ImagesInAcquisition")),
            "is_localizer": "LOCALIZER" in image_type,
            "slope": _first_float(v.get("RescaleSlope")) or 1.0,
            "intercept": _first_float(v.get("RescaleIntercept")) or 0.0,
            "window_center": _first_float(v.get("WindowCenter")),
            "window_width": _first_float(v.get("WindowWidth")),
            "monochrome1": str(v.get("PhotometricInterpretation") or "").upper() == "MONOCHROME1",
            "problem": problem,
        }
        frames = [FrameRecord(frame_index=i, **base) for i in range(frames_in_file)]
    except Exception as exc:  # malformed values deep in the header
        return IndexResult(
            relpath, status="quarantined", reason=f"corrupt DICOM header: {_safe_message(exc, path, relpath)}"
        )
    return IndexResult(relpath, frames=frames)


def file_kind(mode: int) -> str:
    """Name the kind of a file system entry that is not a regular file (for reasons in reports)."""
    for test, name in (
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return f"{name}, not a regular file"
    return "not a regular file"


def _safe_message(exc: BaseException, *paths: str) -> str:
    """An exception as one line without the file's path (paths carry identifiers) and at most 200 characters."""
    text = f"{exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}"
    for path in sorted(paths, key=len, reverse=True):
        if path:
            text = text.replace(path, "<file>")
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", text.lower()) if t]


def _has(tokens: Sequence[str], keywords: Iterable[str]) -> bool:
    return any(t.startswith(k) for t in tokens for k in keywords)


def plane_from_normal(normal: tuple[float, float, float] | None) -> str:
    """Return ``"sag"``, ``"cor"`` or ``"ax"`` for the slice normal's dominant LPS axis, or ``""``."""
    if normal is None:
        return ""
    axis = int(np.argmax(np.abs(normal)))
    return ("sag", "cor", "ax")[axis]


def classify_series(frames: Sequence[FrameRecord], rules: SeriesRules | None = None) -> str:
    """Return the kind of a series (one of :data:`SERIES_KINDS`).

    Description keywords decide first; otherwise the orientation gives the plane and the echo time
    the weighting (myelography when TE >= ``myelo_echo_time_ms``, T2 when TE > ``t2_echo_time_ms``).
    A series whose frames lie in different planes is a localizer.
    """
    rules = rules or SeriesRules()
    first = frames[0]
    tokens = _tokens(first.description)
    if _has(tokens, rules.myelo):
        return "myelo"
    planes = {plane_from_normal(f.normal) for f in frames}
    if _has(tokens, rules.localizer) or any(f.is_localizer for f in frames) or len(planes - {""}) > 1:
        return "localizer"
    if _has(tokens, rules.sagittal):
        plane = "sag"
    elif _has(tokens, rules.axial):
        plane = "ax"
    elif _has(tokens, rules.coronal):
        plane = "cor"
    else:
        plane = plane_from_normal(first.normal)
    echo = first.echo_time
    if _has(tokens, rules.t2):
        weighting = "t2"
    elif _has(tokens, rules.t1):
        weighting = "t1"
    elif echo is not None and echo >= rules.myelo_echo_time_ms:
        return "myelo"
    elif echo is not None:
        weighting = "t2" if echo > rules.t2_echo_time_ms else "t1"
    else:
        return "other"
    kind = f"{plane}_{weighting}"
    return kind if kind in SERIES_KINDS else "other"


def order_frames(frames: Sequence[FrameRecord]) -> list[FrameRecord | None]:
    """Put a series' frames in acquisition order, as slots numbered from 1.

    Single-frame files are ordered by InstanceNumber; a missing instance number leaves an empty slot
    (``None``) so later frames keep their place. Without usable instance numbers the slice position
    decides, with gaps detected from the median spacing. When the scanner recorded how many images
    the acquisition has (ImagesInAcquisition) and fewer are present than that, the missing ones must
    be placeable (by instance number or spacing), otherwise the order is ambiguous. Multi-frame files
    keep their internal order.

    Raises:
        ValueError: If the order cannot be determined.
    """
    if not frames:
        return []
    if any(f.frames_in_file > 1 for f in frames):
        return sorted(frames, key=lambda f: (f.instance_number or 0, f.path, f.frame_index))
    expected = max((f.images_in_acquisition or 0 for f in frames), default=0) or None
    numbers = [f.instance_number for f in frames]
    slots: list[FrameRecord | None]
    if all(n is not None for n in numbers) and len(set(numbers)) == len(numbers):
        low, high = min(numbers), max(numbers)  # type: ignore[type-var]
        if expected and low >= 1 and high <= expected:
            low, high = 1, expected  # numbering starts at 1: frames missing at either end keep their slot
        if high - low + 1 <= 2 * len(frames) + 2:  # type: ignore[operator]
            slots = [None] * (high - low + 1)  # type: ignore[operator]
            for f in frames:
                slots[f.instance_number - low] = f  # type: ignore[operator]
            return slots
    positions = [f.position for f in frames]
    if any(p is None for p in positions) or len({round(p, 3) for p in positions}) != len(positions):  # type: ignore[arg-type]
        raise ValueError("frame order is ambiguous: instance numbers and slice positions are missing or repeated")
    ordered = sorted(frames, key=lambda f: f.position)  # type: ignore[arg-type,return-value]
    slots = list(ordered)
    if len(ordered) >= 3:
        steps = np.diff([f.position for f in ordered])  # type: ignore[misc]
        spacing = float(np.median(steps))
        slots = [ordered[0]]
        for step, frame in zip(steps, ordered[1:], strict=True):
            missing = max(0, round(step / spacing) - 1) if spacing > 0 else 0
            slots.extend([None] * missing)
            slots.append(frame)
    if expected and len(slots) < expected:
        raise ValueError(
            f"frame order is ambiguous: the acquisition has {expected} images, {len(frames)} are readable, and without "
            "instance numbers the missing ones cannot be placed"
        )
    return slots


def window_to_uint8(
    pixels: np.ndarray,
    slope: float = 1.0,
    intercept: float = 0.0,
    center: float | None = None,
    width: float | None = None,
    monochrome1: bool = False,
) -> np.ndarray:
    """Apply the modality rescale and the DICOM linear VOI window; return 8-bit grey levels.

    The window follows DICOM PS3.3 C.11.2.1.2.1 (linear). Without a usable window (missing, or width
    below 1) the 0.5-99.5 percentile range of the image is used. MONOCHROME1 images are inverted so
    that bright means high signal.
    """
    values = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if values.ndim == 3:  # colour secondary captures: luminance
        values = values[..., :3] @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    if center is not None and width is not None and width >= 1:
        low = center - 0.5 - (width - 1) / 2
        scaled = ((values - (center - 0.5)) / max(width - 1, 1e-6) + 0.5) * 255.0
        out = np.where(values <= low, 0.0, np.where(values > low + width - 1, 255.0, scaled))
    else:
        lo, hi = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        out = (values - lo) / (hi - lo) * 255.0
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return 255 - out if monochrome1 else out


def decode_frame(root: str | Path, frame: FrameRecord) -> np.ndarray:
    """Decode one frame and return it windowed to 8 bits.

    Raises:
        ValueError: With a one-line reason when the pixel data cannot be decoded.
    """
    from pydicom.pixels import pixel_array

    if frame.problem:
        raise ValueError(frame.problem)
    path = os.path.join(root, frame.path)
    try:
        index = frame.frame_index if frame.frames_in_file > 1 else None
        pixels = pixel_array(path, index=index)
    except Exception as exc:
        raise ValueError(f"pixel data could not be decoded: {exc.__class__.__name__}: {exc}") from exc
    return window_to_uint8(
        pixels, frame.slope, frame.intercept, frame.window_center, frame.window_width, frame.monochrome1
    )
