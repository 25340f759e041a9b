"""Real kfp.local runs of the pipelines on small synthetic data and on the real brain MRI sample."""

import json
import re
from pathlib import Path

import pytest

from launch.launcher import run_local

TINY = {"weights": "none", "epochs": 1, "image_size": 32}


def _outputs(task_dir: Path) -> dict:
    """Output artifacts of one task of a local run, by name: (uri, metadata)."""
    data = json.loads((task_dir / "executor_output.json").read_text())
    return {name: spec["artifacts"][0] for name, spec in data.get("artifacts", {}).items()}


def _mlflow_runs(tracking_uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return client.search_runs([found.experiment_id])


@pytest.fixture
def pipeline_env(local_tracking, monkeypatch, tmp_path):
    monkeypatch.setenv("LUMBAR_PSEUDONYM_SECRET", "pipeline-Vb6nT2qW8kZr4Ym9")
    return {"tracking": local_tracking, "store": (tmp_path / "store").as_uri(), "root": tmp_path / "root"}


def check_procedure1(run_folder: Path, tracking_uri: str, backbones: tuple[str, ...], modes: tuple[str, ...]) -> None:
    """Procedure 1's tasks in a finished run: a trained model and an evaluation per configuration, the compare
    table holding the evaluations' numbers in the paper's Tables 6-9, Grad-CAM of the best configuration, and
    one MLflow run per configuration tagged with the Kubeflow run id.

    Procedure 1's tasks carry the unsuffixed names (``train``, ``evaluate``, ``compare``, ``gradcam``) both in
    its own pipeline and in ``paper``, where its tasks are added first.
    """
    iterations = sorted(f for f in run_folder.glob("for-loop-*-iteration-*") if (f / "train").is_dir())
    assert len(iterations) == len(backbones) * len(modes) * 2  # x {full, ROI}
    rows = []
    for folder in iterations:
        model = _outputs(folder / "train")["model"]
        assert (Path(model["uri"]) / "model.keras").is_file()
        rows.append(_outputs(folder / "evaluate")["metrics"]["metadata"])
    assert {r["name"] for r in rows} == {f"{b}-{m}-{i}" for b in backbones for m in modes for i in ("full", "roi")}

    # the compare table: one line per configuration, numbers equal to the evaluate steps' metrics
    table = Path(_outputs(run_folder / "compare")["table"]["uri"]).read_text()
    assert len(re.findall(r"^- `", table, flags=re.M)) == len(rows)
    # (the paper's Tables 6-9, in its positive class: normal)
    for row in rows:
        number = {(False, "frozen"): 6, (False, "finetune"): 7, (True, "frozen"): 8, (True, "finetune"): 9}
        section = table.split(f"### Table {number[(row['roi'], row['mode'])]}:")[1].split("###")[0]
        line = next(x for x in section.splitlines() if x.startswith(f"| {row['backbone']} |"))
        cells = [c.strip() for c in line.strip("| ").split(" | ")]
        assert cells[1].startswith(f"{int(row['support'])} / {int(row['normal_positives'])} (paper ")
        for k, cell in zip(("accuracy", "precision", "recall", "f1"), cells[2:6], strict=True):
            assert cell.startswith(f"{100 * row[f'normal_{k}']:.2f}"), (k, cell)

    # Grad-CAM of the best configuration, as one self-contained page
    page = _outputs(run_folder / "gradcam")["page"]
    best = max(rows, key=lambda r: r["f1"])
    assert page["metadata"]["f1"] == pytest.approx(best["f1"])
    assert Path(page["uri"]).read_text().count("data:image/png;base64,") >= 4

    # every configuration is an MLflow run tagged with the Kubeflow run id, holding the same metrics
    runs = {r.info.run_name: r for r in _mlflow_runs(tracking_uri, "lumbar-procedure1")}
    assert set(runs) == {r["name"] for r in rows}
    kfp_ids = {r.data.tags.get("kfp.run_id") for r in runs.values()}
    assert len(kfp_ids) == 1 and kfp_ids != {None}
    for row in rows:
        tracked = runs[row["name"]]
        assert tracked.info.run_id == row["run_id"]
        assert tracked.data.metrics["test_accuracy"] == pytest.approx(row["accuracy"])
        assert tracked.data.metrics["test_f1"] == pytest.approx(row["f1"])
        assert tracked.data.tags["lumbar.procedure"] == "procedure1"


def test_dataset_c_then_procedure1_reads_the_published_version(synthetic_export, pipeline_env):
    """The two stand-alone pipelines: Dataset C published, then procedure 1 on its `latest` version.

    Two backbones, frozen only (four configurations: full and ROI each) keep the kfp.local run short;
    VGG16 in both modes and both image types is checked on the demo's `paper` run by the same
    :func:`check_procedure1` (tests/report/test_demo.py).
    """
    built = run_local(
        "dataset_c",
        {"export_uri": str(synthetic_export), "publish_to": pipeline_env["store"], "workers": 2},
        pipeline_env["root"],
    )
    outputs = _outputs(built.folder / "build-dataset-c")
    dataset = Path(outputs["dataset"]["uri"])
    meta = outputs["dataset"]["metadata"]
    assert (dataset / "manifest.csv").is_file() and meta["patients"] == 8 and meta["labelled_images"] > 0
    assert meta["published_uri"].endswith(f"/datasets/dataset-c/{meta['version']}")
    assert "Dataset C" in Path(outputs["datacard"]["uri"]).read_text()

    # procedure 1 reads the published version (through the store's 'latest' pointer), not the folder
    params = {
        "dataset_uri": f"{pipeline_env['store']}/datasets/dataset-c/latest",
        "backbones": "vgg16,mobilenetv2",
        "modes": "frozen",
    }
    run = run_local("procedure1", {**params, **TINY}, pipeline_env["root"])
    assert _outputs(run.folder / "fetch-dataset")["dataset"]["metadata"]["version"] == meta["version"]
    check_procedure1(run.folder, pipeline_env["tracking"], ("vgg16", "mobilenetv2"), ("frozen",))


def check_procedure2(run_folder: Path, tracking_uri: str, backbone: str = "vgg16") -> None:
    """Procedure 2's tasks in a finished run (its own pipeline or ``paper``, where its tasks carry suffixes):
    Dataset A from the real brain MRI sample accounted for, the supervised backbone saved, a frozen and a
    fine-tuned ROI run from it, Table 11 in the compare table, and the runs in MLflow's procedure-2 experiment.
    """
    labelled = _outputs(run_folder / "build-dataset-a")["dataset"]["metadata"]
    assert labelled["used"] + labelled["duplicates"] + labelled["quarantined"] + labelled["unmapped"] >= 176
    iteration = next(f for f in run_folder.glob("for-loop-*-iteration-0") if (f / "pretrain-supervised").is_dir())
    pretrained = Path(_outputs(iteration / "pretrain-supervised")["pretrained"]["uri"])
    assert (pretrained / "backbone" / "backbone.npz").is_file()
    rows = [_outputs(task)["metrics"]["metadata"] for task in sorted(iteration.glob("evaluate*"))]
    assert {r["mode"] for r in rows} == {"frozen", "finetune"}
    assert {r["weights_source"] for r in rows} == {"supervised"}
    tables = [Path(_outputs(f)["table"]["uri"]).read_text() for f in run_folder.glob("compare*")]
    table = next(t for t in tables if "### Table 11:" in t)
    assert "### Table 11: pretrained on Dataset A (supervised, from scratch) (positive class normal" in table
    section = table.split("### Table 11:")[1].split("###")[0]
    assert len(re.findall(rf"^\| {backbone} \| (frozen|finetune) \| ROI \|", section, flags=re.M)) == 2
    runs = _mlflow_runs(tracking_uri, "lumbar-procedure2")
    names = {r.info.run_name for r in runs}
    assert {f"{backbone}-frozen-roi", f"{backbone}-finetune-roi"} <= names
    assert len(names) == 3  # and the pretraining run
    # the transfer runs say how far the pretraining got on its own task (the report warns when not at all)
    meta = json.loads((pretrained / "backbone" / "backbone.json").read_text())
    transfers = [r for r in runs if r.data.tags.get("lumbar.procedure") == "procedure2"]
    assert transfers and all(
        float(r.data.tags["lumbar.pretraining.majority_val_error"])
        == pytest.approx(meta["majority_val_error"], abs=1e-4)
        for r in transfers
    )


@pytest.mark.slow
def test_procedure1_full_sixteen_runs(built_dataset, pipeline_env):
    run = run_local("procedure1", {"dataset_uri": str(built_dataset), **TINY}, pipeline_env["root"])
    table = Path(_outputs(run.folder / "compare")["table"]["uri"]).read_text()
    assert len(re.findall(r"^- `", table, flags=re.M)) == 16
    assert len(_mlflow_runs(pipeline_env["tracking"], "lumbar-procedure1")) == 16
