import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lumbar.synth import SynthConfig, draw_discs, write_pacs_export


def _series(folder: Path) -> dict[int, list[pydicom.Dataset]]:
    series: dict[int, list] = {}
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        series.setdefault(int(ds.SeriesNumber), []).append(ds)
    return series


def test_export_layout_and_tags(synthetic_export):
    patients = sorted(p.name for p in synthetic_export.iterdir() if p.is_dir())
    assert patients == [f"P{i:06d}" for i in range(1, 9)]
    truth = list(csv.DictReader((synthetic_export / "truth.csv").open()))
    first = _series(synthetic_export / "P000001")
    assert sorted(first) == [1, 2, 3, 4, 5, 6]
    row = next(r for r in truth if r["patient_id"] == "P000001")
    assert 13 <= len(first[3]) <= 17 and len(first[3]) == int(row["sagittal_frames"])
    assert 25 <= len(first[5]) <= 30 and len(first[5]) == int(row["axial_frames"])
    assert 1 <= len(first[6]) <= 4
    ds = first[5][0]
    assert ds.Modality == "MR" and ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
    for keyword in (
        "RescaleSlope",
        "RescaleIntercept",
        "PixelSpacing",
        "SliceThickness",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "EchoTime",
        "RepetitionTime",
        "SeriesDescription",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "InstitutionName",
    ):
        assert keyword in ds, keyword
    assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.max() > 0
    # files are named by SOP Instance UID, not by order
    assert all(
        p.stem == pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
        for p in list((synthetic_export / "P000001").glob("*.dcm"))[:5]
    )


def test_labels_match_ground_truth(synthetic_export):
    truth = {(r["patient_id"], r["disc"]): r for r in csv.DictReader((synthetic_export / "truth.csv").open())}
    labels = list(csv.DictReader((synthetic_export / "labels.csv").open()))
    assert len(labels) == len(truth) == 8 * 5
    for row in labels:
        t = truth[(row["patient_id"], row["disc"])]
        assert [row[k] for k in ("disc_state", "herniation", "scs", "rfs", "lfs")] == [
            t[k] for k in ("disc_state", "herniation", "scs", "rfs", "lfs")
        ]
        assert (row["herniation"] != "0") == (row["disc_state"] == "3")


def test_same_seed_same_export(tmp_path):
    a = write_pacs_export(tmp_path / "a", SynthConfig(patients=1, seed=5, size=64))
    b = write_pacs_export(tmp_path / "b", SynthConfig(patients=1, seed=5, size=64))
    names_a = sorted(p.name for p in (a / "P000001").iterdir())
    assert names_a == sorted(p.name for p in (b / "P000001").iterdir())
    assert (a / "P000001" / names_a[0]).read_bytes() == (b / "P000001" / names_a[0]).read_bytes()
    c = write_pacs_export(tmp_path / "c", SynthConfig(patients=1, seed=6, size=64))
    assert (a / "labels.csv").read_text() != (c / "labels.csv").read_text() or names_a != sorted(
        p.name for p in (c / "P000001").iterdir()
    )


def test_compressed_exports_decode(tmp_path):
    out = write_pacs_export(tmp_path / "x", SynthConfig(patients=1, seed=2, size=64, compression="j2k"))
    ds = pydicom.dcmread(next((out / "P000001").glob("*.dcm")))
    assert ds.file_meta.TransferSyntaxUID.name.startswith("JPEG 2000")
    assert ds.pixel_array.shape in {(64, 64), (32, 32)} or ds.pixel_array.shape[0] >= 32


def test_state_frequencies_are_realistic():
    rng = np.random.default_rng(0)
    counts: dict[str, Counter] = {}
    for _ in range(1500):
        for d in draw_discs(rng):
            counts.setdefault(d.disc, Counter())[d.disc_state] += 1
    assert counts["L12"].most_common(1)[0][0] == 0  # mostly normal high up
    assert counts["L23"].most_common(1)[0][0] == 0
    assert counts["L45"].most_common(1)[0][0] == 2  # mostly bulge at L4-L5
    assert all(len(c) == 4 for c in counts.values())  # every state occurs at every level


def test_config_validation():
    with pytest.raises(ValueError, match="compression"):
        SynthConfig(compression="zip")
    with pytest.raises(ValueError, match="patients"):
        SynthConfig(patients=0)
