"""SPIDER's real lumbar MRI imported into Dataset C's format: one test per trap its README lists.

The shared sample (../shared/data/spider-lumbar, CC BY 4.0: van der Graaf et al., Sci Data 2024) is
imported once per module (T2 and T2 SPACE, about 10 s); the hostile cases are tiny folders the tests
write.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.deid import PUBLIC_DATA_SECRET, Pseudonymizer
from lumbar.errors import InputError
from lumbar.spider import (
    SpiderConfig,
    binary,
    disc_state,
    find_rectangles,
    full_window,
    grey,
    import_spider,
    level,
    red_mask,
    without_lines,
)

SPIDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "spider-lumbar"
LUMBAR = str(Path(sys.executable).with_name("lumbar"))
pytestmark = pytest.mark.skipif(not SPIDER.is_dir(), reason="needs ../shared/data/spider-lumbar")


def _pseudonym(patient: str) -> str:
    return Pseudonymizer(PUBLIC_DATA_SECRET.encode()).pseudonym(patient)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("spider") / "dataset"
    result = import_spider(SpiderConfig(source=SPIDER, out=out, sequences=("t2", "t2_space")))
    report = json.loads((out / "report.json").read_text())
    with (out / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return result, report, rows


def test_every_input_file_is_accounted_for(imported):
    result, report, rows = imported
    files = sorted(str(p.relative_to(SPIDER)) for p in SPIDER.rglob("*") if p.is_file())
    assert [f["file"] for f in report["files"]] == files
    assert {f["fate"] for f in report["files"]} <= {"used", "not_needed", "quarantined"}
    assert all(f["reason"] and "bug" not in f["reason"] for f in report["files"])
    assert sum(result.files.values()) == len(files) == report["summary"]["files"]
    # every image the manifest names exists, and every labelled disc has both images
    out = result.out
    assert rows and all((out / r["image_path"]).is_file() and (out / r["roi_path"]).is_file() for r in rows)
    assert len(rows) == result.images and len(result.version) == 16


def test_slices_taken_across_the_stack_are_quarantined(imported):
    _, report, _ = imported
    fates = {f["file"]: f for f in report["files"]}
    thin = [f for name, f in fates.items() if name.startswith("slices/") and f["fate"] == "quarantined"]
    assert len(thin) == 42  # the README's count: 17, 19 or 21 px tall
    assert all("not a sagittal image" in f["reason"] for f in thin)
    assert {f["reason"].split(" ")[0].split("x")[0] for f in thin} == {"17", "19", "21"}


def test_ivd_label_zero_rows_are_left_out_with_a_reason(imported):
    _, report, _ = imported
    left_out = report["gradings"]["left_out"]
    assert len(left_out) == 2 and all(r["reason"] == "IVD label 0 names no disc" for r in left_out)
    assert all(r["patient"].startswith("S") for r in left_out)  # pseudonyms, even of public ids


def test_disc_numbering_runs_from_the_bottom(imported):
    """Patient 95's only degenerated disc is IVD label 1 (Pfirrmann 3, Modic 2): its lowest disc, L5-S1."""
    _, _, rows = imported
    discs = {r["disc"]: r for r in rows if r["patient"] == _pseudonym("95") and r["sequence"] == "t2"}
    assert discs["L51"]["pfirrmann"] == "3" and discs["L51"]["modic"] == "2"
    others = [r for code, r in discs.items() if code != "L51"]
    assert others and all(int(r["pfirrmann"]) < 3 for r in others)


def test_rectangles_match_the_crops_of_the_boxed_rendering_top_to_bottom(imported):
    """The rectangles found equal the sample's own crops (disc_1 the top one), and the ROI has no red."""
    result, _, rows = imported
    for patient in ("95", "104"):
        rgb = np.asarray(Image.open(SPIDER / "boxed" / f"{patient}_t2.png").convert("RGB"))
        rectangles = find_rectangles(rgb)
        crops = sorted((SPIDER / "discs").glob(f"{patient}_t2_disc_*.png"), key=lambda p: int(p.stem.split("_")[-1]))
        assert len(crops) == len(rectangles)
        for rect, crop in zip(rectangles, crops, strict=True):
            top, bottom, left, right = rect.outer
            width, height = Image.open(crop).size
            assert abs((right - left) - width) <= 2 and abs((bottom - top) - height) <= 2, crop.name
        # the ROI files are the insides of those rectangles: grey, and no drawn pixel in them
        top = next(r for r in rows if r["patient"] == _pseudonym(patient) and r["sequence"] == "t2")
        roi = np.asarray(Image.open(result.out / top["roi_path"]))
        assert roi.ndim == 2 and roi.shape[0] >= 8


