"""Components called directly with real artifact objects, and the comparison tables they write."""

import itertools
import json
from pathlib import Path

import pytest
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components.compare import compare
from components.evaluate import evaluate
from lumbar.compare import compare_markdown
from lumbar.errors import InputError
from lumbar.steps import plan_step, roc_points, train_step


def _row(backbone, mode, roi, accuracy, f1=0.5, source="imagenet", run_id=""):
    return {
        "backbone": backbone,
        "mode": mode,
        "roi": roi,
        "weights_source": source,
        "accuracy": accuracy,
        "precision": 0.5,
        "recall": 0.5,
        "f1": f1,
        "run_id": run_id,
    }


def _metrics(row, tmp_path, i):
    artifact = Metrics(name="metrics", uri=str(tmp_path / f"metrics-{i}"))
    artifact.metadata.update(row)
    return artifact


def test_compare_component_writes_paper_tables(tmp_path):
    rows = [
        _row("vgg16", "frozen", False, 0.50, f1=0.4, run_id="a1"),
        _row("vgg16", "frozen", True, 0.60, f1=0.7, run_id="a2"),
        _row("resnet50", "finetune", False, 0.7857, run_id="a3"),
        _row("resnet50", "finetune", True, 0.9107, run_id="a4"),
    ]
    table = Markdown(name="table", uri=str(tmp_path / "table.md"))
    compare.python_func(
        procedure="procedure1", metrics=[_metrics(r, tmp_path, i) for i, r in enumerate(rows)], table=table
    )
    text = Path(table.path).read_text()
    assert "### Full image, frozen backbone" in text and "### ROI, fine-tuned" in text
    assert "| vgg16 | frozen | 50.00 | 60.00 | +20.00 % |" in text  # Equation 8: (60 - 50) / 50
    assert "| resnet50 | finetune | 78.57 | 91.07 | +15.91 % |" in text  # the paper's ResNet50 row, about 16 %
    assert "Best F1: **70.00** (vgg16, frozen, ROI)" in text
    for run in ("a1", "a2", "a3", "a4"):
        assert f"MLflow run `{run}`" in text


def test_pretraining_table_against_procedure1():
    ours = [
        _row("vgg16", "frozen", True, 0.75, source="supervised"),
        _row("vgg19", "frozen", True, 0.8, source="supervised"),
    ]
    imagenet = [_row("vgg16", "frozen", True, 0.60)]
    text = compare_markdown("procedure2", ours, imagenet)
    assert "Pretrained on Dataset A (supervised, from scratch)" in text
    assert "| vgg16 | frozen | ROI | 75.00 | 50.00 | 50.00 | 50.00 | 60.00 | 50.00 | +25.00 % |" in text
    assert "| vgg19 | frozen | ROI | 80.00 | 50.00 | 50.00 | 50.00 | – | – | – |" in text
    alone = compare_markdown("procedure3", ours)
    assert "No procedure 1 runs were given" in alone


def test_compare_rejects_rows_without_metrics():
    with pytest.raises(InputError, match="row 2 has no 'f1'"):
        compare_markdown(
            "procedure1",
            [
                _row("vgg16", "frozen", False, 0.5),
                {"backbone": "vgg16", "mode": "frozen", "roi": 1, "accuracy": 1, "precision": 1, "recall": 1},
            ],
        )
    with pytest.raises(InputError, match="no evaluated runs"):
        compare_markdown("procedure1", [])


def test_plan_is_the_cross_product_and_checks_names():
    from lumbar.compare import BACKBONE_ORDER, MODE_NAMES
    from lumbar.models import BACKBONES, MODES

    assert tuple(BACKBONES) == BACKBONE_ORDER and tuple(MODE_NAMES) == tuple(MODES)
    items = plan_step("vgg16,mobilenetv2")
    assert len(items) == 8
    assert {"backbone": "mobilenetv2", "mode": "finetune", "roi": True} in items
    with pytest.raises(InputError, match="unknown backbone 'vgg17'"):
        plan_step("vgg16,vgg17")
    with pytest.raises(InputError, match="images must be among"):
        plan_step("vgg16", images="full,crop")


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
    model_dir = tmp_path / "model"
    info = train_step(built_dataset, model_dir, "mobilenetv2", "frozen", True, weights="none", epochs=1, image_size=32)
    assert info["name"] == "mobilenetv2-frozen-roi" and info["run_id"] == ""

    model = Model(name="model", uri=str(model_dir))
    model.metadata.update(info)
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    classification = ClassificationMetrics(name="classification", uri=str(tmp_path / "classification"))
    files = Artifact(name="files", uri=str(tmp_path / "files"))
    evaluate.python_func(
        model=model,
        dataset=Dataset(name="dataset", uri=str(built_dataset)),
        metrics=metrics,
        classification=classification,
        files=files,
    )
    written = json.loads((tmp_path / "files" / "metrics.json").read_text())["metrics"]
    for key in ("accuracy", "precision", "recall", "f1"):
        assert metrics.metadata[key] == pytest.approx(written[key])
    assert metrics.metadata["name"] == "mobilenetv2-frozen-roi" and metrics.metadata["roi"] is True
    matrix = classification.metadata["confusionMatrix"]
    assert [a["displayName"] for a in matrix["annotationSpecs"]] == ["normal", "abnormal"]
    assert sum(sum(r["row"]) for r in matrix["rows"]) == written["support"]
    roc = classification.metadata["confidenceMetrics"]
    assert roc[0]["falsePositiveRate"] == 0.0 and roc[-1]["recall"] == 1.0


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
