"""A corrupted copy of a synthetic export builds what it can and reports each problem."""

import json
import os
import shutil

import pydicom
import pytest

from lumbar.dataset_c import BuildConfig, build_dataset_c, read_manifest
from lumbar.deid import Pseudonymizer

from .conftest import TEST_SECRET, TEST_SECRET_ENV


def _axial_t2(folder, series=5):
    files = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in folder.glob("*.dcm")]
    files = [(p, d) for p, d in files if d.SeriesNumber == series]
    return [p for p, d in sorted(files, key=lambda pd: float(pd[1].ImagePositionPatient[2]))]


@pytest.fixture(scope="module")
def corrupted(synthetic_export, tmp_path_factory):
    """Copy four patients and damage them in every way the issue lists."""
    src = tmp_path_factory.mktemp("corrupt") / "export"
    for pid in ("P000001", "P000002", "P000003", "P000004"):
        shutil.copytree(synthetic_export / pid, src / pid)
    damage = {}
    # P000001: the L4-L5 disc-centre file truncated in its pixel data, a sagittal T1 file cut inside its header
    p1 = _axial_t2(src / "P000001")
    data = p1[7].read_bytes()
    p1[7].write_bytes(data[: len(data) // 2])
    damage["truncated"] = p1[7].relative_to(src).as_posix()
    sag_t1 = _axial_t2(src / "P000001", series=2)[0]
    sag_t1.write_bytes(sag_t1.read_bytes()[:300])
    damage["header_cut"] = sag_t1.relative_to(src).as_posix()
    # random bytes and a non-DICOM file
    (src / "P000001" / "garbage.dcm").write_bytes(os.urandom(4096))
    (src / "P000001" / "scan.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    # a CT image dropped into the export
    ct = pydicom.dcmread(p1[3])
    ct.Modality = "CT"
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8"
    ct.save_as(src / "P000001" / "ct.dcm")
    # P000002: an axial T2 acquisition of only 10 frames
    axial = _axial_t2(src / "P000002")
    for path in axial[10:]:
        path.unlink()
    for path in axial[:10]:
        ds = pydicom.dcmread(path)
        ds.ImagesInAcquisition = 10
        ds.save_as(path)
    # labels: bad rows, a patient without images, and P000003 without labels
    lines = (synthetic_export / "labels.csv").read_text().splitlines()
    kept = [
        line
        for line in lines
        if not line.startswith("P000003") and line.split(",")[0] in ("patient_id", "P000001", "P000002", "P000004")
    ]
    kept += [
        "P000004,L99,0,0,0,0,0",
        "P000004,L45,7,0,0,0,0",
        "P000004,L45,1,0,0,0,0",
        "P000004,L12,a,0,0,0,0",
        "P000999,L45,1,0,0,0,0",
    ]
    # the same disc graded again by pseudonym (as lumbar label serve writes): once alike, once different
    same = next(line for line in kept if line.startswith("P000001,L34,"))
    kept.append(same.replace("P000001", _pseudonym("P000001")))
    other = next(line for line in kept if line.startswith("P000004,L23,")).split(",")
    other[2] = str((int(other[2]) + 1) % 4)
    kept.append(",".join([_pseudonym("P000004"), *other[1:]]))
    (src.parent / "labels.csv").write_text("\n".join(kept) + "\n")
    return src, damage


@pytest.fixture(scope="module")
def report(corrupted, tmp_path_factory):
    src, _ = corrupted
    out = tmp_path_factory.mktemp("corrupt-out") / "ds"
    result = build_dataset_c(
        BuildConfig(source=src, labels=src.parent / "labels.csv", out=out, key_secret_env=TEST_SECRET_ENV, workers=2)
    )
    assert result.usable and result.problems > 0
    return json.loads((out / "report.json").read_text()), read_manifest(out)


def _pseudonym(pid):
    return Pseudonymizer(TEST_SECRET.encode()).pseudonym(pid)


def test_every_file_is_accounted_for(corrupted, report):
    src, _ = corrupted
    rep, _ = report
    assert len(rep["files"]) == sum(1 for p in src.rglob("*") if p.is_file())
    assert all(f["status"] in ("used", "not_needed", "quarantined") and f["reason"] for f in rep["files"])


def test_file_problems_are_quarantined_with_reasons(corrupted, report):
    _, damage = corrupted
    rep, _ = report
    by_token = {f["file"]: f for f in rep["files"]}
    pseudonymizer = Pseudonymizer(TEST_SECRET.encode())

    def entry(relpath):
        return by_token[pseudonymizer.file_token(relpath)]

    assert entry(damage["truncated"])["status"] == "quarantined"
    assert entry(damage["truncated"])["reason"].startswith("truncated")
    assert entry(damage["header_cut"])["status"] == "quarantined"
    assert "truncated or corrupt" in entry(damage["header_cut"])["reason"]
    assert entry("P000001/garbage.dcm")["reason"].startswith("not a DICOM file")
    assert entry("P000001/scan.jpg")["reason"].startswith("not a DICOM file")
    assert entry("P000001/ct.dcm")["reason"] == "modality CT, not MR"


def test_patient_level_problems(report):
    rep, manifest = report
    patients = {p["patient"]: p for p in rep["patients"]}
    p1 = patients[_pseudonym("P000001")]
    missing = {m["item"]: m["reason"] for m in p1["missing"]}
    assert missing["45"].startswith("truncated")  # the damaged disc centre is missing, the others are there
    assert p1["images"] >= 6
    assert {r["item"] for r in manifest if r["patient"] == _pseudonym("P000001")} >= {"3", "12", "23", "34", "51"}
    p2 = patients[_pseudonym("P000002")]
    assert all(
        "has 10 frames" in p2_m["reason"] for p2_m in p2["missing"] if p2_m["item"] in {"12", "23", "34", "45", "51"}
    )
    assert {r["item"] for r in manifest if r["patient"] == _pseudonym("P000002")} >= {"1", "3"}  # the rest is kept
    ten = [f for f in rep["files"] if f["patient"] == _pseudonym("P000002") and "has 10 frames" in f["reason"]]
    assert len(ten) == 10 and all(f["status"] == "quarantined" for f in ten)


def test_label_problems(report):
    rep, manifest = report
    bad = {(b["line"], b["field"]) for b in rep["labels"]["bad_values"]}
    assert {b[1] for b in bad} == {"disc", "disc_state"} and len(bad) == 6
    # every problem names its row's patient by pseudonym, never by the PatientID the file has
    assert {b["patient"] for b in rep["labels"]["bad_values"]} == {_pseudonym("P000001"), _pseudonym("P000004")}
    twice = sorted(b["reason"] for b in rep["labels"]["bad_values"] if "is graded twice, on" in b["reason"])
    assert "L23" in twice[0] and "different grades, both left out" in twice[0] and "pseudonym" in twice[0]
    assert "L34" in twice[1] and "the same grades, kept once" in twice[1] and "PatientID" in twice[1]
    labelled = {(r["patient"], r["disc"]): r["label"] for r in manifest}
    assert labelled[(_pseudonym("P000004"), "L23")] == "" and labelled[(_pseudonym("P000001"), "L34")] != ""
    without = {(w["patient"], w["disc"]) for w in rep["labels"]["without_images"]}
    assert (_pseudonym("P000999"), "L45") in without
    assert all((_pseudonym("P000002"), d) in without for d in ("L12", "L23", "L34", "L45", "L51"))
    assert rep["labels"]["patients_without_labels"] == [_pseudonym("P000003")]
    p3 = [r for r in manifest if r["patient"] == _pseudonym("P000003")]
    assert p3 and all(r["label"] == "" and r["split"] == "" for r in p3)  # imaged, kept for grading, not split
    assert "P000999" not in json.dumps(rep)


def test_nothing_usable_and_strict(tmp_path, corrupted):
    src, _ = corrupted
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.bin").write_bytes(b"junk")
    result = build_dataset_c(
        BuildConfig(source=empty, labels=src.parent / "labels.csv", out=tmp_path / "o", key_secret_env=TEST_SECRET_ENV)
    )
    assert not result.usable
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["files"][0]["status"] == "quarantined"
