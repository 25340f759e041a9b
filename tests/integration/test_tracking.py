"""MLflow tracking against a real server whose artifacts are proxied to the real S3 server, and the local default."""

from pathlib import Path

import numpy as np
import pytest

from lumbar.procedures import experiment_name
from lumbar.storage import open_store
from lumbar.tracking import Tracker, flatten, fluent_tracking_uri, standard_tags, tracking_uri


@pytest.fixture(scope="module")
def keras_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(4, activation="relu")(inputs))
    return keras.Model(inputs, outputs)


def test_run_reads_back_from_the_server(s3_env, keras_model, tmp_path, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "kfp-run-42")
    tracker = Tracker(experiment_name("test-procedure"))
    assert tracker.uri == s3_env["MLFLOW_TRACKING_URI"]
    artifact = tmp_path / "curves.txt"
    artifact.write_text("epoch,loss\n0,0.7\n")
    calls = []
    real_log_batch = tracker.client.log_batch

    def counting_log_batch(*args, **kwargs):  # a spy: every call still reaches the server
        calls.append(kwargs.get("metrics") or ())
        return real_log_batch(*args, **kwargs)

    tracker.client.log_batch = counting_log_batch
    with (
        tracker.run("pipeline-run", tags=standard_tags(dataset_version="0123abcd")) as parent,
        tracker.run("vgg16-finetune-roi", parent=parent) as child,
    ):
        child.log_params({"backbone": "vgg16", "mode": "finetune", "roi": True, "train": {"lr": 1e-5, "epochs": 3}})
        calls.clear()
        for epoch in range(3):
            child.log_metrics(
                {"loss": 1 / (epoch + 1), "val_loss": 1.5 / (epoch + 1), "accuracy": 0.5 + epoch / 10}, step=epoch
            )
        assert len(calls) == 3 and all(len(batch) == 3 for batch in calls)  # one batch per epoch
        child.log_artifact(artifact)
        ref = child.log_keras_model(keras_model, registered_name="lumbar-test-clf", alias="candidate")

    client = tracker.client
    run = client.get_run(child.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "backbone": "vgg16",
        "mode": "finetune",
        "roi": "True",
        "train.lr": "1e-05",
        "train.epochs": "3",
    }
    assert [m.value for m in client.get_metric_history(child.run_id, "loss")] == pytest.approx([1.0, 0.5, 1 / 3])
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id
    parent_tags = client.get_run(parent.run_id).data.tags
    assert parent_tags["dataset.version"] == "0123abcd" and parent_tags["kfp.run_id"] == "kfp-run-42"
    assert [r.info.run_id for r in tracker.runs(parent=parent.run_id)] == [child.run_id]
    local = client.download_artifacts(child.run_id, "curves.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == artifact.read_text()

    # the artifacts really are in the S3 bucket behind the proxy
    keys = list(open_store("s3://mlflow").list())
    assert any(k.endswith(f"{child.run_id}/artifacts/curves.txt") for k in keys)
    assert any(k.endswith("data/model.keras") for k in keys)

    import mlflow

    x = np.random.default_rng(0).random((5, 6)).astype("float32")
    expected = keras_model.predict(x, verbose=0)
    with fluent_tracking_uri(tracker.uri):
        np.testing.assert_allclose(mlflow.keras.load_model(ref.uri).predict(x, verbose=0), expected, rtol=1e-6)
        by_alias = mlflow.keras.load_model("models:/lumbar-test-clf@candidate")
        np.testing.assert_allclose(by_alias.predict(x, verbose=0), expected, rtol=1e-6)
    assert ref.version == "1" and ref.alias == "candidate"

    # no credential in params, tags, or the servers' logs
    secrets = (s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"])
    recorded = " ".join([*run.data.params.values(), *run.data.tags.values(), *parent_tags.values()])
    assert not any(s in recorded for s in secrets)


def test_server_logs_hold_no_secret(local_services, s3_env):
    for log in ("weed.log", "mlflow.log"):
        text = (local_services.dir / log).read_text(errors="replace")
        assert s3_env["AWS_SECRET_ACCESS_KEY"] not in text, log


def test_local_sqlite_default_needs_no_server(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    assert tracking_uri() == f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}"
    tracker = Tracker("lumbar-local")
    with tracker.run("one") as run:
        run.log_metrics({"f1": 0.8}, step=0)
        (tmp_path / "a.txt").write_text("x")
        run.log_artifact(tmp_path / "a.txt")
    assert (tmp_path / "data" / "mlflow.db").is_file()
    assert list((tmp_path / "data" / "mlartifacts").rglob("a.txt"))
    assert tracker.client.get_run(run.run_id).data.metrics == {"f1": 0.8}


def test_failed_run_is_marked_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    tracker = Tracker("lumbar-fail")
    with pytest.raises(RuntimeError), tracker.run("boom") as run:
        raise RuntimeError("training diverged")
    assert tracker.client.get_run(run.run_id).info.status == "FAILED"


def test_flatten_and_tags(monkeypatch):
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": "1", "a.c.d": "1,2", "e": "None"}
    monkeypatch.setenv("LUMBAR_GIT_COMMIT", "abc123")
    monkeypatch.delenv("KFP_RUN_ID", raising=False)
    tags = standard_tags()
    assert tags["git.commit"] == "abc123" and "kfp.run_id" not in tags and "dataset.version" not in tags


def test_logging_a_model_leaves_the_environment_alone(tmp_path, monkeypatch, keras_model):
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker("lumbar-env", uri=f"sqlite:///{tmp_path / 'env.db'}")
    with tracker.run("one") as run:
        run.log_keras_model(keras_model)
    assert "MLFLOW_TRACKING_URI" not in os.environ
