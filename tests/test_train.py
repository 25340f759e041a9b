"""Training on a small synthetic Dataset C: it learns, it is tracked, it resumes after a kill, it is reproducible."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lumbar.errors import InputError
from lumbar.evaluate import evaluate_model
from lumbar.metrics import binary_metrics, majority_f1
from lumbar.profiles import profile_settings
from lumbar.tracking import fluent_tracking_uri
from lumbar.train import TrainConfig, read_history, selection_key, train_model

from .killed_runs import KilledRun

LUMBAR = str(Path(sys.executable).with_name("lumbar"))
QUICK = profile_settings("quick", "train")
EPOCHS = QUICK["epochs_frozen"]  # the trained fixture is a frozen probe


def test_profiles_and_overrides():
    paper = TrainConfig.from_profile("paper", backbone="resnet50", mode="finetune")
    assert (paper.image_size, paper.batch_size, paper.epochs, paper.learning_rate, paper.dropout) == (
        224,
        64,
        50,
        1e-5,
        0.2,
    )
    assert TrainConfig.from_profile("paper").learning_rate == 1e-3
    quick = TrainConfig.from_profile("quick", epochs=2, image_size=None)
    assert quick.epochs == 2 and quick.image_size == QUICK["image_size"]
    assert quick.run_name == "vgg16-frozen-full"
    with pytest.raises(InputError, match="unknown backbone"):
        TrainConfig.from_profile("quick", backbone="inception")
    with pytest.raises(InputError, match="unknown training option"):
        TrainConfig.from_profile("quick", colour=True)


def test_fine_tuning_starts_from_a_fitted_head_in_the_quick_profile_only(built_dataset, tmp_path):
    """``probe_epochs``: the head is fitted on the frozen features first and fine-tuning starts from its best epoch.

    With a learning rate too small to move anything, the first fine-tuning epoch scores what the probe's kept
    epoch scored on the validation split.
    """
    assert TrainConfig.from_profile("quick", mode="finetune").probe_epochs == QUICK["probe_epochs"] > 0
    assert TrainConfig.from_profile("quick", mode="frozen").probe_epochs == 0
    assert TrainConfig.from_profile("paper", mode="finetune").probe_epochs == 0  # the paper: a random head
    with pytest.raises(InputError, match="use it with --mode finetune"):
        TrainConfig.from_profile("quick", mode="frozen", probe_epochs=3)
    config = TrainConfig.from_profile(
        "quick", weights="none", mode="finetune", image_size=32, epochs=1, learning_rate=1e-12, probe_epochs=8
    )
    result = train_model(config, built_dataset, tmp_path / "run", track=False)
    probe = json.loads((tmp_path / "run" / "model.json").read_text())["probe"]
    assert probe["epochs"] == 8 and 1 <= probe["best_epoch"] <= 8
    assert result.history[0]["val_loss"] == pytest.approx(probe["val_loss"], rel=1e-3)
    assert result.history[0]["val_error"] == pytest.approx(probe["val_error"])


def test_fine_tuning_keeps_the_heads_statistics_on_the_features_it_computes(built_dataset, tmp_path):
    """``standardize`` in finetune mode: the saved model's head_norm holds the mean and spread of the training
    features as that model computes them (refreshed each epoch), not the ones from before fine-tuning."""
    import keras

    from lumbar.data import make_dataset, split_records
    from lumbar.models import HEAD_NORM_LAYER, pooled_features

    config = TrainConfig.from_profile(
        "quick", weights="none", mode="finetune", image_size=32, epochs=2, learning_rate=1e-3, probe_epochs=2
    )
    first = train_model(config, built_dataset, tmp_path / "run", track=False)
    assert not (tmp_path / "run" / "checkpoints").exists()  # a completed run removes them
    again = train_model(config, built_dataset, tmp_path / "run", resume=True, track=False)  # nothing left to do
    assert (again.best_epoch, again.epochs_run, len(again.history)) == (first.best_epoch, 2, 2)
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    records = split_records(built_dataset, "train", roi=False)
    images = make_dataset(built_dataset, "train", config.input_config(), records=records)
    features = pooled_features(model).predict(images, verbose=0).astype("float64")
    layer = model.get_layer(HEAD_NORM_LAYER)
    scale = np.sqrt(np.mean(features**2))
    assert np.allclose(np.asarray(layer.mean), features.mean(axis=0), atol=1e-4 * scale)
    kept = features.var(axis=0) > (1e-5 * scale) ** 2
    assert np.allclose(np.asarray(layer.inv_std)[kept], 1 / np.sqrt(features.var(axis=0)[kept]), rtol=1e-3)


def test_the_paper_profile_follows_the_paper_where_the_project_drifted():
    paper = TrainConfig.from_profile("paper", mode="finetune")
    assert (paper.unfreeze, paper.monitor, paper.class_weights, paper.augment, paper.standardize) == (
        "blocks:2",
        "val_error",
        "none",
        True,
        False,
    )
    assert paper.model_config().unfreeze_blocks == 2 and paper.model_config().unfreeze_layers == 0
    assert paper.head == "GlobalAveragePooling2D -> Dropout(0.2) -> Dense(1, sigmoid)"
    quick = TrainConfig.from_profile("quick", unfreeze="layers:3", monitor="val_loss", class_weights="balanced")
    assert (quick.unfreeze, quick.monitor, quick.class_weights) == ("layers:3", "val_loss", "balanced")
    assert (quick.model_config().unfreeze_blocks, quick.model_config().unfreeze_layers) == (0, 3)
    assert TrainConfig.from_profile("quick").standardize and "Normalization" in TrainConfig.from_profile("quick").head
    assert (paper.head_l2, TrainConfig.from_profile("quick").head_l2) == (0.0, QUICK["head_l2"])
    assert QUICK["head_l2"] > 0 and QUICK["class_weights"] == "none"
    for bad, message in (
        ({"unfreeze": "blocks:0"}, "--unfreeze must be blocks:N or layers:N"),
        ({"unfreeze": "top2"}, "--unfreeze must be blocks:N or layers:N"),
        ({"monitor": "val_accuracy"}, "unknown monitor"),
        ({"class_weights": "inverse"}, "unknown class weights"),
        ({"head_l2": -0.1}, r"head_l2\) must be 0 or more"),
    ):
        with pytest.raises(InputError, match=message):
            TrainConfig.from_profile("paper", **bad)


def test_selection_prefers_the_lower_error_then_the_lower_loss_then_the_earlier_epoch():
    epochs = [
        {"val_error": 0.30, "val_loss": 0.50},
        {"val_error": 0.20, "val_loss": 0.70},  # lowest error: chosen by val_error
        {"val_error": 0.20, "val_loss": 0.80},  # same error, higher loss
        {"val_error": 0.25, "val_loss": 0.40},  # lowest loss: chosen by val_loss
    ]

    def best(monitor):
        keys = [selection_key(e, monitor) for e in epochs]
        return keys.index(min(keys)) + 1  # min returns the first of equal keys: the earlier epoch

    assert best("val_error") == 2 and best("val_loss") == 4
    assert selection_key({"val_error": 0.2, "val_loss": 0.7}, "val_error") < selection_key(
        {"val_error": 0.2, "val_loss": 0.8}, "val_error"
    )


@pytest.fixture(scope="module")
def trained(learnable_dataset, tmp_path_factory):
    """VGG16 in the quick profile from random weights (no ImageNet weights offline): a standardised frozen probe."""
    base = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        config = TrainConfig.from_profile("quick", backbone="vgg16", weights="none", seed=0)
        result = train_model(config, learnable_dataset, base / "model", experiment="lumbar-test-train")
        evaluation = evaluate_model(base / "model", learnable_dataset, "test")
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return result, evaluation, uri, base


def test_quick_training_learns(trained):
    """The quick profile beats always predicting the majority class, in the paper's convention (normal positive)."""
    result, evaluation, _, _ = trained
    assert len(result.history) == EPOCHS
    y = np.asarray(evaluation.y_true)
    positives = int(np.sum(y == 0))
    assert evaluation.metrics["normal_f1"] > majority_f1(len(y), positives)
    majority = int(np.mean(y) >= 0.5)
    baseline = binary_metrics(y, np.full(len(y), float(majority)))
    assert evaluation.metrics["accuracy"] > baseline["accuracy"]
    assert set(evaluation.per_disc) <= {"L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"}
    for name in ("metrics.json", "confusion.png", "roc.png"):
        assert (evaluation.out_dir / name).is_file()


