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
CONFIG_KEYS = ("MLFLOW_TRACKING_URI", "LUMBAR_S3_ENDPOINT", "LUMBAR_STORE_URI")
#: Secret keys of the object-store secret.
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
PSEUDONYM_KEY = "LUMBAR_PSEUDONYM_SECRET"


@dataclass(frozen=True)
class ClusterSettings:
    """What the compiled pipelines ask of the cluster.

    Attributes:
        gpu: Training and pretraining tasks ask for a GPU (off: they run on CPU nodes).
        accelerator: The accelerator resource name.
        node_selector: ``(label, value)`` that GPU tasks are scheduled by.
        toleration: ``(taint key, effect)`` that GPU tasks tolerate (operator ``Exists``).
        s3_secret: Secret holding ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``.
        pseudonym_secret: Secret holding ``LUMBAR_PSEUDONYM_SECRET`` (dataset builds only).
        config_map: Config map holding the MLflow URI, the S3 endpoint and the store root.
        parallelism: Training runs of a fan-out running at once.
        cache_training: Let Kubeflow reuse cached training results (off by default).
    """

    gpu: bool = True
    accelerator: str = "nvidia.com/gpu"
    node_selector: tuple[str, str] = ("nvidia.com/gpu.present", "true")
    toleration: tuple[str, str] = ("nvidia.com/gpu", "NoSchedule")
    s3_secret: str = "lumbar-s3"
    pseudonym_secret: str = "lumbar-pseudonym"
    config_map: str = "lumbar-config"
    parallelism: int = 4
    cache_training: bool = False

    def __post_init__(self) -> None:
        if self.parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        if not all(self.node_selector) or not all(self.toleration):
            raise ValueError("node selector and toleration need a key and a value")

    def _common(self, task: dsl.PipelineTask) -> None:
        kubernetes.use_secret_as_env(task, self.s3_secret, {k: k for k in S3_KEYS}, optional=True)
        kubernetes.use_config_map_as_env(task, self.config_map, {k: k for k in CONFIG_KEYS}, optional=True)

    def data_task(self, task: dsl.PipelineTask, cpu: str = "2", memory: str = "4Gi", pseudonyms: bool = False) -> None:
        """A dataset step: CPU only, cacheable (same inputs give the same dataset)."""
        self._common(task)
        if pseudonyms:
            # required: a build without the secret would use a random one (unstable pseudonyms, no key)
            kubernetes.use_secret_as_env(task, self.pseudonym_secret, {PSEUDONYM_KEY: PSEUDONYM_KEY}, optional=False)
        task.set_cpu_request(cpu).set_memory_request(memory).set_caching_options(True)

    def light_task(self, task: dsl.PipelineTask, cpu: str = "1", memory: str = "2Gi", cache: bool = False) -> None:
        """A CPU step (evaluate, Grad-CAM, compare): no GPU."""
        self._common(task)
        task.set_cpu_request(cpu).set_memory_request(memory).set_caching_options(cache)

    def gpu_task(self, task: dsl.PipelineTask, cpu: str = "4", memory: str = "16Gi") -> None:
        """A training or pretraining step: one GPU on a GPU node, not cached unless asked."""
        self._common(task)
        task.set_cpu_request(cpu).set_memory_request(memory).set_caching_options(self.cache_training)
        if self.gpu:
            task.set_accelerator_type(self.accelerator).set_accelerator_limit(1)
            kubernetes.add_node_selector(task, *self.node_selector)
            key, effect = self.toleration
            kubernetes.add_toleration(task, key=key, operator="Exists", effect=effect)
