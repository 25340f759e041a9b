"""End-to-end Dataset C builds on a real synthetic export (DICOM written by pydicom)."""

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from lumbar.dataset_c import MANIFEST_COLUMNS, BuildConfig, assign_splits, build_dataset_c, read_manifest
from lumbar.deid import name_variants
from lumbar.dicom import window_to_uint8
from lumbar.errors import InputError
from lumbar.synth import draw_discs

from .conftest import TEST_SECRET_ENV


def _key(dataset: Path) -> dict[str, str]:
    return {r["pseudonym"]: r["patient_id"] for r in csv.DictReader((dataset.parent / "key.csv").open())}


def _truth(export: Path) -> dict[tuple[str, str], dict]:
    return {(r["patient_id"], r["disc"]): r for r in csv.DictReader((export / "truth.csv").open())}


def test_manifest_layout(built_dataset):
    rows = read_manifest(built_dataset)
    with (built_dataset / "manifest.csv").open() as handle:
        assert next(csv.reader(handle)) == list(MANIFEST_COLUMNS)
    assert {r["series"] for r in rows} == {"myelo", "sag_t2", "ax_t2"}
    for row in rows:
        assert (built_dataset / row["image_path"]).is_file()
        assert row["image_path"] == f"images/{row['patient']}_{row['item']}.png"
        if row["series"] == "ax_t2":
            assert row["roi_path"] == f"roi/{row['patient']}_{row['item']}.png"
            full = Image.open(built_dataset / row["image_path"])
            roi = Image.open(built_dataset / row["roi_path"])
            assert full.mode == roi.mode == "L"
            assert roi.size == (39, 80)  # the ROI grid scaled to the 128 x 128 matrix
        else:
            assert row["roi_path"] == "" and row["disc"] == "" and row["label"] == ""
    assert (built_dataset / "datacard.md").read_text().count("| 0 normal |") >= 1


def test_selected_frames_are_the_disc_centres(built_dataset, synthetic_export):
    """Each axial image is the disc-centre frame of the ground truth, found here independently by slice position."""
    key, truth = _key(built_dataset), _truth(synthetic_export)
    rows = read_manifest(built_dataset)
    checked = 0
    by_patient = defaultdict(list)
    for row in rows:
        by_patient[key[row["patient"]]].append(row)
    for patient_id, patient_rows in by_patient.items():
        axial = [pydicom.dcmread(p) for p in (synthetic_export / patient_id).glob("*.dcm")]
        axial = sorted((d for d in axial if d.SeriesNumber == 5), key=lambda d: float(d.ImagePositionPatient[2]))
        for row in patient_rows:
            if row["series"] != "ax_t2":
                continue
            expected_frame = int(truth[(patient_id, row["disc"])]["axial_frame"])
            assert int(row["source_frame"]) == expected_frame
            ds = axial[expected_frame - 1]
            expected = window_to_uint8(
                ds.pixel_array,
                float(ds.RescaleSlope),
                float(ds.RescaleIntercept),
                float(ds.WindowCenter) if "WindowCenter" in ds else None,
                float(ds.WindowWidth) if "WindowWidth" in ds else None,
            )
            np.testing.assert_array_equal(np.asarray(Image.open(built_dataset / row["image_path"])), expected)
            checked += 1
        sag = next(r for r in patient_rows if r["series"] == "sag_t2")
        assert int(sag["source_frame"]) == int(truth[(patient_id, "L12")]["sagittal_frame"])
    assert checked == 8 * 5


def test_labels_are_joined(built_dataset, synthetic_export):
    key, truth = _key(built_dataset), _truth(synthetic_export)
    for row in read_manifest(built_dataset):
        if row["series"] != "ax_t2":
            continue
        t = truth[(key[row["patient"]], row["disc"])]
        for field in ("disc_state", "herniation", "scs", "rfs", "lfs"):
            assert row[field] == t[field]
        assert row["label"] == str(int(t["disc_state"] != "0"))


def test_splits_are_disjoint_by_patient(built_dataset):
    rows = read_manifest(built_dataset)
    split_of = defaultdict(set)
    for row in rows:
        split_of[row["patient"]].add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert {next(iter(s)) for s in split_of.values()} == {"train", "val", "test"}


def test_patient_split_is_stratified():
    rng = np.random.default_rng(4)
    rows = []
    for p in range(80):
        for d in draw_discs(rng):
            rows.append({"patient": f"S{p:03d}", "disc": d.disc, "label": int(d.disc_state != 0)})
    assign_splits(rows, "patient", (0.75, 0.15, 0.10), seed=0)
    overall = np.mean([r["label"] for r in rows])
    patients = defaultdict(set)
    for r in rows:
        patients[r["split"]].add(r["patient"])
    assert {k: len(v) for k, v in patients.items()} == {"train": 60, "val": 12, "test": 8}
    for split in ("train", "val", "test"):
        rate = np.mean([r["label"] for r in rows if r["split"] == split])
        assert abs(rate - overall) < 0.08, (split, rate, overall)


