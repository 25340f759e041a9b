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
from typing import Any, BinaryIO

import numpy as np

from lumbar.errors import InputError
from lumbar.limits import ImageLimits
from lumbar.paths import file_kind

#: Series kinds the builder knows.
SERIES_KINDS: tuple[str, ...] = ("localizer", "sag_t1", "sag_t2", "ax_t1", "ax_t2", "myelo", "other")

#: The private creator element ``lumbar synth`` writes into every file of a synthetic export, and its value.
SYNTH_MARK_TAG = 0x00090010
SYNTH_MARK = "LUMBAR SYNTH"

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


#: DICOM defined terms for Modality (PS3.3 C.7.3.1.1.1) that a reason may name; any other value is not repeated.
_MODALITY_TERMS = (
    "AR AS ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS KER "
    "KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN PR PT PX REG RESP RF RG "
    "RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN "
    "TEXTUREMAP TG US VA XA XC"
)
KNOWN_MODALITIES = frozenset(_MODALITY_TERMS.split())
#: PhotometricInterpretation values the decoder turns into grey levels.
PHOTOMETRIC = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"}
)
_DEFLATED = b"1.2.840.10008.1.2.1.99"
_RLE_LOSSLESS = "1.2.840.10008.1.2.5"


@dataclass(slots=True)
class FrameRecord:
    """What the index keeps of one frame: header facts only, no pixels.

    Attributes:
        path: File path relative to the export root (POSIX separators).
        frame_index: 0-based frame within the file (0 for single-frame files).
        patient_id: PatientID (identifying; never written to outputs).
        patient_name: PatientName as text (identifying; only the identifier guard reads it).
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
        synthetic: The file carries the mark of ``lumbar synth`` (a made-up patient).
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
    synthetic: bool = False


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
    "SynthMark": SYNTH_MARK_TAG,
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
        vr = element.VR or ("LO" if tag == SYNTH_MARK_TAG else dictionary_VR(tag))
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


def _whole_number(value: object) -> int | None:
    """An IS value as an integer when it is written as one (``"2"``, not ``"2.0"`` or ``"2e0"``), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip() if value is not None else ""
    if not re.fullmatch(r"[+-]?[0-9]{1,10}", text):
        return None
    return int(text)


def _fragments(handle: BinaryIO, offset: int, enough: int, largest: int) -> tuple[int, bool]:
    """Walk the items of encapsulated pixel data from ``offset`` by their headers (no data is read).

    Returns:
        ``(items, oversized)``: the items found, counting the basic offset table (the walk stops once
        ``enough`` are found), and whether an item is longer than ``largest`` bytes.
    """
    handle.seek(offset)
    items = 0
    while items < enough:
        head = handle.read(8)
        if len(head) < 8:
            break
        group, element, length = (
            int.from_bytes(head[0:2], "little"),
            int.from_bytes(head[2:4], "little"),
            int.from_bytes(head[4:8], "little"),
        )
        if (group, element) != (0xFFFE, 0xE000):
            break
        if length > largest:
            return items, True
        items += 1
        handle.seek(length, os.SEEK_CUR)
    return items, False


def _reject(relpath: str, reason: str, where: dict | None = None, status: str = "quarantined") -> IndexResult:
    return IndexResult(relpath, status=status, reason=reason, **(where or {}))


