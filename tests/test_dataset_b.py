"""Dataset B: every DICOM frame and image of a synthetic export plus the real brain sample, in TFRecord shards."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from lumbar.dataset_b import UnlabelledBuildConfig, build_dataset_b, read_shards
from lumbar.deid import name_variants

from .conftest import BRAIN_MRI_SAMPLE, TEST_SECRET_ENV, run_and_kill_when

LUMBAR = str(Path(sys.executable).with_name("lumbar"))


@pytest.fixture(scope="module")
def shards(synthetic_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset-b") / "b"
    summary = build_dataset_b(
        UnlabelledBuildConfig(
            sources=(synthetic_export, BRAIN_MRI_SAMPLE),
            out=out,
            image_size=48,
            shard_mb=0.3,
            workers=2,
            key_secret_env=TEST_SECRET_ENV,
        )
    )
    return out, summary


def test_every_frame_and_image_is_in_the_shards(shards, synthetic_export):
    out, summary = shards
    dicom = list(synthetic_export.rglob("*.dcm"))
    images = [p for p in BRAIN_MRI_SAMPLE.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] and summary.shards == len(index["shards"]) > 1
    assert summary.images == index["images"] == len(dicom) + len(images)  # every series, one frame per file
    assert index["counts"] == {"used": len(dicom) + len(images), "skipped": 3}  # labels.csv, truth.csv, README.md
    rows = [row for f in sorted((out / "accounting").glob("*.csv")) for row in csv.DictReader(f.open())]
    assert len(rows) == summary.files == len(dicom) + len(images) + 3
    assert {r["status"] for r in rows} == {"used", "skipped"}
    shard_bytes = [s["bytes"] for s in index["shards"]]
    assert all(b > 0 for b in shard_bytes)
    assert sum(1 for _ in read_shards(out)) == summary.images  # shards read back to the same number
    first = next(iter(read_shards(out)))
    assert first.shape == (48, 48, 1) and first.dtype.name == "uint8"


def test_no_identifier_in_shards_or_accounting(shards, synthetic_export):
    out, _ = shards
    phi = set()
    for path in list(synthetic_export.rglob("*.dcm"))[::7]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        phi |= {
            str(ds.PatientID),
            str(ds.PatientBirthDate),
            str(ds.InstitutionName),
            *name_variants(str(ds.PatientName)),
        }
    for path in [*out.glob("*.tfrecord"), *(out / "accounting").glob("*.csv"), out / "index.json"]:
        data = path.read_bytes().lower()
        assert not [s for s in phi if s.lower().encode() in data], path.name


def test_killed_build_resumes(synthetic_export, tmp_path):
    out = tmp_path / "b"
    env = {**os.environ, "LUMBAR_PSEUDONYM_SECRET": "resume-Xw4nB8qT2kZm6Rp9"}
    args = [
        LUMBAR,
        "dataset",
        "build-unlabelled",
        "--source",
        str(synthetic_export),
        "--out",
        str(out),
        "--image-size",
        "96",
        "--shard-size",
        "0.4",
    ]
    index = out / "index.json"
    run_and_kill_when(args, env, lambda: index.is_file() and len(json.loads(index.read_text())["shards"]) >= 2)
    before = json.loads(index.read_text())
    assert not before["complete"] and len(before["shards"]) >= 2
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-1500:]
    assert "resumed after input" in again.stdout
    after = json.loads(index.read_text())
    assert after["complete"] and after["shards"][: len(before["shards"])] == before["shards"]  # finished shards kept
    assert after["images"] == sum(1 for _ in synthetic_export.rglob("*.dcm"))
    assert not list(out.glob("*.tmp"))
    starts = [s["start"] for s in after["shards"]]
    ends = [s["end"] for s in after["shards"]]
    assert starts[1:] == ends[:-1]  # contiguous, no input twice


def test_other_inputs_are_refused(shards, tmp_path):
    out, _ = shards
    with pytest.raises(Exception, match="other inputs"):
        build_dataset_b(
            UnlabelledBuildConfig(sources=(BRAIN_MRI_SAMPLE,), out=out, image_size=48, key_secret_env=TEST_SECRET_ENV)
        )


def test_stretch_fills_the_square_and_pad_keeps_the_aspect(tmp_path):
    """A wide ROI-like crop: ``stretch`` fills every pixel (as ``lumbar train --roi`` resizes), ``pad`` adds black."""
    import numpy as np
    from PIL import Image

    source = tmp_path / "crops"
    source.mkdir()
    Image.fromarray(np.full((20, 40), 200, dtype=np.uint8)).save(source / "crop.png")
    images = {}
    for fit in ("pad", "stretch"):
        build_dataset_b(
            UnlabelledBuildConfig(
                sources=(source,), out=tmp_path / fit, image_size=16, fit=fit, key_secret_env=TEST_SECRET_ENV
            )
        )
        assert json.loads((tmp_path / fit / "index.json").read_text())["fit"] == fit
        (images[fit],) = [x.numpy()[..., 0] for x in read_shards(tmp_path / fit)]
    assert images["stretch"].min() == 200
    assert (images["pad"][:3] == 0).all() and (images["pad"][-3:] == 0).all() and images["pad"][8, 8] == 200
    with pytest.raises(Exception, match="another image size or fit"):
        build_dataset_b(UnlabelledBuildConfig(sources=(source,), out=tmp_path / "pad", image_size=16, fit="stretch"))
    with pytest.raises(Exception, match="unknown fit"):
        UnlabelledBuildConfig(sources=(source,), out=tmp_path / "x", fit="crop")