def test_the_kept_epoch_has_the_lowest_validation_error(trained, learnable_dataset):
    """Model selection by val_error (the quick and paper profiles): the saved model is that epoch's."""
    result, _, _, base = trained
    keys = [(h["val_error"], h["val_loss"]) for h in result.history]
    assert result.best_epoch == keys.index(min(keys)) + 1
    best = result.history[result.best_epoch - 1]
    assert result.best_val_error == pytest.approx(best["val_error"]) and result.best_val_loss == best["val_loss"]
    assert all(h["val_error"] == pytest.approx(1 - h["val_accuracy"]) for h in result.history)
    val = evaluate_model(base / "model", learnable_dataset, "val", base / "eval-val", track=False)
    assert val.metrics["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)
    # the test evaluation also scored the validation patients: the numbers configurations are chosen on
    selection = json.loads((base / "model" / "eval-test" / "metrics.json").read_text())["selection"]
    assert selection["split"] == "val" and selection["support"] == len(val.y_true)
    assert selection["abnormal_f1"] == pytest.approx(val.metrics["abnormal_f1"])
    assert selection["roc_auc"] == pytest.approx(val.metrics["abnormal_roc_auc"])
    assert json.loads((base / "eval-val" / "metrics.json").read_text())["selection"] == {}
    info = json.loads((base / "model" / "model.json").read_text())
    assert (info["monitor"], info["best_epoch"]) == ("val_error", result.best_epoch)


def test_training_is_in_mlflow(trained):
    import mlflow
    from mlflow import MlflowClient

    result, evaluation, uri, base = trained
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["backbone"] == "vgg16" and run.data.params["roi"] == "False"
    params = run.data.params
    assert (params["unfreeze"], params["monitor"], params["class_weights"]) == ("blocks:1", "val_error", "none")
    assert params["head_l2"] == "0.5"
    assert params["head"] == (
        "GlobalAveragePooling2D -> Normalization(train-set statistics) -> Dropout(0.2) -> Dense(1, sigmoid, L2 0.5)"
    )
    assert run.data.metrics["best_val_error"] == pytest.approx(result.best_val_error)
    assert len(client.get_metric_history(result.run_id, "val_loss")) == EPOCHS
    assert run.data.metrics["test_f1"] == pytest.approx(evaluation.metrics["f1"])
    assert run.data.metrics["selection_support"] > 0 and "selection_roc_auc" in run.data.metrics
    assert (
        run.data.tags["dataset.version"] == json.loads((base / "model" / "model.json").read_text())["dataset_version"]
    )
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"curves.png", "history.csv", "model.json", "eval-test"} <= artifacts
    logged = client.search_logged_models([run.info.experiment_id])
    assert logged
    with fluent_tracking_uri(uri):
        model = mlflow.keras.load_model(f"models:/{logged[0].model_id}")
    from lumbar.models import load_model

    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 1)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), load_model(base / "model").predict(x, verbose=0), rtol=1e-5)


