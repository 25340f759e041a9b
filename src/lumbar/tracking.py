"""Thin helpers over MLflow: experiments per procedure, parent and nested runs, batched logging, Keras models.

* One experiment per procedure (``lumbar-procedure1`` ...), a parent run per pipeline run, and a
  nested child run per configuration (backbone x fine-tuning x ROI).
* Params are flat keys (nested mappings become ``a.b``); metrics are logged in one batch per call
  (``log_batch``), one call per epoch.
* Standard tags: lumbar version, git commit, dataset version, and the KFP run id when present.
* Models are logged with the Keras flavour and optionally registered with an alias.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a local SQLite store under the project's
data directory (``sqlite:///<data dir>/mlflow.db``, artifacts in ``<data dir>/mlartifacts``), so nothing
needs a server. Everything goes through an explicit :class:`mlflow.MlflowClient`; the fluent API is
touched only inside :meth:`TrackedRun.log_keras_model` (MLflow offers no other way to log a model to
a given run) and restored afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumbar import __version__
from lumbar.errors import LumbarError
from lumbar.paths import data_dir

_MAX_PARAM_LENGTH = 6000
_BATCH = 100
#: The environment variable that carries the Kubeflow run id into a step. On a cluster the compiled
#: pipelines set it from the pod's ``pipeline/runid`` label (Kubernetes' downward API), locally the
#: launcher sets it: never a task input, so that the run id does not enter a cached task's cache key.
RUN_ID_ENV = "LUMBAR_KFP_RUN_ID"
#: Environment variables that carry the Kubeflow run id into a component, in the order they are read.
KFP_RUN_ID_ENVS = ("KFP_RUN_ID", RUN_ID_ENV)


class TrackingError(LumbarError):
    """MLflow could not be reached or refused an operation."""


def tracking_uri(environ: Mapping[str, str] | None = None) -> str:
    """Return ``MLFLOW_TRACKING_URI`` or the local SQLite default under the data directory."""
    env = os.environ if environ is None else environ
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{data_dir(env) / 'mlflow.db'}"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into ``a.b`` keys with string values (MLflow params are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(map(str, value))[:_MAX_PARAM_LENGTH]
        else:
            flat[name] = str(value)[:_MAX_PARAM_LENGTH]
    return flat


def git_commit(environ: Mapping[str, str] | None = None) -> str | None:
    """The commit the code runs from: ``LUMBAR_GIT_COMMIT``, else ``git rev-parse HEAD`` beside the package."""
    env = os.environ if environ is None else environ
    if env.get("LUMBAR_GIT_COMMIT"):
        return env["LUMBAR_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def kfp_run_id(environ: Mapping[str, str] | None = None) -> str:
    """The Kubeflow run this process runs in, from :data:`KFP_RUN_ID_ENVS` (empty: not in a pipeline run)."""
    env = os.environ if environ is None else environ
    return next((env[name] for name in KFP_RUN_ID_ENVS if env.get(name)), "")


def standard_tags(dataset_version: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags every lumbar run carries: version, git commit, dataset version, KFP run id (those known)."""
    env = os.environ if environ is None else environ
    tags = {"lumbar.version": __version__}
    commit = git_commit(env)
    if commit:
        tags["git.commit"] = commit
    if dataset_version:
        tags["dataset.version"] = dataset_version
    kfp_run = kfp_run_id(env)
    if kfp_run:
        tags["kfp.run_id"] = kfp_run
    return tags


@dataclass(frozen=True)
class ModelRef:
    """Where a logged model is."""

    uri: str
    registered_name: str | None = None
    version: str | None = None
    alias: str | None = None


