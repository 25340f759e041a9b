"""The second red-team round against `lumbar dataset build` (issue 29): resource bombs, numbered patients,
pseudonyms linked to PatientIDs, headers that stop a build, keys left readable, the demo key.

One export holds most hostile files at once and is built once through the CLI, under a per-process
address-space limit and with two workers (the memory ceiling); the cases that need a moment inside
the build (a file that vanishes before it is decoded) or a timing run in process. No file is large:
the bombs declare their sizes, they do not have them.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from lumbar.dataset_c import BuildConfig, build_dataset_c
from lumbar.deid import DEFAULT_SECRET_ENV, DEMO_SECRET, Pseudonymizer
from lumbar.dicom import SYNTH_MARK_TAG
from lumbar.errors import InputError
from lumbar.progress import NullProgress

from .conftest import TEST_SECRET, TEST_SECRET_ENV

LUMBAR = str(Path(sys.executable).with_name("lumbar"))
#: The address-space ceiling of each process of the CLI build (the parent and its two workers): far
#: below what the bombs declare (a 16384 x 16384 frame alone is 512 MiB of 16-bit pixels, 10 million
#: frame records several GB), above what Python with pydicom, NumPy and Pillow maps to start.
ADDRESS_SPACE = 1024 * 2**20
#: Where the numbered patients' files lie: folder names with a name, birth date, institution, accession.
FOLDERS = {"1": "St. Elsewhere General/Rossi_Lucia_19860522/20190301_A90445748", "2": "A31337/DUBOIS^CAMILLE"}
NAMES = {"1": "ROSSI^LUCIA", "2": "DUBOIS^CAMILLE"}


def _series(folder: Path, number: int) -> list[Path]:
    """The files of a series number, in slice order."""
    files = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in folder.rglob("*.dcm")]
    files = [(p, d) for p, d in files if d.get("SeriesNumber") == number]
    return [p for p, d in sorted(files, key=lambda pd: float(pd[1].ImagePositionPatient[0 if number < 4 else 2]))]


def _variant(template: Path, target: Path, series_uid: str | None = None, **changes) -> Path:
    """A copy of a DICOM file as a new instance (new SOPInstanceUID), with header changes."""
    ds = pydicom.dcmread(template)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    for key, value in changes.items():
        setattr(ds, key, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


def _numbered_export(synthetic_export: Path, out: Path) -> Path:
    """Two patients of the session export renumbered as a research export numbers them: PatientID 1 and 2."""
    for number, source in (("1", "P000001"), ("2", "P000002")):
        for path in (synthetic_export / source).rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.PatientName = number, NAMES[number]
            target = out / FOLDERS[number] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target)
    return out


@pytest.fixture(scope="module")
def bombs(synthetic_export, tmp_path_factory):
    """The numbered export with every hostile file of the round; returns (export, labels, what was planted)."""
    src = _numbered_export(synthetic_export, tmp_path_factory.mktemp("bombs") / "export")
    one, two = src / FOLDERS["1"], src / FOLDERS["2"]
    axial = _series(one, 5)
    planted = {}
    # case 2: NumberOfFrames -1 (and "2.0", case 15) in files of their own series
    planted["frames_negative"] = _variant(axial[0], one / "odd" / "frames-1.dcm", generate_uid(), NumberOfFrames=-1)
    with warnings.catch_warnings():  # pydicom warns that "2.0" is not a valid IS value: that is the point
        warnings.simplefilter("ignore", UserWarning)
        planted["frames_decimal"] = _variant(
            axial[1], one / "odd" / "frames-2.0.dcm", generate_uid(), NumberOfFrames="2.0"
        )
    # case 3: an RLE file declaring 16384 x 16384 pixels (a few bytes of data)
    ds = pydicom.dcmread(axial[2])
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 16384
    ds.PixelData = encapsulate([b"\x01\x00\x00\x00\x40" + b"\x00" * 59 + b"\x81\x00" * 32])
    ds["PixelData"].VR = "OB"
    ds.save_as(one / "odd" / "rle-16384.dcm")
    planted["rle_bomb"] = one / "odd" / "rle-16384.dcm"
    # case 4: a 1 KB file declaring ten million frames
    planted["frames_bomb"] = _variant(
        axial[3], one / "odd" / "ten-million.dcm", generate_uid(), NumberOfFrames=10_000_000, PixelData=b"\0" * 1024
    )
    # case 15: a 1 x 1 image
    planted["one_pixel"] = _variant(axial[4], one / "odd" / "one-pixel.dcm", generate_uid(), Rows=1, Columns=1,
                                    PixelData=b"\0\0")  # fmt: skip
    # case 13: header text where a reason could copy it
    planted["modality_text"] = _variant(axial[5], one / "odd" / "modality.dcm", generate_uid(), Modality="ROSSILUCIA")
    planted["photometric_text"] = _variant(
        axial[6], one / "odd" / "photometric.dcm", generate_uid(), PhotometricInterpretation="ROSSI LUCIA 1986"
    )
    # case 11: a sagittal T2 exported again as one multi-frame file, truncated, with more frames than the
    # intact series: it must not displace it
    sag = _series(two, 3)
    multi = pydicom.dcmread(sag[0])
    frames = np.stack([pydicom.dcmread(p).pixel_array for p in sag] * 2)
    multi.SeriesInstanceUID, multi.SOPInstanceUID = generate_uid(), generate_uid()
    multi.SeriesNumber, multi.NumberOfFrames = 30, len(frames)
    multi.PixelData = frames.tobytes()[: frames.nbytes // 3]
    multi.save_as(two / "sag-t2-multiframe.dcm")
    planted["truncated_multiframe"] = two / "sag-t2-multiframe.dcm"
    # case 16: one file of patient 2's intact axial T2 series claims 999 images in the acquisition
    claims = _series(two, 5)[0]
    ds = pydicom.dcmread(claims)
    ds.ImagesInAcquisition = 999
    for other in _series(two, 5)[1:]:  # the others do not say (as many scanners write it)
        o = pydicom.dcmread(other)
        del o.ImagesInAcquisition
        o.save_as(other)
    ds.save_as(claims)
    # case 1, 7, 8: a grading file keyed by the numbers; an unparseable row and an unclosed quote carrying MRNs
    labels = src.parent / "labels.csv"
    rows = [r.split(",") for r in (synthetic_export / "labels.csv").read_text().splitlines()[1:]]
    lines = ["patient_id,disc,disc_state,herniation,scs,rfs,lfs"]
    lines += [
        ",".join([{"P000001": "1", "P000002": "2"}[r[0]], *r[1:]]) for r in rows if r[0] in ("P000001", "P000002")
    ]
    lines += ["MRN-4471-XQ,L45,1,0,0,0,0,seen by ROSSI^LUCIA", '"MRN-5582-ZZ,L12,1,0,0,0,0', "2,L12,0,0,0,0,0"]
    labels.write_text("\n".join(lines) + "\n")
    return src, labels, planted


@pytest.fixture(scope="module")
def cli_build(bombs, tmp_path_factory):
    """The bombs export built by the CLI with two workers, every process under :data:`ADDRESS_SPACE`."""
    src, labels, _ = bombs
    base = tmp_path_factory.mktemp("bombs-out")
    key = base / "key.csv"
    key.write_text("an old key\n")
    key.chmod(0o644)  # case 6: a key file left readable by others must not stay so
    out = base / "ds"

    def ceiling() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    args = [LUMBAR, "dataset", "build", "--source", src, "--labels", labels, "--out", out, "--workers", "2"]
    args += ["--key-secret-env", TEST_SECRET_ENV, "--write-key", key]
    env = {**os.environ, TEST_SECRET_ENV: TEST_SECRET, "MALLOC_ARENA_MAX": "2"}
    started = time.monotonic()
    run = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300, preexec_fn=ceiling
    )
    seconds = time.monotonic() - started
    return run, out, key, seconds


def _entry(report, relpath):
    token = Pseudonymizer(TEST_SECRET.encode()).file_token(relpath)
    (entry,) = [f for f in report["files"] if f["file"] == token]
    return entry


def test_bombs_are_quarantined_under_a_memory_ceiling_and_the_build_finishes(cli_build, bombs):
    """Cases 2, 3, 4, 15: each bad header is one quarantine entry; the build ends with a dataset, in bounded memory."""
    run, out, _, seconds = cli_build
    src, _, planted = bombs
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and seconds < 120
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))

    def reason(name):
        entry = _entry(report, planted[name].relative_to(src).as_posix())
        assert entry["status"] == "quarantined", entry
        return entry["reason"]

    assert reason("frames_negative") == reason("frames_decimal") == "NumberOfFrames is not a whole number of at least 1"
    assert reason("rle_bomb").startswith("declares 16384 x 16384 pixels; the largest accepted is 4096")
    assert reason("frames_bomb").startswith("declares 10000000 frames; the most accepted is 2048")
    assert reason("one_pixel").startswith("declares 1 x 1 pixels; the least accepted is 32")
    # every PNG written opens (no image over Pillow's bomb limit, none degenerate)
    from PIL import Image

    sizes = {Image.open(p).size for p in (out / "images").iterdir()}
    assert sizes and all(min(s) >= 32 and max(s) <= 4096 for s in sizes)


def test_no_path_or_header_text_reaches_the_terminal_or_the_report(cli_build, bombs):
    """Cases 2, 5, 13: reasons are fixed sentences; no folder name (name, birth date, accession) is printed."""
    run, out, _, _ = cli_build
    src, _, planted = bombs
    report_text = (out / "report.json").read_text(encoding="utf-8")
    report = json.loads(report_text)
    shown = run.stdout + run.stderr + report_text + (out / "datacard.md").read_text(encoding="utf-8")
    for secret in ("Rossi", "Lucia", "19860522", "A90445748", "DUBOIS", "CAMILLE", "A31337", "Elsewhere", str(src)):
        assert secret.lower() not in shown.lower(), secret
    assert _entry(report, planted["modality_text"].relative_to(src).as_posix())["reason"] == (
        "modality of an unknown kind, not MR"
    )
    assert _entry(report, planted["photometric_text"].relative_to(src).as_posix())["reason"] == (
        "unsupported PhotometricInterpretation (not a grey or colour model)"
    )
    assert all("\n" not in f["reason"] and len(f["reason"]) <= 200 for f in report["files"])


def test_numbered_patients_keep_the_report_valid_and_unlinked(cli_build):
    """Cases 1 and 7: PatientIDs 1 and 2 are never replaced in, or copied into, the outputs."""
    _, out, _, _ = cli_build
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))  # valid JSON
    pseudonym = Pseudonymizer(TEST_SECRET.encode()).pseudonym
    assert report["summary"]["patients"] == 2 and report["summary"]["files"] == len(report["files"])
    assert any(f["reason"] == "image 1" for f in report["files"])  # the number 1 stays a number
    text = (out / "report.json").read_text(encoding="utf-8") + (out / "datacard.md").read_text(encoding="utf-8")
    # nothing shows which pseudonym stands for which number: pseudonyms appear only as patients
    assert re.findall(r"S[0-9a-f]{16}", text)
    assert not re.search(r"(image|frame|series number|line) S[0-9a-f]{16}", text)
    bad = report["labels"]["bad_values"]
    assert "MRN-4471" not in text and "MRN-5582" not in text and "seen by" not in text
    extra = next(b for b in bad if b["field"] == "(extra fields)")
    assert extra["patient"] == pseudonym("MRN-4471-XQ") and extra["value"].startswith("(withheld")
    manifest = (out / "manifest.csv").read_text(encoding="utf-8")
    assert {row.split(",")[0] for row in manifest.splitlines()[1:]} == {pseudonym("1"), pseudonym("2")}


def test_a_damaged_copy_never_displaces_an_intact_series(cli_build, bombs):
    """Cases 11 and 16: the intact sagittal T2 wins over a longer truncated one; one file's
    ImagesInAcquisition=999 does not quarantine its intact series."""
    _, out, _, _ = cli_build
    src, _, planted = bombs
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    two = Pseudonymizer(TEST_SECRET.encode()).pseudonym("2")
    (patient,) = [p for p in report["patients"] if p["patient"] == two]
    assert patient["missing"] == [] and patient["images"] >= 6
    multi = _entry(report, planted["truncated_multiframe"].relative_to(src).as_posix())
    assert multi["status"] == "not_needed" and "another sagittal T2 series" in multi["reason"]


def test_key_files_are_made_private_even_when_they_existed(cli_build):
    """Case 6: --write-key into an existing 0644 file leaves both keys at 0600."""
    _, _, key, _ = cli_build
    for path in (key, key.with_name("key-files.csv")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert key.read_text().startswith("pseudonym,patient_id")


class _DeleteBeforeDecoding(NullProgress):
    """A progress sink that deletes a file when the build starts writing images (between index and decode)."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def task(self, description, total=None):
        if description == "writing images":
            self.victim.unlink()
        return super().task(description, total)


