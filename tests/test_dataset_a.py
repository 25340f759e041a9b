"""Dataset A from the real brain MRI sample in ../shared/data (110 tumour, 66 normal images)."""

import csv
import json
import os
import shutil
from collections import Counter

import pytest
from PIL import Image

from lumbar.dataset_a import ClassMapping, LabelledBuildConfig, build_dataset_a
from lumbar.errors import InputError

from .conftest import BRAIN_MRI_SAMPLE


@pytest.fixture(scope="module")
def sample_copy(tmp_path_factory):
    """The sample copied (never written in place) with a corrupt file, a truncated JPEG and a stray class."""
    root = tmp_path_factory.mktemp("sample") / "brain"
    shutil.copytree(BRAIN_MRI_SAMPLE, root)
    (root / "yes" / "broken scan.jpg").write_bytes(os.urandom(3000))
    jpeg = next(p for p in sorted((root / "yes").iterdir()) if p.suffix.lower() == ".jpg")
    (root / "no" / "cut short.jpg").write_bytes(jpeg.read_bytes()[:200])
    (root / "maybe").mkdir()
    shutil.copy(jpeg, root / "maybe" / "unsure.jpg")
    return root


@pytest.fixture(scope="module")
def dataset_a(sample_copy, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset-a") / "a"
    summary = build_dataset_a(
        LabelledBuildConfig(sources=(("brain", sample_copy),), out=out, mapping=ClassMapping.paper(), workers=2)
    )
    return out, summary


def test_counts_mapping_and_duplicates(dataset_a):
    out, summary = dataset_a
    report = json.loads((out / "report.json").read_text())
    statuses = Counter(f["status"] for f in report["files"])
    # 176 images + README + 3 added files; every one accounted for
    assert summary["files"] == len(report["files"]) == 180
    assert statuses == {"used": 162, "duplicate": 14, "unmapped": 2, "quarantined": 2}
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 162
    by_class = Counter((r["class_folder"], r["label"]) for r in rows)
    assert by_class == {("yes", "1"): 102, ("no", "0"): 60}  # 110 + 66 minus 14 exact duplicates
    assert len({r["sha256"] for r in rows}) == 162
    duplicate = next(f for f in report["files"] if f["status"] == "duplicate")
    assert duplicate["reason"].startswith("same pixels as brain/")
    unmapped = {f["original"]: f["reason"] for f in report["files"] if f["status"] == "unmapped"}
    assert "class folder 'maybe' is not in the mapping" in unmapped["brain/maybe/unsure.jpg"]
    assert "outside any class folder" in unmapped["brain/README.md"]
    card = (out / "datacard.md").read_text()
    assert "exact duplicates removed: 14" in card and "brain/maybe" in card


def test_real_world_files(dataset_a):
    out, summary = dataset_a
    report = json.loads((out / "report.json").read_text())
    files = {f["original"]: f for f in report["files"]}
    assert summary["extension_mismatches"] == 3  # PNG data behind .jpg, among others
    assert {"RGB", "L", "RGBA", "P"} <= set(summary["modes"])
    assert files["brain/no/1 no.jpeg"]["status"] in ("used", "duplicate")  # a name with a space
    for name in ("brain/yes/broken scan.jpg", "brain/no/cut short.jpg"):
        assert files[name]["status"] == "quarantined" and "not a readable image" in files[name]["reason"]
    for row in csv.DictReader((out / "manifest.csv").open()):
        image = Image.open(out / row["image_path"])
        assert image.mode == "L" and max(image.size) <= 512
        assert (image.width, image.height) == (int(row["width"]), int(row["height"]))


def test_split_is_stratified_85_15(dataset_a):
    out, _ = dataset_a
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    splits = Counter(r["split"] for r in rows)
    assert splits["train"] == round(0.85 * 162) and splits["val"] == 162 - splits["train"]
    rate = {s: sum(r["label"] == "1" for r in rows if r["split"] == s) / splits[s] for s in splits}
    assert abs(rate["train"] - rate["val"]) < 0.05


def test_16_bit_and_per_source_mapping(tmp_path):
    import numpy as np

    src = tmp_path / "src"
    (src / "glioma").mkdir(parents=True)
    (src / "notumor").mkdir()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).save(src / "glioma" / "a.png")
    assert Image.open(src / "glioma" / "a.png").mode.startswith("I")  # a 16-bit PNG
    Image.new("L", (40, 40), 30).save(src / "notumor" / "b.png")
    mapping = ClassMapping.from_dict({"sources": {"kaggle": {"normal": ["notumor"], "abnormal": ["glioma"]}}})
    build_dataset_a(LabelledBuildConfig(sources=(("kaggle", src),), out=tmp_path / "a", mapping=mapping))
    rows = {r["class_folder"]: r for r in csv.DictReader((tmp_path / "a" / "manifest.csv").open())}
    assert rows["glioma"]["label"] == "1" and rows["notumor"]["label"] == "0"
    grey = np.asarray(Image.open(tmp_path / "a" / rows["glioma"]["image_path"]))
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255


def test_bad_mapping_and_sources(tmp_path):
    with pytest.raises(InputError, match="both normal and abnormal"):
        ClassMapping.from_dict({"default": {"normal": ["no"], "abnormal": ["No"]}})
    with pytest.raises(InputError, match="unknown key"):
        ClassMapping.from_dict({"classes": {}})
    with pytest.raises(InputError, match="does not exist"):
        LabelledBuildConfig(sources=(("x", tmp_path / "missing"),), out=tmp_path / "o", mapping=ClassMapping.paper())
    (tmp_path / "empty" / "no").mkdir(parents=True)
    with pytest.raises(InputError, match="no readable image"):
        build_dataset_a(
            LabelledBuildConfig(sources=(("x", tmp_path / "empty"),), out=tmp_path / "o", mapping=ClassMapping.paper())
        )
