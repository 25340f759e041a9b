"""Components called directly with real artifact objects, and the comparison tables they write."""

import itertools
import json
from pathlib import Path

import pytest
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components.compare import compare
from components.evaluate import evaluate
from components.train import train
from lumbar.errors import InputError
from lumbar.metrics import roc_points
from lumbar.steps.plan import PlannedConfig, plan_step


def _row(backbone, mode, roi, f1, run_id=""):
    """An evaluate step's Metrics metadata (both positive views; the tables read the paper's, normal)."""
    row = {"backbone": backbone, "mode": mode, "roi": roi, "weights_source": "imagenet", "run_id": run_id,
           "support": 91, "normal_positives": 55, "abnormal_positives": 36}  # fmt: skip
    for view in ("normal", "abnormal"):
        row.update({f"{view}_{m}": 0.85 for m in ("accuracy", "precision", "recall")}, **{f"{view}_f1": f1})
    return row


def _metrics(row, tmp_path, i):
    artifact = Metrics(name="metrics", uri=str(tmp_path / f"metrics-{i}"))
    artifact.metadata.update(row)
    return artifact


def test_compare_component_writes_paper_tables(tmp_path):
    """The component reads the evaluate steps' metadata; the tables themselves are tested in tests/test_compare.py."""
    rows = [
        _row("resnet50", "finetune", False, 0.7857, run_id="a3"),
        _row("resnet50", "finetune", True, 0.9107, run_id="a4"),
    ]
    table = Markdown(name="table", uri=str(tmp_path / "table.md"))
    compare.python_func(
        procedure="procedure1",
        metrics=[_metrics(r, tmp_path, i) for i, r in enumerate(rows)],
        table=table,
        data_origin="synthetic",
    )
    text = Path(table.path).read_text()
    assert "### Table 7: full image, fine-tuned (positive class normal, as in the paper; ours on synthetic" in text
    # Equation 8 on F1, the paper's ResNet50 pair of Table 10 (printed 16 %, 15.91 % recomputed)
    assert "| resnet50 | 78.57 (paper 78.57) | 91.07 (paper 91.07) | +15.91 % (paper +16 %) | 16 % / 15.91 % |" in text
    for run in ("a3", "a4"):
        assert f"MLflow run `{run}`" in text
    with pytest.raises(InputError, match="row 1 has no 'normal_accuracy'"):
        old = {"backbone": "vgg16", "mode": "frozen", "roi": True, "f1": 1.0}  # a row from before both views
        compare.python_func(procedure="procedure1", metrics=[_metrics(old, tmp_path, 9)], table=table)


def test_plan_is_the_cross_product_and_checks_names():
    items = plan_step(backbones="vgg16,mobilenetv2", modes="frozen,finetune", images="full,roi")
    assert len(items) == 8
    assert PlannedConfig(backbone="mobilenetv2", mode="finetune", roi=True) in items
    with pytest.raises(InputError, match="unknown backbone 'vgg17'"):
        plan_step(backbones="vgg16,vgg17", modes="frozen", images="full")
    with pytest.raises(InputError, match="images must be among full, roi"):
        plan_step(backbones="vgg16", modes="frozen", images="full,crop")


def test_roc_points_are_thinned_and_monotone():
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    s = rng.random(1000)
    fpr, tpr, thresholds = roc_points(y, s, limit=50)
    assert len(fpr) == len(tpr) == len(thresholds) <= 50
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(fpr))
    assert all(a >= b for a, b in itertools.pairwise(thresholds))


