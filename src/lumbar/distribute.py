"""Data-parallel training on the accelerators a task was given (one node).

* TensorFlow backend: ``tf.distribute.MirroredStrategy`` over the GPUs (or, for tests, over logical CPU
  devices); Keras' ``fit`` splits every global batch between the replicas and all-reduces the gradients.
* JAX backend: Keras' ``keras.distribution.DataParallel`` over the JAX devices.
* The batch size a configuration names is per replica: the global batch is ``batch_size x replicas``
  (so one GPU trains exactly as before, and each GPU keeps the batch it runs efficiently).
* Learning rate: the linear scaling rule (Goyal et al., 2017, "Accurate, Large Minibatch SGD"): the
  configured rate is for one replica's batch and is multiplied by the number of replicas, so a run on
  N GPUs takes the same steps as one GPU would with N times the batch and N times the rate. Why this
  rule and its limits (it was shown for SGD; lumbar trains with Adam): ``docs/multinode.md``.

The number of replicas comes from the caller, else from ``$LUMBAR_REPLICAS`` (a Kubeflow pipeline sets
it on the training task together with the task's GPU limit), else every GPU visible (one device on a
machine without GPUs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lumbar.errors import InputError

#: Environment variable a pipeline sets on a training task: how many replicas (GPUs) to train on.
REPLICAS_ENV = "LUMBAR_REPLICAS"


@dataclass(frozen=True)
class Replicas:
    """The data-parallel layout of one training run.

    Attributes:
        count: Number of replicas (1: a single device, no distribution).
        devices: The devices the replicas run on.
        strategy: The ``tf.distribute.Strategy`` in use on the TensorFlow backend, else None.
    """

    count: int
    devices: tuple[str, ...]
    strategy: Any = None

    def global_batch(self, per_replica: int) -> int:
        """Images per training step over all replicas."""
        return per_replica * self.count

    def learning_rate(self, per_replica_rate: float) -> float:
        """The linear scaling rule: the rate set for one replica's batch, times the replicas."""
        return per_replica_rate * self.count


def requested_replicas(replicas: int | None = None) -> int:
    """``replicas`` when given, else ``$LUMBAR_REPLICAS``, else 0 (every GPU visible).

    Raises:
        InputError: If the value is not a whole number >= 0.
    """
    value: Any = replicas if replicas is not None else os.environ.get(REPLICAS_ENV, "0")
    try:
        count = int(value)
    except ValueError:
        raise InputError(f"{REPLICAS_ENV} must be a whole number of replicas, got {value!r}") from None
    if count < 0:
        raise InputError(f"the number of replicas must not be negative, got {count}")
    return count


def _pick(devices: list[str], accelerators: int, requested: int) -> list[str]:
    count = requested or max(accelerators, 1)
    if count > len(devices):
        raise InputError(f"{count} replicas requested but only {len(devices)} device(s) visible: {', '.join(devices)}")
    return devices[:count]


@contextmanager
def data_parallel(replicas: int = 0) -> Iterator[Replicas]:
    """Build, compile and fit inside this block to train on ``replicas`` devices (0: every GPU).

    Keras' distribution setting is global state: it is set for the block and restored after.

    Raises:
        InputError: If more replicas are requested than devices are visible.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        chosen = _pick(gpus or [d.name for d in tf.config.list_logical_devices("CPU")], len(gpus), replicas)
        if len(chosen) == 1:
            yield Replicas(1, tuple(chosen), tf.distribute.get_strategy())
            return
        strategy = tf.distribute.MirroredStrategy(devices=chosen)
        with strategy.scope():
            yield Replicas(len(chosen), tuple(chosen), strategy)
    elif backend == "jax":
        import jax

        devices = jax.devices()
        accelerators = len(devices) if devices[0].platform != "cpu" else 0
        chosen_jax = devices[: len(_pick([str(d) for d in devices], accelerators, replicas))]
        names = tuple(str(d) for d in chosen_jax)
        if len(chosen_jax) == 1:
            yield Replicas(1, names)
            return
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen_jax))
        try:
            yield Replicas(len(chosen_jax), names)
        finally:
            keras.distribution.set_distribution(previous)
    else:
        raise InputError(f"data-parallel training supports the tensorflow and jax backends, not {backend}")