class Tracker:
    """An MLflow experiment reached through an explicit client."""

    def __init__(self, experiment: str, uri: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = uri or tracking_uri()
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment_id(experiment)

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return found.experiment_id
            location = None
            if self.uri.startswith("sqlite:///"):  # a local store keeps its artifacts beside the database
                location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            raise TrackingError(f"MLflow at {self.uri} refused experiment {name!r}: {exc.message}") from None
        except Exception as exc:  # connection errors surface as many types
            raise TrackingError(f"MLflow at {self.uri} is unreachable ({exc.__class__.__name__})") from None

    @contextmanager
    def run(
        self,
        name: str,
        parent: TrackedRun | str | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> Iterator[TrackedRun]:
        """Start a run, or continue ``run_id`` (a resumed training); it ends FINISHED, or FAILED on an exception.

        Args:
            name: Run name.
            parent: Parent run (or its id) for a nested run.
            tags: Extra tags.
            run_id: An existing run to continue instead of creating one.
        """
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            run = TrackedRun(self, run_id)
            if tags:
                run.set_tags(tags)
        else:
            all_tags = {"mlflow.runName": name, **(tags or {})}
            if parent is not None:
                all_tags["mlflow.parentRunId"] = parent if isinstance(parent, str) else parent.run_id
            created = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
            run = TrackedRun(self, created.info.run_id)
        try:
            yield run
        except BaseException:
            self.client.set_terminated(run.run_id, "FAILED")
            raise
        self.client.set_terminated(run.run_id, "FINISHED")

    @classmethod
    def for_run(cls, run_id: str, uri: str | None = None) -> Tracker:
        """The tracker of the experiment that holds ``run_id``.

        Raises:
            TrackingError: If the run is not in the tracking store.
        """
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        uri = uri or tracking_uri()
        client = MlflowClient(tracking_uri=uri)
        try:
            experiment_id = client.get_run(run_id).info.experiment_id
        except MlflowException:
            raise TrackingError(f"MLflow run {run_id} is not in the tracking store {uri}") from None
        return cls(client.get_experiment(experiment_id).name, uri)

    def attach(self, run_id: str) -> TrackedRun:
        """Write to an existing run (for example evaluation results on the training run)."""
        return TrackedRun(self, run_id)

    def runs(self, filter_string: str = "", parent: str | None = None) -> list:
        """Runs of this experiment (children of ``parent`` when given), newest first."""
        query = filter_string
        if parent:
            clause = f"tags.mlflow.parentRunId = '{parent}'"
            query = f"{query} and {clause}" if query else clause
        return list(self.client.search_runs([self.experiment_id], filter_string=query, order_by=["start_time DESC"]))


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for a while, then restore it exactly.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the process environment; the
    previous value (or its absence) is put back so later lumbar runs keep their own tracking store.
    """
    import mlflow

    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def _requirements() -> list[str]:
    """The pip requirements of a logged model, stated (MLflow's inference would load the model in a subprocess)."""
    from importlib import metadata

    pins = []
    for dist in ("keras", "tensorflow-cpu", "tensorflow", "lumbar"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _signature(model: Any):  # type: ignore[no-untyped-def]
    """The model's input/output signature, from one all-zero example of its input shape."""
    import numpy as np
    from mlflow.models import infer_signature

    example = np.zeros((1, *model.input_shape[1:]), dtype="float32")
    return infer_signature(example, np.asarray(model.predict(example, verbose=0)))


class TrackedRun:
    """One MLflow run, written through the tracker's client."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id = tracker, run_id

    @property
    def client(self):  # type: ignore[no-untyped-def]
        """The MLflow client."""
        return self.tracker.client

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) params as flat string keys, in batches."""
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metrics in one call (one ``log_batch`` per epoch, not one call per value)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for start in range(0, len(batch), _BATCH):
            self.client.log_batch(self.run_id, metrics=batch[start : start + _BATCH])

    def log_missing_epochs(self, history: list[dict], probe: str = "loss") -> int:
        """Log the epochs of ``history`` that the run lacks (a kill can fall between checkpoint and logging).

        Args:
            history: Per-epoch records with an ``epoch`` key and metric values.
            probe: A metric every record has; its logged steps tell which epochs are there.

        Returns:
            How many epochs were logged now.
        """
        logged = {m.step for m in self.client.get_metric_history(self.run_id, probe)}
        missing = [h for h in history if int(h["epoch"]) not in logged]
        for record in missing:
            self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))
        return len(missing)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags in one batch."""
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder as run artifacts."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_keras_model(
        self, model: Any, name: str = "model", registered_name: str | None = None, alias: str | None = None
    ) -> ModelRef:
        """Log a Keras model with MLflow's Keras flavour; register it (and set ``alias``) when asked."""
        import mlflow

        with fluent_tracking_uri(self.tracker.uri):
            mlflow.start_run(run_id=self.run_id)
            try:
                info = mlflow.keras.log_model(
                    model,
                    name=name,
                    registered_model_name=registered_name,
                    pip_requirements=_requirements(),
                    signature=_signature(model),
                )
            finally:
                mlflow.end_run()
                self.client.update_run(self.run_id, status="RUNNING")  # end_run marked it finished
        version = str(info.registered_model_version) if registered_name and info.registered_model_version else None
        if registered_name and alias and version:
            self.client.set_registered_model_alias(registered_name, alias, version)
        return ModelRef(info.model_uri, registered_name, version, alias if version else None)