def test_no_drawn_line_is_left_in_the_full_images():
    """Under the drawn lines' mask no output pixel keeps the drawing: the pixels follow the MRI around them."""
    rgb = np.asarray(Image.open(SPIDER / "boxed" / "104_t2.png").convert("RGB"))
    kept, off_filled, off_drawn = 0, [], []
    for rect in find_rectangles(rgb):
        box = full_window(rect, rgb.shape[:2])
        filled, mask = without_lines(rgb, box)
        window = rgb[box[0] : box[1], box[2] : box[3]]
        drawing, tissue_grey = grey(window), grey(window)
        assert filled.ndim == 2 and mask.any()
        assert not red_mask(np.stack([filled] * 3, axis=-1)).any()  # no colour: one grey channel
        # each masked pixel against the median of the unmasked MRI around it (9 x 9)
        for y, x in zip(*np.nonzero(mask), strict=True):
            y0, y1, x0, x1 = max(0, y - 4), y + 5, max(0, x - 4), x + 5
            around = tissue_grey[y0:y1, x0:x1][~mask[y0:y1, x0:x1]]
            if around.size < 10:
                continue
            tissue = float(np.median(around))
            if abs(float(drawing[y, x]) - tissue) > 40:  # where the drawing stands out from the MRI
                kept += abs(int(filled[y, x]) - int(drawing[y, x])) <= 2
                off_filled.append(abs(float(filled[y, x]) - tissue))
                off_drawn.append(abs(float(drawing[y, x]) - tissue))
    assert len(off_drawn) > 500
    assert kept <= 0.02 * len(off_drawn)  # (almost) no pixel keeps the drawing's brightness (0.7% here)
    assert np.mean(off_filled) < 0.4 * np.mean(off_drawn)  # they follow the tissue instead


def test_unlabelled_slices_are_a_pretraining_source_without_held_out_patients(imported, tmp_path):
    """The clean slices feed self-supervised pretraining (Dataset B), never a validation or test patient's."""
    from lumbar.dataset_b import UnlabelledBuildConfig, build_dataset_b

    result, report, rows = imported
    pool = sorted((result.out / "unlabelled").glob("*.png"))
    held_out = {r["patient"] for r in rows if r["split"] in ("val", "test")}
    assert pool and held_out
    assert not {p.name.split("_")[0] for p in pool} & held_out
    assert len(pool) == report["summary"]["unlabelled_slices"]
    kept_out = [f for f in report["files"] if f["reason"].startswith("a validation or test patient's slice")]
    assert kept_out  # some held-out patients do have clean slices: they were kept out, and said so
    shards = build_dataset_b(
        UnlabelledBuildConfig(sources=(result.out / "unlabelled",), out=tmp_path / "b", image_size=32)
    )
    assert shards.images == len(pool)


def test_series_whose_rectangles_and_gradings_disagree_are_quarantined(imported):
    _, report, rows = imported
    quarantined = [s for s in report["series"] if "quarantined" in s]
    mismatched = [s for s in quarantined if "graded discs" in s["quarantined"]]
    assert mismatched and all("would be a guess" in s["quarantined"] for s in mismatched)
    imported_series = {(r["patient"], r["sequence"]) for r in rows}
    assert not {(s["patient"], s["sequence"]) for s in mismatched} & imported_series


def test_a_disc_seen_in_two_sequences_stays_on_one_side_and_counts_once(imported):
    result, _, rows = imported
    both = {r["patient"] for r in rows if r["sequence"] == "t2"} & {
        r["patient"] for r in rows if r["sequence"] == "t2_space"
    }
    assert len(both) >= 5
    for patient in both:
        assert len({r["split"] for r in rows if r["patient"] == patient}) == 1
    card = (result.out / "datacard.md").read_text()
    table = card.split("## Disc state per level")[1].split("##")[0]
    total = sum(
        int(line.rsplit("|", 2)[1]) for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()
    )
    assert total == len({(r["patient"], r["disc"]) for r in rows})  # not the number of images
    assert "van der Graaf" in card and "CC BY 4.0" in card  # the credit, first thing