def test_cli_predict_and_gradcam(trained, learnable_dataset, tmp_path):
    _, _, _, base = trained
    image = sorted((learnable_dataset / "roi").glob("*.png"))[0]
    out = subprocess.run(
        [LUMBAR, "predict", "--model", str(base / "model"), str(image)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    path, label, prob = out.stdout.strip().splitlines()[-1].split("\t")
    assert path == str(image) and label in ("normal", "abnormal") and 0.5 <= float(prob) <= 1
    page = subprocess.run(
        [
            LUMBAR,
            "gradcam",
            "--model",
            str(base / "model"),
            "--dataset",
            str(learnable_dataset),
            "--out",
            str(tmp_path / "cam"),
            "--n",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "cam" / "index.html").read_text()
    assert html.count("<figure>") == 4 and "block5_conv3" in html
    assert len(list((tmp_path / "cam" / "images").glob("*_gradcam.png"))) == 4
    bad = subprocess.run(
        [LUMBAR, "predict", "--model", str(base / "model"), str(tmp_path / "cam" / "index.html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "not a readable image" in bad.stderr
    assert [line for line in bad.stderr.splitlines() if line.strip()] == [bad.stderr.strip()]  # one line


def test_killed_run_resumes_to_the_same_number_of_epochs(built_dataset, tmp_path):
    """Killed after its second epoch, a fine-tuning run resumes to its fifth in the same MLflow run.

    On the suite's small Dataset C: resuming does not depend on how much the model learns.
    """
    out = tmp_path / "run"
    command = [
        "train",
        "--dataset",
        str(built_dataset),
        "--backbone",
        "vgg16",
        "--weights",
        "none",
        "--mode",
        "finetune",
        "--epochs",
        "5",
        "--verbose",
        "0",
        "--augment",  # every epoch through the whole model, checkpointed whole (not augmented, only the top is)
        "--image-size",
        "32",  # a quarter of the quick profile's pixels: resuming does not depend on the size
    ]
    run = KilledRun(command, out, tmp_path)
    assert 2 <= run.kill_after(epoch=2) < 5 and not (out / "model.keras").exists()
    assert run.resume() is None  # a finished run removes its checkpoints
    info = json.loads((out / "model.json").read_text())
    assert info["epochs"] == 5
    assert [int(h["epoch"]) for h in read_history(out / "history.csv")] == [1, 2, 3, 4, 5]
    assert run.metric_steps(info["run_id"], "val_loss") == [1, 2, 3, 4, 5]  # one MLflow run across the kill
    from mlflow import MlflowClient

    assert MlflowClient(run.env["MLFLOW_TRACKING_URI"]).get_run(info["run_id"]).info.status == "FINISHED"


def test_killed_run_on_the_cached_trunk_resumes_from_its_top_checkpoint(built_dataset, tmp_path):
    """Not augmented, a fine-tuning run trains its top on the trunk's cached outputs and checkpoints only the top:
    killed, it resumes from that checkpoint to its last epoch in the same MLflow run, and saves a whole model."""
    out = tmp_path / "run"
    epochs = 8  # an epoch on cached outputs takes under a second here, most of it writing the checkpoint
    command = ["train", "--dataset", str(built_dataset), "--backbone", "vgg16", "--weights", "none"]
    command += ["--mode", "finetune", "--epochs", str(epochs), "--no-augment", "--image-size", "32", "--verbose", "0"]
    run = KilledRun(command, out, tmp_path)
    assert 2 <= run.kill_after(epoch=2) < epochs and not (out / "model.keras").exists()
    assert (out / "checkpoints" / "last.head.weights.h5").is_file()
    assert run.resume() is None and not (out / "checkpoints").exists()
    info = json.loads((out / "model.json").read_text())
    assert info["cached_features"] is True and info["epochs"] == epochs
    assert [int(h["epoch"]) for h in read_history(out / "history.csv")] == list(range(1, epochs + 1))
    assert run.metric_steps(info["run_id"], "val_loss") == list(range(1, epochs + 1))
    import keras

    assert len(keras.models.load_model(out / "model.keras").layers) > 20  # the whole model, not its top


def test_seeded_runs_are_reproducible_on_cpu(learnable_dataset, tmp_path):
    config = TrainConfig.from_profile("quick", backbone="mobilenetv2", weights="none", epochs=2, image_size=32, seed=7)
    a = train_model(config, learnable_dataset, tmp_path / "a", track=False)
    b = train_model(config, learnable_dataset, tmp_path / "b", track=False)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]


def test_resume_refuses_another_configuration(learnable_dataset, tmp_path):
    config = TrainConfig.from_profile("quick", backbone="mobilenetv2", weights="none", epochs=1, image_size=32)
    train_model(config, learnable_dataset, tmp_path / "m", track=False)
    with pytest.raises(InputError, match="already holds a trained model"):
        train_model(config, learnable_dataset, tmp_path / "m", track=False)
    other = TrainConfig.from_profile("quick", backbone="mobilenetv2", weights="none", epochs=2, image_size=32)
    with pytest.raises(InputError, match="another configuration"):
        train_model(other, learnable_dataset, tmp_path / "m", resume=True, track=False)


def test_gpu_defaults_mixed_precision_and_xla_run_when_forced_on_the_cpu(learnable_dataset, tmp_path):
    """The path a GPU takes by default (mixed_float16 + XLA), forced here: it trains, keeps the head in
    float32, leaves the global policy at float32 for the next run, and records what it really used
    (Keras drops XLA under the op determinism the CPU runs with)."""
    import keras

    from lumbar.models import load_model

    config = TrainConfig.from_profile(
        "quick",
        backbone="mobilenetv2",
        weights="none",
        epochs=2,
        image_size=32,
        precision="mixed_float16",
        jit="on",
    )
    with pytest.warns(UserWarning, match="jit_compile"):  # Keras says it drops XLA
        result = train_model(config, learnable_dataset, tmp_path / "mixed", track=False)
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert keras.mixed_precision.global_policy().name == "float32"
    info = json.loads((tmp_path / "mixed" / "model.json").read_text())
    assert (info["device"], info["mixed_precision"], info["xla"]) == ("cpu", True, False)
    model = load_model(tmp_path / "mixed")
    assert model.get_layer("Conv1").compute_dtype == "float16"
    assert model.get_layer("head_output").compute_dtype == "float32"
    assert model.predict(np.zeros((1, 32, 32, 1), "float32"), verbose=0).dtype == np.float32


def test_a_failed_mixed_precision_run_restores_the_keras_state_it_found(learnable_dataset, tmp_path):
    import csv
    import shutil

    import keras
    from tensorflow.python.framework import config as tf_config

    def keras_state():
        return keras.mixed_precision.global_policy().name, tf_config.is_op_determinism_enabled()

    found = keras_state()

    broken = tmp_path / "no-train"
    shutil.copytree(learnable_dataset, broken)
    with open(broken / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["split"] = "val"
    with open(broken / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = TrainConfig.from_profile(
        "quick", backbone="mobilenetv2", weights="none", epochs=1, image_size=32, precision="mixed_float16"
    )
    with pytest.raises(InputError, match="no labelled images in split 'train'"):
        train_model(config, broken, tmp_path / "out", track=False)
    assert keras_state() == found  # the policy and op determinism (switched on for the CPU run) are restored


def test_a_standardized_probe_keeps_the_training_feature_statistics(learnable_dataset, tmp_path):
    import keras

    from lumbar.data import InputConfig, make_dataset, split_records
    from lumbar.models import load_model

    config = TrainConfig.from_profile(
        "quick", backbone="resnet50", weights="none", epochs=1, image_size=32, roi=True, standardize=True
    )
    train_model(config, learnable_dataset, tmp_path / "probe", track=False)
    model = load_model(tmp_path / "probe")
    records = split_records(learnable_dataset, "train", roi=True)
    inputs = InputConfig(image_size=32, roi=True, augment=False)
    plain = make_dataset(learnable_dataset, "train", inputs, records=records)
    pooled = keras.Model(model.input, model.get_layer("head_pool").output).predict(plain, verbose=0)
    norm = model.get_layer("head_norm")
    np.testing.assert_allclose(np.asarray(norm.mean), pooled.mean(axis=0), rtol=1e-4, atol=1e-6)
    assert json.loads((tmp_path / "probe" / "model.json").read_text())["config"]["standardize"] is True


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frozen", "finetune"])
@pytest.mark.parametrize("backbone", ["vgg16", "vgg19", "resnet50", "mobilenetv2"])
def test_quick_profile_beats_the_majority_class_for_every_backbone_and_mode(backbone, mode, quick_export, tmp_path):
    """`lumbar train --profile quick --weights none` on a 24-patient export (docs/training.md has the numbers)."""
    config = TrainConfig.from_profile("quick", backbone=backbone, mode=mode, weights="none")
    train_model(config, quick_export, tmp_path / "model", track=False)
    evaluation = evaluate_model(tmp_path / "model", quick_export, "test", track=False)
    y = np.asarray(evaluation.y_true)
    assert evaluation.metrics["normal_f1"] > majority_f1(len(y), int(np.sum(y == 0)))


@pytest.fixture(scope="module")
def quick_export(tmp_path_factory):
    """Dataset C of the 24-patient export the quick profile's claim is about (`lumbar synth pacs --patients 24`)."""
    from lumbar.dataset_c import BuildConfig, build_dataset_c
    from lumbar.synth import SynthConfig, write_pacs_export

    from .conftest import TEST_SECRET_ENV

    base = tmp_path_factory.mktemp("quick24")
    write_pacs_export(base / "export", SynthConfig(patients=24, seed=0, size=256, workers=2))
    out = base / "dataset-c"
    build_dataset_c(
        BuildConfig(
            source=base / "export", labels=base / "export" / "labels.csv", out=out, key_secret_env=TEST_SECRET_ENV
        )
    )
    return out


def test_a_frozen_probe_fits_its_head_on_cached_features_and_keeps_the_best_epoch(learnable_dataset, tmp_path):
    """The head fit on the features computed once is the head of the saved model, at its best epoch."""
    from lumbar.evaluate import evaluate_model

    config = TrainConfig.from_profile("quick", backbone="mobilenetv2", weights="none", epochs=3, image_size=32)
    result = train_model(config, learnable_dataset, tmp_path / "probe", track=False)
    info = json.loads((tmp_path / "probe" / "model.json").read_text())
    assert info["cached_features"] is True
    best = result.history[info["best_epoch"] - 1]
    evaluation = evaluate_model(tmp_path / "probe", learnable_dataset, "val", track=False)
    # the whole saved model (backbone + the head trained on cached features) reproduces the kept epoch's val
    assert evaluation.metrics["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)