def read_header(root: str | Path, relpath: str, limits: ImageLimits | None = None) -> IndexResult:
    """Index one file: read its DICOM header (pixels are located, not decoded).

    Every reason is a fixed sentence with numbers: no header text, path or exception message reaches
    it. What the header declares (image size, frames) is checked against ``limits`` and against the
    bytes the file holds before one frame record is made.

    Args:
        root: The export root folder.
        relpath: The file's path relative to ``root``.
        limits: The bounds on declared sizes (default :class:`ImageLimits`).

    Returns:
        An :class:`IndexResult`; never raises for bad content.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    limits = limits or ImageLimits()
    path = os.path.join(root, relpath)
    try:
        # opened without blocking (a named pipe would block a plain open) and checked before reading
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return _reject(relpath, f"unreadable ({_os_reason(exc)})")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return _reject(relpath, f"{file_kind(info.st_mode)}: not opened", status="not_needed")
        os.set_blocking(fd, True)
        size = info.st_size
        handle = os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        return _reject(relpath, f"unreadable ({_os_reason(exc)})")
    with handle:
        try:
            # a deflated data set is inflated whole by the reader: a few kilobytes can declare gigabytes
            if _DEFLATED in handle.read(4096):
                return _reject(relpath, "deflated transfer syntax: not read (it is inflated whole into memory)")
            handle.seek(0)
            ds = pydicom.dcmread(handle, defer_size=1024)
        except InvalidDicomError:
            return _reject(relpath, "not a DICOM file (no DICM preamble)")
        except OSError as exc:
            return _reject(relpath, f"unreadable ({_os_reason(exc)})")
        except EOFError:
            return _reject(relpath, "unreadable (the file ends inside its header or pixel data)")
        except Exception as exc:  # pydicom raises many types on corrupt headers
            return _reject(relpath, f"corrupt DICOM header ({exc.__class__.__name__})")
        try:
            return _index_dataset(ds, handle, relpath, size, limits)
        except Exception as exc:  # malformed values deep in the header
            return _reject(relpath, f"corrupt DICOM header ({exc.__class__.__name__})")


def _index_dataset(ds: Any, handle: BinaryIO, relpath: str, size: int, limits: ImageLimits) -> IndexResult:
    """The frames of a parsed data set, or why it is refused (see :func:`read_header`)."""
    media_class = str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if media_class == _MEDIA_STORAGE_DIRECTORY:
        return _reject(relpath, "DICOMDIR index file", status="not_needed")
    v = _header_values(ds)
    modality = str(v.get("Modality") or "").strip()
    if not modality:
        return _reject(relpath, "incomplete header (no Modality): truncated or corrupt file")
    where = {
        "patient_id": str(v.get("PatientID") or "").strip(),
        "series_uid": str(v.get("SeriesInstanceUID") or "").strip(),
        "instance_number": _int_or_none(v.get("InstanceNumber")),
    }
    if modality != "MR":
        kind = modality.upper() if modality.upper() in KNOWN_MODALITIES else "of an unknown kind"
        return _reject(relpath, f"modality {kind}, not MR", where)
    if _PIXEL_DATA not in ds:
        return _reject(relpath, "no pixel data (a DICOM file that is not an image)", where)
    rows, cols = _int_or_none(v.get("Rows")), _int_or_none(v.get("Columns"))
    if not rows or not cols or rows < 0 or cols < 0:
        return _reject(relpath, "missing Rows/Columns", where)
    if not where["patient_id"]:
        return _reject(relpath, "missing PatientID")
    if not where["series_uid"]:
        return _reject(relpath, "missing SeriesInstanceUID")
    bits = _int_or_none(v.get("BitsAllocated")) or 16
    samples = _int_or_none(v.get("SamplesPerPixel")) or 1
    too_large = limits.size_problem(rows, cols, samples, bits)
    if too_large:
        return _reject(relpath, too_large, where)
    photometric = str(v.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    if photometric not in PHOTOMETRIC:
        return _reject(relpath, "unsupported PhotometricInterpretation (not a grey or colour model)", where)
    declared = v.get("NumberOfFrames")
    frames_in_file = 1 if declared in (None, "") else _whole_number(declared)
    if frames_in_file is None or frames_in_file < 1:
        return _reject(relpath, "NumberOfFrames is not a whole number of at least 1", where)
    if frames_in_file > limits.max_frames:
        return _reject(
            relpath, f"declares {frames_in_file} frames; the most accepted is {limits.max_frames} (--max-frames)", where
        )

    problem = ""
    element = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    length = getattr(element, "length", None)
    tell = getattr(element, "value_tell", None)
    if length is not None and tell is not None and length != _UNDEFINED_LENGTH and tell + length > size:
        problem = f"truncated: pixel data needs {length} bytes, file has {size - tell}"
    elif length is not None and length != _UNDEFINED_LENGTH:
        expected = rows * cols * samples * frames_in_file * bits // 8
        if length < expected:
            problem = f"truncated: pixel data has {length} bytes, {expected} expected"
    elif tell is not None:  # encapsulated: every frame needs an item of its own after the offset table
        items, oversized = _fragments(handle, tell, frames_in_file + 1, limits.max_frame_bytes)
        if oversized:
            return _reject(relpath, f"a compressed fragment is larger than {limits.max_frame_bytes} bytes", where)
        if items < frames_in_file + 1:
            return _reject(
                relpath,
                f"declares {frames_in_file} frame(s) but its compressed pixel data holds {max(items - 1, 0)}: "
                "truncated or damaged",
                where,
            )

    normal, position = _normal_and_position(v.get("ImageOrientationPatient"), v.get("ImagePositionPatient"))
    image_type = v.get("ImageType") or []
    image_type = [str(t).upper() for t in ([image_type] if isinstance(image_type, str) else image_type)]
    series_number = _int_or_none(v.get("SeriesNumber"))
    base = {
        "path": relpath,
        "patient_id": where["patient_id"],
        "patient_name": str(v.get("PatientName") or ""),
        "study_uid": str(v.get("StudyInstanceUID") or ""),
        "series_uid": where["series_uid"],
        "sop_uid": str(v.get("SOPInstanceUID") or "").strip() or relpath,
        "series_number": -1 if series_number is None else series_number,
        "description": str(v.get("SeriesDescription") or "").strip(),
        "instance_number": where["instance_number"],
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
        "monochrome1": photometric == "MONOCHROME1",
        "problem": problem,
        "synthetic": str(v.get("SynthMark") or "").strip() == SYNTH_MARK,
    }
    return IndexResult(relpath, frames=[FrameRecord(frame_index=i, **base) for i in range(frames_in_file)])


def _os_reason(exc: OSError) -> str:
    """An operating-system error as its fixed description (``No such file or directory``), never its path."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return exc.__class__.__name__


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