def test_labels_follow_the_declared_mapping(imported):
    _, _, rows = imported
    for row in rows:
        grades = {k: int(row[k]) for k in ("pfirrmann", "bulging", "spider_herniation")}
        assert int(row["disc_state"]) == disc_state(grades) and int(row["label"]) == binary(grades)
    assert {int(r["disc_state"]) for r in rows} == {0, 1, 2, 3}
    assert disc_state({"spider_herniation": 1, "bulging": 1, "pfirrmann": 5}) == 3  # herniation first
    assert disc_state({"spider_herniation": 0, "bulging": 1, "pfirrmann": 4}) == 2  # then bulging
    assert disc_state({"spider_herniation": 0, "bulging": 0, "pfirrmann": 3}) == 1  # then degeneration
    assert disc_state({"spider_herniation": 0, "bulging": 0, "pfirrmann": 2}) == 0


def test_levels_are_named_as_the_paper_names_them():
    assert [level(i) for i in (1, 2, 5, 6, 7)] == [
        ("L51", "L5-S1"),
        ("L45", "L4-L5"),
        ("L12", "L1-L2"),
        ("T12L1", "T12-L1"),
        ("T1112", "T11-T12"),
    ]
    with pytest.raises(InputError, match="IVD label 0 names no disc"):
        level(0)


def _tiny_spider(root: Path, boxed: dict[str, np.ndarray], gradings: list[tuple]) -> Path:
    (root / "boxed").mkdir(parents=True)
    for name, pixels in boxed.items():
        Image.fromarray(pixels).save(root / "boxed" / name)
    header = "Patient,IVD label,Modic,UP endplate,LOW endplate,Spondylolisthesis,Disc herniation,Disc narrowing,"
    lines = [header + "Disc bulging,Pfirrman grade"] + [",".join(map(str, g)) for g in gradings]
    (root / "radiological_gradings.csv").write_text("\n".join(lines) + "\n")
    return root


def _boxed(rects: list[tuple[int, int, int, int]], size: int = 160) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.repeat(rng.integers(60, 200, (size, size, 1), dtype=np.uint8), 3, axis=2)
    for top, bottom, left, right in rects:
        for y0, y1, x0, x1 in ((top, top + 3, left, right), (bottom - 3, bottom, left, right)):
            image[y0:y1, x0:x1] = (230, 20, 20)
        for y0, y1, x0, x1 in ((top, bottom, left, left + 3), (top, bottom, right - 3, right)):
            image[y0:y1, x0:x1] = (230, 20, 20)
    return image