def test_evaluate_component_with_real_artifacts(built_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # not tracked: the component must work without MLflow
    model = Model(name="model", uri=str(tmp_path / "model"))
    data = Dataset(name="dataset", uri=str(built_dataset))
    config = {
        "backbone": "mobilenetv2",
        "mode": "frozen",
        "roi": True,
        "weights": "none",
        "epochs": 1,
        "image_size": 32,
    }
    train.python_func(dataset=data, model=model, **config)
    assert model.metadata["name"] == "mobilenetv2-frozen-roi" and model.metadata["run_id"] == ""
    assert model.metadata["weights_source"] == "none" and model.metadata["roi"] is True
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    views = {v: ClassificationMetrics(name=v, uri=str(tmp_path / v)) for v in ("abnormal", "normal")}
    files = Artifact(name="files", uri=str(tmp_path / "files"))
    evaluate.python_func(
        model=model,
        dataset=data,
        metrics=metrics,
        abnormal_positive=views["abnormal"],
        normal_positive=views["normal"],
        files=files,
        positive="normal",
    )
    written = json.loads((tmp_path / "files" / "metrics.json").read_text())
    assert written["positive"] == "normal"
    for key in ("accuracy", "precision", "recall", "f1"):
        assert metrics.metadata[key] == pytest.approx(written["metrics"][f"normal_{key}"])  # the chosen view
        for view in ("normal", "abnormal"):  # both views, in the metadata the compare step reads
            assert metrics.metadata[f"{view}_{key}"] == pytest.approx(written["metrics"][f"{view}_{key}"])
    assert metrics.metadata["name"] == "mobilenetv2-frozen-roi" and metrics.metadata["roi"] is True
    n = written["metrics"]["support"]
    assert metrics.metadata["support"] == n == len(written["predictions"])
    assert metrics.metadata["normal_positives"] + metrics.metadata["abnormal_positives"] == n
    for artifact in views.values():
        matrix = artifact.metadata["confusionMatrix"]
        assert [a["displayName"] for a in matrix["annotationSpecs"]] == ["normal", "abnormal"]
        assert [r["row"] for r in matrix["rows"]] == written["metrics"]["confusion"]["matrix"]
        roc = artifact.metadata["confidenceMetrics"]
        assert roc[0]["falsePositiveRate"] == 0.0 and roc[-1]["recall"] == 1.0
    # the normal view's ROC is the abnormal view's mirrored: every (fpr, tpr) point maps to (1 - tpr, 1 - fpr)
    abnormal, normal = (views[v].metadata["confidenceMetrics"] for v in ("abnormal", "normal"))
    points = {(round(p["falsePositiveRate"], 6), round(p["recall"], 6)) for p in abnormal}
    mirrored = {(round(1 - p["recall"], 6), round(1 - p["falsePositiveRate"], 6)) for p in normal}
    assert points == mirrored


@pytest.mark.integration
def test_build_dataset_c_component_from_an_s3_export(synthetic_export, bucket, tmp_path, monkeypatch):
    """The cluster path: the export is in the object store, the dataset is published back to it."""
    from components.build_dataset_c import build_dataset_c
    from lumbar.storage import open_store

    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LUMBAR_PSEUDONYM_SECRET", "component-Jd5rW8xN3qK7vT2m")
    open_store(f"s3://{bucket}/exports/site-a").put_tree(synthetic_export)
    monkeypatch.setenv("LUMBAR_STORE_URI", f"s3://{bucket}")  # what the cluster's config map sets

    dataset = Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    datacard = Markdown(name="datacard", uri=str(tmp_path / "datacard.md"))
    build_dataset_c.python_func(export_uri=f"s3://{bucket}/exports/site-a", dataset=dataset, datacard=datacard)

    assert dataset.metadata["patients"] == 8 and dataset.metadata["labelled_images"] > 0
    version = dataset.metadata["version"]
    assert dataset.metadata["published_uri"] == f"s3://{bucket}/datasets/dataset-c/{version}"
    assert open_store(dataset.metadata["published_uri"]).exists("manifest.csv")
    assert "Dataset C" in Path(datacard.path).read_text()
    with pytest.raises(InputError, match="is not a folder"):
        build_dataset_c.python_func(export_uri=str(tmp_path / "missing"), dataset=dataset, datacard=datacard)


def test_dataset_a_and_b_components_write_their_steps_counts(tmp_path, monkeypatch):
    """The procedure 2 and 3 data steps through their components: typed results flattened into the metadata."""
    import numpy as np
    from PIL import Image

    from components.build_dataset_a import build_dataset_a
    from components.build_dataset_b import build_dataset_b

    rng = np.random.default_rng(0)
    for label in ("yes", "no"):
        (tmp_path / "brain" / label).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (40, 40), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "brain" / label / f"{i}.png")
    labelled = Dataset(name="dataset", uri=str(tmp_path / "a"))
    build_dataset_a.python_func(sources=f"brain={tmp_path / 'brain'}", dataset=labelled)
    counts = {"files": 8, "used": 8, "duplicates": 0, "unmapped": 0, "quarantined": 0, "extension_mismatches": 0}
    assert labelled.metadata == counts
    with pytest.raises(InputError, match="must be NAME=URI"):
        build_dataset_a.python_func(sources=str(tmp_path / "brain"), dataset=labelled)
    monkeypatch.setenv("LUMBAR_PSEUDONYM_SECRET", "component-Jd5rW8xN3qK7vT2m")  # Dataset B's component requires it
    shards = Dataset(name="shards", uri=str(tmp_path / "b"))
    build_dataset_b.python_func(sources=str(tmp_path / "brain"), shards=shards, image_size=32)
    assert shards.metadata["images"] == shards.metadata["files"] == 8 and shards.metadata["shards"] >= 1