def _agreed_count(frames: Sequence[FrameRecord]) -> int | None:
    """The ImagesInAcquisition most of a series' frames agree on, or None.

    One file's claim is not the series': a value counts only when more than half of the frames carry
    it and it is at least the number of frames present.
    """
    from collections import Counter

    claims = Counter(f.images_in_acquisition for f in frames if f.images_in_acquisition)
    if not claims:
        return None
    value, votes = claims.most_common(1)[0]
    return value if 2 * votes > len(frames) and value >= len(frames) else None


def order_frames(frames: Sequence[FrameRecord]) -> list[FrameRecord | None]:
    """Put a series' frames in acquisition order, as slots numbered from 1.

    Single-frame files are ordered by InstanceNumber; a missing instance number leaves an empty slot
    (``None``) so later frames keep their place. Without usable instance numbers the slice position
    decides, with gaps detected from the median spacing. When the scanner recorded how many images
    the acquisition has (ImagesInAcquisition, when most frames agree on it) and fewer are present than
    that, the missing ones must be placeable (by instance number or spacing), otherwise the order is
    ambiguous. Multi-frame files keep their internal order.

    Raises:
        ValueError: If the order cannot be determined.
    """
    if not frames:
        return []
    if any(f.frames_in_file > 1 for f in frames):
        return sorted(frames, key=lambda f: (f.instance_number or 0, f.path, f.frame_index))
    expected = _agreed_count(frames)
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


class FrameRefusedError(ValueError):
    """A frame that is not decoded, with a fixed one-line reason."""