def test_overlapping_rectangles_unreadable_files_and_grey_renderings_are_quarantined(tmp_path):
    grades = [(p, ivd, 0, 0, 0, 0, 0, 0, 0, 2) for p in (1, 2, 3, 4) for ivd in (1, 2)]
    source = _tiny_spider(
        tmp_path / "spider",
        {
            "1_t2.png": _boxed([(20, 60, 40, 120), (90, 130, 40, 120)]),  # two apart: imported
            "2_t2.png": _boxed([(20, 70, 40, 120), (60, 110, 40, 120)]),  # overlapping
            "3_t2.png": np.full((160, 160), 90, dtype=np.uint8),  # grey: nothing drawn
        },
        grades,
    )
    (source / "boxed" / "4_t2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = import_spider(SpiderConfig(source=source, out=tmp_path / "out", fractions=(1.0, 0.0, 0.0)))
    fates = {f["file"]: f for f in json.loads((result.out / "report.json").read_text())["files"]}
    assert fates["boxed/1_t2.png"]["fate"] == "used" and result.labelled_images == 2
    assert "not one hollow rectangle" in fates["boxed/2_t2.png"]["reason"]
    assert fates["boxed/3_t2.png"]["reason"] == "a grey image: no rectangle can be drawn in it"
    assert fates["boxed/4_t2.png"]["reason"].startswith("not a readable PNG")


def test_the_command_imports_and_credits_and_refuses_bad_sequences(tmp_path):
    source = _tiny_spider(
        tmp_path / "spider",
        {"1_t2.png": _boxed([(20, 60, 40, 120), (90, 130, 40, 120)])},
        [(1, 1, 0, 0, 0, 0, 1, 0, 0, 4), (1, 2, 0, 0, 0, 0, 0, 0, 0, 1)],
    )
    done = subprocess.run(
        [LUMBAR, "dataset", "import", "spider", "--source", str(source), "--out", str(tmp_path / "out"),
         "--fractions", "1,0,0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 patients, 2 disc images (2 labelled)" in done.stdout and "van der Graaf" in done.stdout
    bad = subprocess.run(
        [LUMBAR, "dataset", "import", "spider", "--source", str(source), "--out", str(tmp_path / "o2"),
         "--sequences", "t3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error: --sequences takes some of t1, t2, t2_space")
    assert "Traceback" not in bad.stderr
    shutil.rmtree(tmp_path / "out")


def test_real_discs_train_and_evaluate_on_pfirrmann_grades(imported, tmp_path, monkeypatch):
    """A tiny Pfirrmann model trained by the pipelines' train component on real discs, tracked in MLflow:
    evaluated on every labelled disc (an external test set) and on the test split, whose numbers the results
    report shows with their intervals beside the published references."""
    from kfp.dsl import Dataset, Model

    from components.train import train
    from lumbar.evaluate import evaluate_model
    from lumbar.report import ReportConfig, build_report
    from lumbar.steps.evaluate import evaluate_step

    result, _, rows = imported
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LUMBAR_KFP_RUN_ID", "kfp-pfirrmann")
    model = tmp_path / "model"
    train.python_func(
        dataset=Dataset(name="dataset", uri=str(result.out)), model=Model(name="model", uri=str(model)),
        backbone="mobilenetv2", mode="frozen", roi=True, weights="none", target="pfirrmann", epochs=1,
        image_size=32, batch_size=32,
    )  # fmt: skip
    evaluation = evaluate_model(model, result.out, "all", tmp_path / "eval", track=False)
    metrics = evaluation.metrics
    assert metrics["support"] == sum(1 for r in rows if r["label"] != "")  # every split: an external test set
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0 and -1.0 <= metrics["kappa_linear"] <= 1.0
    assert len(metrics["confusion"]["matrix"]) == 5 and metrics["confusion"]["classes"][0] == "grade 1"
    low, high = metrics["ordinal_intervals"]["kappa_linear"]
    assert low <= high and high - low > 0.0  # resampled by patient: a real spread
    # the binary view: Pfirrmann 3 or more is abnormal
    assert sum(evaluation.y_true) == sum(1 for r in rows if int(r["pfirrmann"]) >= 3)
    # the command prints the agreement with its intervals, beside the published references
    shown = subprocess.run(
        [LUMBAR, "evaluate", "--model", str(model), "--dataset", str(result.out), "--split", "all",
         "--no-track", "--out", str(tmp_path / "eval-cli")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"linearly weighted kappa {metrics['kappa_linear']:.2f} ({low:.2f}-{high:.2f})" in shown.stdout
    assert "McSweeney et al., Spine 2023" in shown.stdout and "Niemeyer et al." in shown.stdout
    # the results report: the test split's agreement, generated from that evaluation, and the references
    tested = evaluate_step(
        model=model, dataset=result.out, out=tmp_path / "eval-test", split="test", positive="abnormal"
    )
    written = json.loads((tmp_path / "eval-test" / "metrics.json").read_text())["metrics"]
    assert tested.metrics["kappa_linear"] == pytest.approx(written["kappa_linear"])
    report = build_report(
        ReportConfig(out=tmp_path / "report", dataset=str(result.out), data_origin="real", gradcam_images=1)
    )
    text = report.markdown.read_text()
    section = text[text.index("## Pfirrmann grades") :]
    k_low, k_high = written["ordinal_intervals"]["kappa_linear"]
    assert f"| {written['kappa_linear']:.2f} ({k_low:.2f}-{k_high:.2f}) |" in section
    assert f"| {100 * written['balanced_accuracy']:.1f} (" in section
    assert "McSweeney et al., Spine 2023" in section and "Niemeyer et al." in section
    assert "**Target:** pfirrmann; the paper's tables read each model's binary view" in text


def test_one_feature_baselines_are_fitted_on_training_patients(imported):
    """The disc's level and its brightness, each fitted on the training split, scored on the test split."""
    from lumbar.baselines import evaluate_baselines, fit

    result, _, rows = imported
    level_rule, brightness_rule = evaluate_baselines(result.out)
    assert level_rule.sign == 1  # lower discs are abnormal more often
    assert brightness_rule.sign == -1  # degenerated discs lose T2 signal
    test = [r for r in rows if r["split"] == "test"]
    for rule in (level_rule, brightness_rule):
        assert rule.support == len(test) and rule.auc is not None
        assert rule.auc_interval[0] <= rule.auc <= rule.auc_interval[1]
        assert rule.f1_interval[0] <= rule.f1 <= rule.f1_interval[1]
    # the rule's direction and threshold come from the data it is given: reversed labels reverse it
    feature = np.asarray([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert fit(feature, np.asarray([0, 0, 0, 1, 1, 1]))[0] == 1
    assert fit(feature, np.asarray([1, 1, 1, 0, 0, 0]))[0] == -1


# --- SPIDER's original layout (volumes and masks), on small volumes the tests write ---------------


def _volume(stack_along: int, label_one_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 9-slice sagittal stack with five discs (IVD labels 1-5) in its middle slices, each its own grey."""
    volume = np.full((9, 120, 120), 300, dtype=np.int16)
    mask = np.zeros_like(volume, dtype=np.uint8)
    for k, ivd in enumerate(range(1, 6) if label_one_first else range(5, 0, -1)):
        start = 10 + 22 * k
        box = (slice(3, 6), slice(start, start + 8), slice(40, 80))
        if stack_along == 2:  # the discs stack along the columns: the volume lies on its side
            box = (box[0], box[2], box[1])
        volume[box] = 500 + 100 * ivd
        mask[box] = 200 + ivd
    return volume, mask


def _write_original(root: Path, volumes: dict[str, tuple[np.ndarray, np.ndarray | None]], gradings: list[tuple]):
    import SimpleITK

    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, (volume, mask) in volumes.items():
        SimpleITK.WriteImage(SimpleITK.GetImageFromArray(volume), str(root / "images" / name))
        if mask is not None:
            SimpleITK.WriteImage(SimpleITK.GetImageFromArray(mask), str(root / "masks" / name))
    return _tiny_spider(root, {}, gradings)


def test_the_original_layout_reads_volumes_and_masks(tmp_path):
    from lumbar.spider import mid_sagittal

    grades = [(p, ivd, 0, 0, 0, 0, 0, 0, 0, 1 + ivd % 5) for p in (1, 2, 3, 4) for ivd in range(1, 6)]
    upright, sideways = _volume(1, label_one_first=False), _volume(2, label_one_first=True)
    short_mask = (upright[0], upright[1][:, :60])
    source = _write_original(
        tmp_path / "spider",
        {"1_t2.mha": upright, "2_t2.mha": sideways, "3_t2.mha": (upright[0], None), "4_t2.mha": short_mask},
        grades,
    )
    (source / "boxed").rmdir()
    for folder in ("images", "masks"):
        (source / folder / "5_t2.mha").write_bytes(b"ObjectType = Image\nNDims = 3\nbroken")
    result = import_spider(SpiderConfig(source=source, out=tmp_path / "out", fractions=(1.0, 0.0, 0.0)))
    report = json.loads((result.out / "report.json").read_text())
    fates = {f["file"]: f for f in report["files"]}
    assert report["source"].startswith("SPIDER (original layout")
    assert fates["images/1_t2.mha"]["fate"] == fates["images/2_t2.mha"]["fate"] == "used"
    assert fates["masks/1_t2.mha"]["reason"] == "the disc positions of images/1_t2.mha"
    assert fates["images/3_t2.mha"]["reason"] == "no mask masks/3_t2.mha: the discs cannot be located"
    assert "differ in shape" in fates["images/4_t2.mha"]["reason"]
    assert fates["images/5_t2.mha"]["reason"].startswith("not a readable MetaImage")
    assert result.labelled_images == 10
    with (result.out / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # the labels come from the mask's values: each disc's ROI has its own grey, brighter with its IVD label
    for patient in ("1", "2"):
        mine = {r["disc"]: r for r in rows if r["patient"] == _pseudonym(patient)}
        assert mine["L51"]["pfirrmann"] == "2" and mine["L12"]["pfirrmann"] == "1"
        means = [np.asarray(Image.open(result.out / mine[code]["roi_path"])).mean() for code in ("L51", "L45", "L34")]
        assert means[0] < means[1] < means[2]
    # whatever way the volume lies, the slice comes back upright with L5-S1 at the bottom
    for volume, mask in (upright, sideways):
        image, labels = mid_sagittal(volume, mask)
        rows_of = {ivd: np.argwhere(labels == 200 + ivd)[:, 0].mean() for ivd in (1, 5)}
        assert rows_of[1] > rows_of[5] and image.dtype == np.uint8


def test_the_real_data_demo_is_checked_before_it_runs(tmp_path):
    """`lumbar demo --data spider` finds the shared sample; a wrong --data or folder is one sentence."""
    from launch.demo_runner import DemoConfig, shared_spider

    assert shared_spider() == SPIDER.resolve() or shared_spider().samefile(SPIDER)
    real = DemoConfig(out=tmp_path / "d", data="spider")
    # the real-data demo's own sizes: VGG16 only for procedures 2 and 3, 8 supervised pretraining epochs
    assert (real.setting("pretrain_backbones"), real.setting("supervised_epochs")) == ("vgg16", 8)
    assert DemoConfig(out=tmp_path / "d").setting("supervised_epochs") == 2  # the synthetic demo's
    assert DemoConfig(out=tmp_path / "d", data="spider", supervised_epochs=3).setting("supervised_epochs") == 3
    with pytest.raises(InputError, match="--ssl-epochs must be at least 1"):
        DemoConfig(out=tmp_path / "d", ssl_epochs=0)
    with pytest.raises(InputError, match="--data must be one of synthetic, spider"):
        DemoConfig(out=tmp_path / "d", data="mri")
    bad = subprocess.run(
        [LUMBAR, "demo", "--data", "spider", "--spider", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "SPIDER folder" in bad.stderr and "nowhere" in bad.stderr


@pytest.mark.slow
def test_full_real_data_demo(tmp_path):
    """What `make demo-real` runs (under 20 minutes on two cores, at most 100 lines): the report credits SPIDER
    on its first screen and says of each procedure's configuration chosen on the validation patients whether
    it beats both one-feature baselines and the majority class, and each of those words agrees with its
    numbers."""
    proc = subprocess.run(
        [LUMBAR, "demo", "--data", "spider", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "LUMBAR_DATA_DIR": str(tmp_path / "data")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.splitlines()) + len(proc.stderr.splitlines()) <= 100, proc.stdout + proc.stderr
    summary = (tmp_path / "demo" / "report" / "report.md").read_text()
    first_screen = summary[: summary.index("## What the images add")]
    assert "SPIDER" in first_screen and "van der Graaf" in first_screen and "CC BY 4.0" in first_screen
    sentences = [line for line in summary.splitlines() if line.startswith("- procedure")]
    assert [s.split(":")[0] for s in sentences] == ["- procedure1", "- procedure2", "- procedure3"]
    for sentence in sentences:
        assert "chosen on the validation patients" in sentence, sentence
        auc = float(re.search(r"with ROC-AUC (\d\.\d\d)", sentence).group(1))
        for word, baseline in re.findall(r"(above|not above) the (?:level|brightness) baseline's (\d\.\d\d)", sentence):
            if auc != float(baseline):  # equal when rounded: either word can be right
                assert word == ("above" if auc > float(baseline) else "not above"), sentence
        f1, word, majority = re.search(
            r"F1 (\d\.\d\d) is (above|not above) the majority-class F1 (\d\.\d\d)", sentence
        ).groups()
        if f1 != majority:
            assert word == ("above" if float(f1) > float(majority) else "not above"), sentence
