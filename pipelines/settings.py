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

#: Config map keys (``k8s/base``) read by every task.
CONFIG_KEYS = ("MLFLOW_TRACKING_URI", "LUMBAR_S3_ENDPOINT", "LUMBAR_STORE_URI", "AWS_REGION", "LUMBAR_WEIGHTS_URI")
#: Secret keys of each object-store secret (one secret, one S3 identity, per role).
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: Secret keys of the MLflow client secret (MLflow's basic-auth user the tasks log as).
MLFLOW_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
PSEUDONYM_KEY = "LUMBAR_PSEUDONYM_SECRET"


@dataclass(frozen=True)
class ClusterSettings:
    """What the compiled pipelines ask of the cluster.

    Attributes:
        gpu: Training and pretraining tasks ask for a GPU (off: they run on CPU nodes).
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
            raise ValueError("parallelism must be at least 1")
        if not all(self.node_selector) or not all(self.toleration):
            raise ValueError("node selector and toleration need a key and a value")

    def _common(self, task: dsl.PipelineTask, s3_secret: str) -> None:
        # each task gets its own role's S3 identity only (least privilege; k8s/README.md, "Secrets")
        kubernetes.use_secret_as_env(task, s3_secret, {k: k for k in S3_KEYS}, optional=True)
        kubernetes.use_secret_as_env(task, self.mlflow_secret, {k: k for k in MLFLOW_KEYS}, optional=True)
        kubernetes.use_config_map_as_env(task, self.config_map, {k: k for k in CONFIG_KEYS}, optional=True)

    def data_task(self, task: dsl.PipelineTask, cpu: str = "2", memory: str = "4Gi", pseudonyms: bool = False) -> None:
        """A dataset build: CPU only, cacheable (same inputs give the same dataset), the dataset builders' keys."""
        self._common(task, self.dataset_secret)
        if pseudonyms:
            # required: a build without the secret would use a random one (unstable pseudonyms, no key)
            kubernetes.use_secret_as_env(task, self.pseudonym_secret, {PSEUDONYM_KEY: PSEUDONYM_KEY}, optional=False)
        task.set_cpu_request(cpu).set_memory_request(memory).set_caching_options(True)

    def fetch_task(self, task: dsl.PipelineTask, cpu: str = "2", memory: str = "4Gi") -> None:
        """Reading a published dataset into the pipeline: cacheable, the training role's (read-only) keys."""
        self._common(task, self.training_secret)
        task.set_cpu_request(cpu).set_memory_request(memory).set_caching_options(True)

    def light_task(self, task: dsl.PipelineTask, cpu: str = "1", memory: str = "2Gi", cache: bool = False) -> None:
        """A CPU step (evaluate, Grad-CAM, compare): no GPU, the training role's keys."""
        self._common(task, self.training_secret)
        task.set_cpu_request(cpu).set_memory_request(memory).set_caching_options(cache)

    def gpu_task(self, task: dsl.PipelineTask, cpu: str = "4", memory: str = "16Gi") -> None:
        """A training or pretraining step: one GPU on a GPU node, not cached unless asked."""
        self._common(task, self.training_secret)
        task.set_cpu_request(cpu).set_memory_request(memory).set_caching_options(self.cache_training)
        if self.gpu:
            task.set_accelerator_type(self.accelerator).set_accelerator_limit(1)
            kubernetes.add_node_selector(task, *self.node_selector)
            key, effect = self.toleration
            kubernetes.add_toleration(task, key=key, operator="Exists", effect=effect)
