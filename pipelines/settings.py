"""Cluster settings applied to pipeline tasks at compile time: GPUs, node placement, secrets, resources, caching.

Pipelines are built by factories (``build(settings)``) so that what depends on the cluster (GPU node
labels and taints, secret and config map names, ParallelFor parallelism, caching of training) is chosen
when the pipeline is compiled, not hard-coded. Nothing secret is ever a pipeline parameter: object-store
credentials and the pseudonymisation secret reach tasks through Kubernetes secrets
(``kfp.kubernetes.use_secret_as_env``), the MLflow URI and store root through a config map.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl, kubernetes

from lumbar.distribute import REPLICAS_ENV
from lumbar.errors import InputError
from lumbar.tracking import RUN_ID_ENV

#: Config map keys (``k8s/base``) read by every task.
CONFIG_KEYS = ("MLFLOW_TRACKING_URI", "LUMBAR_S3_ENDPOINT", "LUMBAR_STORE_URI", "AWS_REGION", "LUMBAR_WEIGHTS_URI")
#: Secret keys of each object-store secret (one secret, one S3 identity, per role).
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: The pod label that Kubeflow Pipelines' backend gives every task pod of a run: the run's id.
RUN_ID_LABEL = "pipeline/runid"
#: Secret keys of the MLflow client secret (MLflow's basic-auth user the tasks log as).
MLFLOW_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
PSEUDONYM_KEY = "LUMBAR_PSEUDONYM_SECRET"


@dataclass(frozen=True)
class ClusterSettings:
    """What the compiled pipelines ask of the cluster.

    Attributes:
        gpu: Training and pretraining tasks ask for GPUs (off: they run on CPU nodes).
        gpus: GPUs per training or pretraining task (with ``gpu``): the task's accelerator limit, and
            the data-parallel replicas its step trains on (``$LUMBAR_REPLICAS``, :mod:`lumbar.distribute`).
        accelerator: The accelerator resource name.
        node_selector: ``(label, value)`` that GPU tasks are scheduled by.
        toleration: ``(taint key, effect)`` that GPU tasks tolerate (operator ``Exists``).
        dataset_secret: S3 keys of the dataset builders (read exports, write datasets).
        training_secret: S3 keys of training and evaluation (read datasets and weights, write models).
        mlflow_secret: MLflow user of every task (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``).
        pseudonym_secret: Secret holding ``LUMBAR_PSEUDONYM_SECRET`` (dataset builds only).
        config_map: Config map holding the MLflow URI, the S3 endpoint and the store root.
        parallelism: Training runs of a fan-out running at once.
        cache_training: Let Kubeflow reuse cached training results (off by default).
    """

    gpu: bool = True
    gpus: int = 1
    accelerator: str = "nvidia.com/gpu"
    node_selector: tuple[str, str] = ("nvidia.com/gpu.present", "true")
    toleration: tuple[str, str] = ("nvidia.com/gpu", "NoSchedule")
    dataset_secret: str = "lumbar-s3-datasets"
    training_secret: str = "lumbar-s3-training"
    mlflow_secret: str = "lumbar-mlflow-client"
    pseudonym_secret: str = "lumbar-pseudonym"
    config_map: str = "lumbar-config"
    parallelism: int = 4
    cache_training: bool = False

    def __post_init__(self) -> None:
        if self.parallelism < 1:
            raise InputError("--parallelism must be at least 1")
        if self.gpus < 1:
            raise InputError("--gpus (per training task) must be at least 1")
        if not all(self.node_selector) or not all(self.toleration):
            raise InputError("node selector and toleration need a key and a value")

    def _common(self, task: dsl.PipelineTask, s3_secret: str) -> None:
        # each task gets its own role's S3 identity only (least privilege; k8s/README.md, "Secrets")
        kubernetes.use_secret_as_env(task, s3_secret, {k: k for k in S3_KEYS}, optional=True)
        kubernetes.use_secret_as_env(task, self.mlflow_secret, {k: k for k in MLFLOW_KEYS}, optional=True)
        kubernetes.use_config_map_as_env(task, self.config_map, {k: k for k in CONFIG_KEYS}, optional=True)
        # the run id from the pod's own label, which no cache key sees: a task input would make every
        # cached training miss across runs; the steps tag their MLflow runs with it (kfp.run_id)
        kubernetes.use_field_path_as_env(task, RUN_ID_ENV, f"metadata.labels['{RUN_ID_LABEL}']")

    def data_task(self, task: dsl.PipelineTask, pseudonyms: bool = False) -> None:
        """A dataset build: CPU only, the dataset builders' keys; never cached.

        Its sources are mutable URIs, and it publishes a new dataset version: a cache hit would silently skip both.
        """
        self._common(task, self.dataset_secret)
        if pseudonyms:
            # required: a build without the secret would use a random one (unstable pseudonyms, no key)
            kubernetes.use_secret_as_env(task, self.pseudonym_secret, {PSEUDONYM_KEY: PSEUDONYM_KEY}, optional=False)
        self.size(task, "dataset").set_caching_options(False)

    def resolve_task(self, task: dsl.PipelineTask) -> None:
        """Pinning a dataset pointer (``latest``) to its immutable version: never cached, the training role's keys."""
        self._common(task, self.training_secret)
        self.size(task, "small").set_caching_options(False)

    def fetch_task(self, task: dsl.PipelineTask) -> None:
        """Reading a pinned dataset version into the pipeline: cached (its inputs are content-addressed)."""
        self._common(task, self.training_secret)
        self.size(task, "fetch").set_caching_options(True)

    def light_task(self, task: dsl.PipelineTask, kind: str = "evaluate", cache: bool = False) -> None:
        """A CPU step of ``kind`` (a :data:`SIZING` row), the training role's keys."""
        self._common(task, self.training_secret)
        self.size(task, kind).set_caching_options(cache)

    def gpu_task(self, task: dsl.PipelineTask) -> None:
        """A training or pretraining step: ``gpus`` GPUs of one node, data-parallel; not cached unless asked."""
        self._common(task, self.training_secret)
        self.size(task, "train").set_caching_options(self.cache_training)
        if self.gpu:
            task.set_accelerator_type(self.accelerator).set_accelerator_limit(self.gpus)
            task.set_env_variable(REPLICAS_ENV, str(self.gpus))  # the step's data-parallel replicas
            kubernetes.add_node_selector(task, *self.node_selector)
            key, effect = self.toleration
            kubernetes.add_toleration(task, key=key, operator="Exists", effect=effect)

    def size(self, task: dsl.PipelineTask, kind: str) -> dsl.PipelineTask:
        """Set ``task``'s CPU and memory requests and limits from :data:`SIZING` (GPU or no-GPU column)."""
        need = SIZING[kind][self.gpu]
        task.set_cpu_request(need.cpu).set_cpu_limit(need.cpu_limit)
        return task.set_memory_request(need.memory).set_memory_limit(need.memory_limit)


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one kind of step (Kubernetes quantities)."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str