def test_image_split_reproduces_paper_setting(synthetic_export, tmp_path):
    out = tmp_path / "by-image"
    build_dataset_c(
        BuildConfig(
            source=synthetic_export,
            labels=synthetic_export / "labels.csv",
            out=out,
            key_secret_env=TEST_SECRET_ENV,
            split_by="image",
        )
    )
    rows = [r for r in read_manifest(out) if r["label"] != ""]
    splits = defaultdict(set)
    for r in rows:
        splits[r["patient"]].add(r["split"])
    assert any(len(s) > 1 for s in splits.values())  # image-level: a patient may straddle splits
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert counts == {"train": 30, "val": 6, "test": 4}


def _phi_strings(export: Path) -> set[str]:
    phi: set[str] = set()
    for path in export.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        phi |= {
            str(ds.PatientID),
            str(ds.PatientBirthDate),
            str(ds.InstitutionName),
            str(ds.ReferringPhysicianName),
            str(ds.AccessionNumber),
        }
        phi |= set(name_variants(str(ds.PatientName)))
    return {s for s in phi if s}


def test_no_phi_anywhere_in_the_output(built_dataset, synthetic_export):
    phi = _phi_strings(synthetic_export)
    assert len(phi) > 8 * 5
    outputs = [p for p in built_dataset.rglob("*") if p.is_file()]
    assert len(outputs) >= 8 * 12 + 3  # per patient 5 axial, 5 ROI, 1 sagittal, 1-4 myelo; + 3 files
    for path in outputs:
        data = path.read_bytes().lower()
        leaked = [s for s in phi if s.lower().encode() in data]
        assert not leaked, f"{path.name} contains {leaked}"
        assert not any(s.lower().encode() in path.as_posix().lower().encode() for s in phi)
    for png in built_dataset.glob("images/*.png"):
        assert not Image.open(png).text  # no text chunks


def test_report_accounts_for_every_input_file(built_dataset, synthetic_export):
    report = json.loads((built_dataset / "report.json").read_text())
    inputs = [p for p in synthetic_export.rglob("*") if p.is_file()]
    assert report["summary"]["files"] == len(inputs) == len(report["files"])
    assert report["summary"]["used"] + report["summary"]["not_needed"] + report["summary"]["quarantined"] == len(inputs)
    statuses = {f["status"] for f in report["files"]}
    assert statuses == {"used", "not_needed"}
    used = [f for f in report["files"] if f["status"] == "used"]
    assert len(used) == report["summary"]["images"] == len(read_manifest(built_dataset))
    assert all(f["reason"] for f in report["files"])


def test_same_secret_same_pseudonyms_and_images(built_dataset, synthetic_export, tmp_path):
    again = tmp_path / "again"
    build_dataset_c(
        BuildConfig(
            source=synthetic_export,
            labels=synthetic_export / "labels.csv",
            out=again,
            key_secret_env=TEST_SECRET_ENV,
            seed=3,
        )
    )
    assert (again / "manifest.csv").read_text() == (built_dataset / "manifest.csv").read_text()
    first = sorted(built_dataset.glob("images/*.png"))[0]
    assert (again / "images" / first.name).read_bytes() == first.read_bytes()
    # rebuilding into the same folder replaces it
    build_dataset_c(BuildConfig(source=synthetic_export, out=again, key_secret_env=TEST_SECRET_ENV))
    assert all(r["label"] == "" for r in read_manifest(again))


def test_key_is_kept_apart(synthetic_export, tmp_path, built_dataset):
    with pytest.raises(InputError, match="inside the dataset folder"):
        BuildConfig(source=synthetic_export, out=tmp_path / "d", write_key=tmp_path / "d" / "key.csv")
    key = built_dataset.parent / "key.csv"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert len(_key(built_dataset)) == 8


def test_bad_options(synthetic_export, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        BuildConfig(source=tmp_path / "missing", out=tmp_path / "o")
    with pytest.raises(InputError, match="split-by"):
        BuildConfig(source=synthetic_export, out=tmp_path / "o", split_by="disc")
    with pytest.raises(InputError, match="outside the source"):
        BuildConfig(source=synthetic_export, out=synthetic_export / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.txt").write_text("x")
    with pytest.raises(InputError, match="not a dataset built by lumbar"):
        build_dataset_c(BuildConfig(source=synthetic_export, out=tmp_path / "busy"))
    assert (tmp_path / "busy" / "precious.txt").exists()
