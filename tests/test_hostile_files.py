"""Files and paths that used to break the builder (issue 17): pipes, odd names, links, bad outputs, signals.

Each case is built through the CLI in a subprocess with a timeout, so a build that blocks fails the
test instead of hanging the suite.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lumbar.deid import Pseudonymizer

from .conftest import TEST_SECRET, TEST_SECRET_ENV

LUMBAR = str(Path(sys.executable).with_name("lumbar"))
ENV = {**os.environ, TEST_SECRET_ENV: TEST_SECRET}


def _cli(*args, timeout=180):
    return subprocess.run(
        [LUMBAR, *map(os.fsdecode, args)], capture_output=True, text=True, env=ENV, timeout=timeout, errors="replace"
    )


def _axial(folder, series=5):
    """The files of a series, in slice order (ascending position), as the builder numbers them."""
    files = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in Path(folder).glob("*.dcm")]
    files = [(p, d) for p, d in files if d.SeriesNumber == series]
    return [p for p, d in sorted(files, key=lambda pd: float(pd[1].ImagePositionPatient[2]))]


@pytest.fixture(scope="module")
def hostile(synthetic_export, tmp_path_factory):
    """Four patients with a pipe, odd names, links, CT and pixel-less files and a conflicting duplicate."""
    base = tmp_path_factory.mktemp("hostile")
    src = base / "export"
    src.mkdir()
    shutil.copytree(synthetic_export / "P000001", src / "P000001")
    # P000002 in a folder whose name is not UTF-8 (Latin-1, as old Windows exports write it)
    shutil.copytree(synthetic_export / "P000002", src / os.fsdecode(b"P000002-Fran\xe7ois"))
    # P000003 reached through a symbolic link to a folder outside the export
    shutil.copytree(synthetic_export / "P000003", base / "elsewhere" / "P000003")
    (src / "P000003").symlink_to(base / "elsewhere" / "P000003", target_is_directory=True)
    shutil.copytree(synthetic_export / "P000004", src / "P000004")
    p1 = src / "P000001"
    axial = _axial(p1)
    shutil.copyfile(axial[0], p1 / os.fsdecode(b"copy-\xff\xfe.dcm"))  # a second copy under a non-UTF-8 name
    os.mkfifo(p1 / "pipe.dcm")  # a named pipe: opening it for reading would block forever
    (p1 / "loop").symlink_to(src, target_is_directory=True)  # a link loop
    (p1 / "gone.dcm").symlink_to(base / "nowhere.dcm")  # a broken link
    damage = {}
    # the L4-L5 disc centre (axial frame 8) becomes a CT image; the L1-L2 one (frame 23) loses its pixels
    ct = pydicom.dcmread(axial[7])
    ct.Modality = "CT"
    ct.save_as(axial[7])
    damage["ct"] = axial[7].relative_to(src).as_posix()
    empty = pydicom.dcmread(axial[22])
    del empty.PixelData
    empty.save_as(axial[22])
    damage["no_pixels"] = axial[22].relative_to(src).as_posix()
    # P000004: a second file with the L3-L4 disc centre's SOPInstanceUID but other pixels
    p4 = _axial(src / "P000004")
    other = pydicom.dcmread(p4[12])
    pixels = other.pixel_array.copy()
    pixels[:10, :10] = np.uint16(4000)
    other.PixelData = pixels.tobytes()
    other.save_as(src / "P000004" / "resent.dcm")
    damage["conflict"] = [p4[12].relative_to(src).as_posix(), "P000004/resent.dcm"]
    return src, damage


@pytest.fixture(scope="module")
def built(hostile, tmp_path_factory):
    src, _ = hostile
    out = tmp_path_factory.mktemp("hostile-out") / "ds"
    key = out.parent / "key.csv"
    run = _cli(
        "dataset", "build", "--source", src, "--out", out, "--key-secret-env", TEST_SECRET_ENV, "--write-key", key
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return report, run, key


def _entry(report, relpath):
    token = Pseudonymizer(TEST_SECRET.encode()).file_token(relpath)
    (entry,) = [f for f in report["files"] if f["file"] == token]
    return entry


def test_special_files_and_links_are_accounted_never_opened(built):
    report, run, _ = built
    assert "4 patients" in run.stdout  # the non-UTF-8 folder and the linked folder were both read
    pipe = _entry(report, "P000001/pipe.dcm")
    assert pipe["status"] == "not_needed" and pipe["reason"].startswith("named pipe (FIFO)")
    loop = _entry(report, "P000001/loop")
    assert loop["status"] == "not_needed" and "already read" in loop["reason"]
    gone = _entry(report, "P000001/gone.dcm")
    assert gone["status"] == "quarantined" and gone["reason"] == "broken symbolic link"
    assert report["summary"]["files"] == len(report["files"])


def test_non_utf8_names_work_and_stay_out_of_the_outputs(built, hostile):
    report, _, key = built
    copy = _entry(report, os.fsdecode(b"P000001/copy-\xff\xfe.dcm"))
    assert copy["status"] == "not_needed" and "same SOPInstanceUID and pixel data" in copy["reason"]
    moved = [f for f in report["files"] if f["status"] == "used" and f["reason"] == "image 1"]
    assert len(moved) == 4  # every patient, the one in the Latin-1 folder too, gave its first image
    mapped = key.with_name("key-files.csv").read_text(encoding="utf-8")
    assert "P000002-Fran\\xe7ois/" in mapped and "copy-\\xff\\xfe.dcm" in mapped


def test_reasons_name_what_is_really_wrong(built, hostile):
    report, _, _ = built
    _, damage = hostile
    assert _entry(report, damage["ct"])["reason"] == "modality CT, not MR"
    assert _entry(report, damage["no_pixels"])["reason"].startswith("no pixel data")
    pseudonym = Pseudonymizer(TEST_SECRET.encode()).pseudonym
    patients = {p["patient"]: p for p in report["patients"]}
    missing = {m["item"]: m["reason"] for m in patients[pseudonym("P000001")]["missing"]}
    assert "modality CT, not MR" in missing["45"] and "is missing from the export" not in missing["45"]
    assert "no pixel data" in missing["12"]
    for relpath in damage["conflict"]:
        entry = _entry(report, relpath)
        assert entry["status"] == "quarantined" and entry["reason"].startswith("conflicting duplicate")
        assert entry["same_image_as"] != entry["file"]
    p4 = {m["item"]: m["reason"] for m in patients[pseudonym("P000004")]["missing"]}
    assert "conflicting duplicate" in p4["34"]


@pytest.fixture
def tiny_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "junk.bin").write_bytes(b"junk")
    return src


def test_bad_output_paths_are_one_error_line(tiny_source, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, expected in (
        (a_file, "is a file, not a folder"),
        (a_file / "inside", "which is a file"),
        (Path("/proc/lumbar-out"), "cannot be created"),
    ):
        run = _cli("dataset", "build", "--source", tiny_source, "--out", out, timeout=60)
        assert run.returncode == 2, run.stderr
        assert run.stderr.startswith("error: ") and expected in run.stderr and run.stderr.count("\n") == 1
    run = _cli("dataset", "build", "--source", tiny_source, "--out", tmp_path / "o", "--write-key", "/proc/k/key.csv")
    assert run.returncode == 2 and run.stderr.startswith("error: --write-key") and run.stderr.count("\n") == 1
    assert a_file.read_text() == "x"


def test_label_serve_refuses_an_unwritable_labels_file(built_dataset, tmp_path):
    for labels in (Path("/proc/lumbar/labels.csv"), tmp_path):
        run = _cli("label", "serve", "--dataset", built_dataset, "--labels", labels, "--port", "0", timeout=60)
        assert run.returncode == 2, run.stderr
        assert run.stderr.startswith("error: --labels") and run.stderr.count("\n") == 1


def test_sigterm_cleans_up_and_stale_partials_are_removed(synthetic_export, tmp_path):
    out = tmp_path / "ds"
    process = subprocess.Popen(
        [LUMBAR, "dataset", "build", "--source", synthetic_export, "--out", out, "--key-secret-env", TEST_SECRET_ENV],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    partial = tmp_path / f".ds.partial-{process.pid}"
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert partial.exists()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert "interrupted" in process.stderr.read().decode()
    assert not partial.exists() and not out.exists()
    # folders left by killed builds: a dead PID's is removed, a live process's is kept
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale, live = tmp_path / f".ds.partial-{dead.pid}", tmp_path / f".ds.partial-{sleeper.pid}"
        for folder in (stale, live):
            (folder / "images").mkdir(parents=True)
        run = _cli("dataset", "build", "--source", synthetic_export / "P000005", "--out", out)
        assert run.returncode == 0, run.stderr
        assert not stale.exists() and live.exists() and (out / "manifest.csv").is_file()
    finally:
        sleeper.kill()
        sleeper.wait()