#: Requests and limits per kind of step: ``SIZING[kind][gpu]``. The no-GPU column fits a kind cluster
#: on a 16 GB laptop (about 10 GiB left for tasks beside Kubeflow Pipelines, MLflow and SeaweedFS),
#: with a ParallelFor running at most :data:`NO_GPU_PARALLELISM` iterations at once.
SIZING: dict[str, dict[bool, Resources]] = {
    "dataset": {True: Resources("2", "4Gi", "4", "8Gi"), False: Resources("1", "2Gi", "2", "3Gi")},
    "fetch": {True: Resources("1", "2Gi", "2", "4Gi"), False: Resources("500m", "1Gi", "1", "2Gi")},
    "small": {True: Resources("250m", "512Mi", "1", "1Gi"), False: Resources("100m", "256Mi", "500m", "512Mi")},
    "compare": {True: Resources("500m", "1Gi", "1", "2Gi"), False: Resources("250m", "512Mi", "1", "1Gi")},
    "evaluate": {True: Resources("1", "2Gi", "2", "4Gi"), False: Resources("500m", "1536Mi", "1", "2Gi")},
    "gradcam": {True: Resources("1", "4Gi", "2", "6Gi"), False: Resources("500m", "2Gi", "1", "3Gi")},
    "report": {True: Resources("1", "4Gi", "2", "6Gi"), False: Resources("500m", "2Gi", "1", "3Gi")},
    "train": {True: Resources("4", "16Gi", "8", "24Gi"), False: Resources("1", "3Gi", "2", "4Gi")},
}
#: Iterations of a ParallelFor at once when compiling ``--no-gpu`` without ``--parallelism`` (an iteration
#: of procedures 2 and 3 runs two training tasks side by side).
NO_GPU_PARALLELISM = 1


def cluster_references(settings: ClusterSettings) -> tuple[str, tuple[str, ...], dict[str, tuple[str, ...]]]:
    """What the compiled pipelines read from the cluster: ``(config map, its keys, {secret: its keys})``.

    ``lumbar cluster check`` checks exactly these, so the list lives beside the code that mounts them.
    """
    secrets = {
        settings.dataset_secret: S3_KEYS,
        settings.training_secret: S3_KEYS,
        settings.mlflow_secret: MLFLOW_KEYS,
        settings.pseudonym_secret: (PSEUDONYM_KEY,),
    }
    return settings.config_map, CONFIG_KEYS, secrets