def codestream_size(codestream: bytes) -> tuple[int, int] | None:
    """The ``(rows, columns)`` a JPEG, JPEG-LS or JPEG 2000 codestream declares, read from its header only.

    A decoder allocates what its codestream declares, whatever the DICOM header says, so the two are
    compared before a compressed frame is decoded. Returns None when no size marker is found.
    """
    data = memoryview(codestream)
    if bytes(data[:12]) == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # a JP2 file: find its codestream box
        offset = 0
        while offset + 8 <= len(data):
            length = int.from_bytes(data[offset : offset + 4], "big")
            if bytes(data[offset + 4 : offset + 8]) == b"jp2c":
                return codestream_size(bytes(data[offset + 8 : offset + length if length else len(data)]))
            if length < 8:
                return None
            offset += length
        return None
    if bytes(data[:4]) == b"\xff\x4f\xff\x51" and len(data) >= 24:  # J2K: SIZ marker right after SOC
        xsiz, ysiz, x0, y0 = (int.from_bytes(data[i : i + 4], "big") for i in (8, 12, 16, 20))
        return ysiz - y0, xsiz - x0
    if bytes(data[:2]) == b"\xff\xd8":  # JPEG and JPEG-LS: walk the markers to the start of frame
        offset = 2
        while offset + 4 <= len(data):
            if data[offset] != 0xFF:
                return None
            marker = data[offset + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                offset += 2
                continue
            length = int.from_bytes(data[offset + 2 : offset + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7):
                if offset + 9 > len(data):
                    return None
                return (
                    int.from_bytes(data[offset + 5 : offset + 7], "big"),
                    int.from_bytes(data[offset + 7 : offset + 9], "big"),
                )
            offset += 2 + length
    return None


def read_frame(root: str | Path, frame: FrameRecord, limits: ImageLimits | None = None) -> np.ndarray:
    """Decode one frame's stored values (before the rescale and window), within ``limits``.

    The header is read again and checked against the limits (the file may have changed since it was
    indexed), a compressed frame's own declared size must match the header before it is decoded, and
    the decoded array must have the declared shape.

    Raises:
        FrameRefusedError: With a fixed one-line reason (no path, header text or exception message).
    """
    import pydicom
    from pydicom.encaps import get_frame
    from pydicom.pixels import pixel_array

    limits = limits or ImageLimits()
    if frame.problem:
        raise FrameRefusedError(frame.problem)
    index = frame.frame_index if frame.frames_in_file > 1 else None
    try:
        with open(os.path.join(root, frame.path), "rb") as handle:
            ds = pydicom.dcmread(handle, defer_size=1024)
            v = _header_values(ds)
            rows, cols = _int_or_none(v.get("Rows")) or 0, _int_or_none(v.get("Columns")) or 0
            samples = _int_or_none(v.get("SamplesPerPixel")) or 1
            problem = limits.size_problem(rows, cols, samples, _int_or_none(v.get("BitsAllocated")) or 16)
            if problem:
                raise FrameRefusedError(problem)
            syntax = ds.file_meta.get("TransferSyntaxUID")
            if syntax is not None and syntax.is_encapsulated and str(syntax) != _RLE_LOSSLESS:
                handle.seek(ds.get_item(_PIXEL_DATA, keep_deferred=True).value_tell)
                size = codestream_size(get_frame(handle, frame.frame_index, number_of_frames=frame.frames_in_file))
                if size != (rows, cols):
                    raise FrameRefusedError("its compressed frame declares another size than its header")
            handle.seek(0)
            pixels = pixel_array(handle, index=index)
    except FrameRefusedError:
        raise
    except OSError as exc:
        raise FrameRefusedError(f"pixel data could not be read ({_os_reason(exc)})") from None
    except Exception as exc:
        raise FrameRefusedError(f"pixel data could not be decoded ({exc.__class__.__name__})") from None
    if pixels.shape[:2] != (rows, cols):
        raise FrameRefusedError("the decoded frame does not have the size its header declares")
    return pixels


def decode_frame(root: str | Path, frame: FrameRecord, limits: ImageLimits | None = None) -> np.ndarray:
    """Decode one frame (within ``limits``) and return it windowed to 8 bits.

    Raises:
        FrameRefusedError: With a fixed one-line reason when the frame is refused or cannot be decoded.
    """
    pixels = read_frame(root, frame, limits)
    return window_to_uint8(
        pixels, frame.slope, frame.intercept, frame.window_center, frame.window_width, frame.monochrome1
    )


def frame_digest(root: str | Path, frame: FrameRecord, limits: ImageLimits | None = None) -> str:
    """SHA-256 of a frame's decoded pixels, shape and type; "" when it cannot be decoded.

    Decoded, not stored, pixels are compared: the same image exported once uncompressed and once as
    lossless JPEG 2000, RLE or big-endian has different bytes but the same pixels. Only this frame is
    decoded, so comparing every frame of a multi-frame file costs time linear in its frames.
    """
    import hashlib

    try:
        pixels = read_frame(root, frame, limits)
    except ValueError:  # an undecodable copy is compared as "different"
        return ""
    pixels = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))
    digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype.str}".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()