def test_a_file_that_vanishes_before_decoding_is_named_by_token_only(bombs, tmp_path, monkeypatch):
    """Case 5: the decoding error of a file gone since indexing carries no absolute path or folder name."""
    src, _, _ = bombs
    export = tmp_path / "export"
    shutil.copytree(src / FOLDERS["1"], export / FOLDERS["1"], ignore=shutil.ignore_patterns("odd"))
    victim = _series(export, 5)[12]  # the L3-L4 disc centre
    monkeypatch.setenv(TEST_SECRET_ENV, TEST_SECRET)
    config = BuildConfig(source=export, out=tmp_path / "ds", key_secret_env=TEST_SECRET_ENV)
    build_dataset_c(config, _DeleteBeforeDecoding(victim))
    text = (tmp_path / "ds" / "report.json").read_text(encoding="utf-8")
    entry = _entry(json.loads(text), victim.relative_to(export).as_posix())
    assert entry["status"] == "quarantined"
    assert entry["reason"] == "pixel data could not be read (No such file or directory)"
    assert str(tmp_path) not in text and "Rossi" not in text and "A90445748" not in text


def test_the_demo_key_builds_only_exports_lumbar_synth_wrote(synthetic_export, tmp_path, monkeypatch):
    """Case 19: the published demo key builds a synthetic export and refuses one with an unmarked image."""
    monkeypatch.setenv(DEFAULT_SECRET_ENV, DEMO_SECRET)
    export = tmp_path / "export"
    shutil.copytree(synthetic_export / "P000005", export / "P000005")
    build_dataset_c(BuildConfig(source=export, out=tmp_path / "ok"))
    assert (tmp_path / "ok" / "manifest.csv").is_file()
    real = next(export.rglob("*.dcm"))
    ds = pydicom.dcmread(real)
    del ds[SYNTH_MARK_TAG]
    ds.save_as(real)
    with pytest.raises(InputError, match=r"published demo key.*1 image\(s\) of this export are not"):
        build_dataset_c(BuildConfig(source=export, out=tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()


def test_build_time_grows_linearly_with_the_grading_file(synthetic_export, tmp_path):
    """Case 8: a department-wide grading file; 4x the graded patients costs about 4x the label work, not 16x."""
    export = tmp_path / "export"
    shutil.copytree(synthetic_export / "P000006", export / "P000006")

    def seconds(patients: int) -> float:
        labels = tmp_path / f"labels-{patients}.csv"
        rows = [f"MRN{i:07d},{d},1,0,0,0,0" for i in range(patients) for d in ("L12", "L23", "L34", "L45", "L51")]
        labels.write_text("patient_id,disc,disc_state,herniation,scs,rfs,lfs\n" + "\n".join(rows) + "\n")
        config = BuildConfig(
            source=export, labels=labels, out=tmp_path / f"ds-{patients}", key_secret_env=TEST_SECRET_ENV
        )
        started = time.perf_counter()
        build_dataset_c(config)
        return time.perf_counter() - started

    seconds(100)  # warm-up
    small, large = seconds(1000), seconds(4000)
    assert large / small < 7, (small, large)  # linear: about 3x (docs/security.md); quadratic was 13x


def test_duplicate_multiframe_exports_cost_linear_time(tmp_path):
    """Case 12: the same multi-frame image exported twice; each frame is decoded once, not once per frame."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    def seconds(frames: int) -> float:
        export = tmp_path / f"export-{frames}"
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.Modality, ds.PatientID, ds.SeriesInstanceUID = "MR", "P1", generate_uid()
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "T2 SAG", 3, 1
        ds.Rows = ds.Columns = 128
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.NumberOfFrames = frames
        ds.PixelData = np.random.default_rng(0).integers(0, 4095, (frames, 128, 128), dtype=np.uint16).tobytes()
        export.mkdir()
        ds.save_as(export / "a.dcm", enforce_file_format=True)
        ds.save_as(export / "b.dcm", enforce_file_format=True)  # the same image, exported twice
        started = time.perf_counter()
        build_dataset_c(BuildConfig(source=export, out=tmp_path / f"ds-{frames}", key_secret_env=TEST_SECRET_ENV))
        return time.perf_counter() - started

    seconds(8)  # warm-up
    small, large = seconds(48), seconds(192)
    assert large / small < 7, (small, large)  # linear: about 3x (docs/security.md); quadratic was 24x
