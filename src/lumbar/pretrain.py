"""Pretraining the backbones that procedures 2 and 3 transfer from.

* Supervised, from scratch, on Dataset A (``lumbar pretrain supervised``): the backbone with random
  weights and every block trainable, the binary head, the paper's settings in the ``paper`` profile
  (lr 1e-5, batch 64, 100 epochs, best validation epoch kept). It reuses :func:`lumbar.train.train_model`
  (checkpoints, ``--resume``, MLflow) and then saves the backbone without its head.
* Self-supervised on Dataset B (``lumbar pretrain ssl``): the paper does not say how it trained on
  unlabelled images; we use SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive Learning of
  Visual Representations"): two random views of each image (resized crop, flips, brightness and
  contrast jitter, noise), the backbone and a two-layer projection head, and the NT-Xent loss over the
  batch. Images stream from the shards. Checkpoints every epoch (weights and optimizer state) make a
  killed run resumable; the loss per epoch goes to MLflow.

Both write ``<out>/backbone/`` (``backbone.npz`` + ``backbone.json``), which ``lumbar train --weights``
reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumbar.backbones import BACKBONE_WEIGHTS, BACKBONES, DEFAULT_BACKBONE
from lumbar.errors import InputError, check_choice
from lumbar.procedures import PRETRAIN_SSL_EXPERIMENT, PRETRAIN_SUPERVISED_EXPERIMENT
from lumbar.profiles import DEFAULT_PROFILE, profile_settings

if TYPE_CHECKING:
    from lumbar.train import TrainConfig

ALL_BLOCKS = 1000


@dataclass
class PretrainResult:
    """Where a pretrained backbone is, and how its training went."""

    backbone_dir: Path
    run_id: str | None
    epochs: int
    history: list[dict]


def supervised_config(profile: str = DEFAULT_PROFILE, **overrides: Any) -> TrainConfig:
    """The training configuration of supervised pretraining: the whole backbone from scratch, binary target.

    Args:
        profile: ``paper`` or ``quick``: its ``pretrain`` section (:mod:`lumbar.profiles`) sets the input,
            epochs, learning rate and augmentation, its ``train`` section the rest.
        **overrides: Training settings (``backbone``, ``epochs``, ``batch_size``, ``image_size``,
            ``learning_rate``, ``seed``, ``augment``); ``None`` ones are ignored.
    """
    from lumbar.train import TrainConfig

    settings = {**profile_settings(profile, "pretrain"), **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.from_profile(
        profile,
        weights="none",
        mode="finetune",
        unfreeze=f"blocks:{ALL_BLOCKS}",
        standardize=False,  # trained from scratch: no head statistics from random features
        target="binary",
        **settings,
    )


def pretrain_supervised(
    dataset: str | Path,
    out: str | Path,
    config: TrainConfig,
    resume: bool = False,
    track: bool = True,
    experiment: str = PRETRAIN_SUPERVISED_EXPERIMENT,
    tags: dict[str, str] | None = None,
) -> PretrainResult:
    """Train a backbone from scratch on Dataset A and save it without its head.

    Args:
        dataset: Dataset A folder or published version URI.
        out: Output folder (``classifier/`` and ``backbone/``).
        config: The training configuration, from :func:`supervised_config`.
        resume: Continue a killed run.
        track: Log to MLflow.
        experiment: MLflow experiment.
        tags: Extra MLflow tags (a pipeline puts its Kubeflow run id here).
    """
    from lumbar.data import split_records
    from lumbar.models import load_model, save_backbone
    from lumbar.train import train_model
    from lumbar.versions import fetch_dataset

    out = Path(out)
    result = train_model(
        config, dataset, out / "classifier", resume=resume, experiment=experiment, track=track, tags=tags
    )
    model = load_model(out / "classifier")
    info = json.loads((out / "classifier" / "model.json").read_text())
    # how far it got on Dataset A's task: its kept epoch's validation error and ROC-AUC, beside the error of
    # always answering the validation split's majority class
    kept = result.history[result.best_epoch - 1] if 0 < result.best_epoch <= len(result.history) else {}
    val_labels = split_records(fetch_dataset(dataset), "val").labels
    share = float(val_labels.mean()) if len(val_labels) else 0.5
    save_backbone(
        model,
        config.backbone,
        out / "backbone",
        {
            "source": "supervised",
            "dataset_version": info["dataset_version"],
            "run_id": result.run_id,
            "image_size": config.image_size,
            "best_epoch": result.best_epoch,
            "best_val_error": result.best_val_error,
            "majority_val_error": min(share, 1.0 - share),
            "best_val_auc": kept.get("val_auc"),
        },
    )
    return PretrainResult(out / "backbone", result.run_id, result.epochs_run, result.history)


@dataclass(frozen=True)
class SSLConfig:
    """SimCLR pretraining settings.

    Attributes:
        backbone: Backbone name.
        profile: The profile the defaults came from.
        image_size: Input size of the views.
        batch_size: Images per batch (2x as many views).
        epochs: Passes over the shards (or ``steps_per_epoch`` batches each).
        learning_rate: Adam learning rate.
        temperature: NT-Xent temperature.
        projection_dim: Output size of the projection head.
        steps_per_epoch: Batches per epoch (None: the whole set).
        seed: Seed.
        freeze_batchnorm: Keep the backbone's BatchNormalization layers in inference mode with their
            initial statistics while SimCLR trains (the default). In training mode, with CPU-sized
            batches and runs, the saved moving statistics do not describe the network that was trained,
            and a frozen probe on it saw features far worse than random ones (README, "Pretraining").
        min_crop_area: Smallest fraction of the image area a random view crops.
    """

    image_size: int
    batch_size: int
    epochs: int
    learning_rate: float
    backbone: str = DEFAULT_BACKBONE
    profile: str = DEFAULT_PROFILE
    temperature: float = 0.2
    projection_dim: int = 64
    steps_per_epoch: int | None = None
    seed: int = 0
    freeze_batchnorm: bool = True
    min_crop_area: float = 0.3

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, BACKBONES)
        if self.batch_size < 2 or self.epochs < 1 or self.temperature <= 0 or self.learning_rate <= 0:
            raise InputError("SSL needs batch_size >= 2, epochs >= 1 and a positive temperature and learning rate")
        if not 0 < self.min_crop_area <= 1:
            raise InputError(f"min_crop_area must be in (0, 1], got {self.min_crop_area}")

    @classmethod
    def from_profile(cls, profile: str = DEFAULT_PROFILE, **overrides: Any) -> SSLConfig:
        """A configuration from the profile's ``ssl`` section (:mod:`lumbar.profiles`) and ``overrides``.

        ``None`` overrides are ignored.
        """
        settings = profile_settings(profile, "ssl")
        return cls(profile=profile, **{**settings, **{k: v for k, v in overrides.items() if v is not None}})


def nt_xent(z1, z2, temperature: float):  # type: ignore[no-untyped-def]
    """The NT-Xent loss of SimCLR: each view must pick its partner among the 2B - 1 other views."""
    import tensorflow as tf

    z = tf.math.l2_normalize(tf.concat([z1, z2], axis=0), axis=1)
    n = tf.shape(z1)[0]
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    logits = logits - tf.eye(2 * n) * 1e9  # a view is not its own partner
    labels = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def random_views(images, size: int, min_area: float = 0.3):  # type: ignore[no-untyped-def]
    """One random view per image: resized crop (``min_area``-100% of the area), flips, brightness/contrast, noise."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    scale = tf.sqrt(tf.random.uniform([batch], min_area, 1.0))
    y0 = tf.random.uniform([batch]) * (1 - scale)
    x0 = tf.random.uniform([batch]) * (1 - scale)
    boxes = tf.stack([y0, x0, y0 + scale, x0 + scale], axis=1)
    views = tf.image.crop_and_resize(images, boxes, tf.range(batch), (size, size))
    flip = tf.random.uniform([batch, 1, 1, 1]) < 0.5
    views = tf.where(flip, tf.reverse(views, axis=[2]), views)
    flip = tf.random.uniform([batch, 1, 1, 1]) < 0.5
    views = tf.where(flip, tf.reverse(views, axis=[1]), views)
    mean = tf.reduce_mean(views, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.uniform([batch, 1, 1, 1], 0.6, 1.4)
    brightness = tf.random.uniform([batch, 1, 1, 1], 0.6, 1.4)
    views = ((views - mean) * contrast + mean) * brightness
    views = views + tf.random.normal(tf.shape(views), stddev=6.0)
    return tf.clip_by_value(views, 0.0, 255.0)


def _encoder(config: SSLConfig):  # type: ignore[no-untyped-def]
    import keras

    from lumbar.models import ModelConfig, build_model

    base = build_model(ModelConfig(config.backbone, "none", "finetune", config.image_size, unfreeze_blocks=ALL_BLOCKS))
    if config.freeze_batchnorm:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # Keras 3: a frozen BatchNormalization layer runs in inference mode
    features = base.get_layer(BACKBONES[config.backbone].output_layer).output
    h = keras.layers.GlobalAveragePooling2D(name="ssl_pool")(features)
    h = keras.layers.Dense(256, activation="relu", name="ssl_projection_1")(h)
    z = keras.layers.Dense(config.projection_dim, name="ssl_projection_2")(h)
    return keras.Model(base.input, z, name=f"simclr_{config.backbone}")


def pretrain_ssl(
    shards: str | Path,
    out: str | Path,
    config: SSLConfig,
    resume: bool = False,
    track: bool = True,
    experiment: str = PRETRAIN_SSL_EXPERIMENT,
    replicas: int | None = None,
    tags: dict[str, str] | None = None,
) -> PretrainResult:
    """SimCLR pretraining on Dataset B shards; saves ``<out>/backbone``.

    On several GPUs (``replicas``, else ``$LUMBAR_REPLICAS``, else every GPU visible) each replica takes
    ``config.batch_size`` images a step and contrasts its views within its own batch (the negatives stay
    per replica, as on one GPU); gradients are averaged over the replicas and the learning rate scales
    linearly with them (:mod:`lumbar.distribute`). TensorFlow backend only.

    Args:
        shards: Dataset B folder or ``s3://`` URI.
        out: Output folder (``checkpoints/`` and ``backbone/``).
        config: SSL settings.
        resume: Continue a killed run from its last checkpoint.
        track: Log to MLflow.
        experiment: MLflow experiment.
        replicas: Data-parallel replicas (see above).
        tags: Extra MLflow tags (a pipeline puts its Kubeflow run id here).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from lumbar.dataset_b import fetch_shards, read_shards
    from lumbar.distribute import data_parallel, requested_replicas
    from lumbar.models import keras_session, save_backbone
    from lumbar.tracking import Tracker, standard_tags
    from lumbar.train import accelerator, deterministic

    out = Path(out)
    folder = out / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    local = fetch_shards(shards)
    index = json.loads((local / "index.json").read_text())
    state_path = folder / "state.json"
    state: dict[str, Any] = {"config": asdict(config), "epoch": 0, "history": [], "run_id": None}
    if resume and state_path.is_file():
        saved = json.loads(state_path.read_text())
        if saved["config"] != asdict(config):
            raise InputError(f"{out} holds an SSL run with another configuration; use a new --out")
        state = saved
    elif (out / "backbone" / BACKBONE_WEIGHTS).is_file() and not resume:
        raise InputError(f"{out} already holds a pretrained backbone; choose a new --out")

    # the seed, op determinism and float32 policy hold for the whole run and are restored after it
    with keras_session(config.seed, deterministic=deterministic(accelerator())):
        # variables are made in the strategy's scope (mirrored on every replica); the steps run through it below
        with data_parallel(requested_replicas(replicas)) as parallel:
            encoder = _encoder(config)
            optimizer = keras.optimizers.Adam(parallel.learning_rate(config.learning_rate))
            optimizer.build(encoder.trainable_variables)
            if state["epoch"]:
                encoder.load_weights(folder / "encoder.weights.h5")
                with np.load(folder / "optimizer.npz") as saved:
                    keys = sorted(saved.files, key=lambda k: int(k[4:]))
                    for variable, key in zip(optimizer.variables, keys, strict=True):
                        variable.assign(saved[key])
        batch = parallel.global_batch(config.batch_size)

        size = config.image_size
        data = read_shards(local, shuffle_seed=config.seed).shuffle(2048, seed=config.seed)
        if index["image_size"] != size:
            data = data.map(lambda x: tf.image.resize(x, (size, size)), num_parallel_calls=tf.data.AUTOTUNE)
        data = data.map(lambda x: tf.cast(x, tf.float32)).batch(batch, drop_remainder=True)
        if config.steps_per_epoch:
            data = data.take(config.steps_per_epoch)
        data = data.prefetch(tf.data.AUTOTUNE)

        def replica_step(images):  # type: ignore[no-untyped-def]
            with tf.GradientTape() as tape:
                z1 = encoder(random_views(images, size, config.min_crop_area), training=True)
                z2 = encoder(random_views(images, size, config.min_crop_area), training=True)
                loss = nt_xent(z1, z2, config.temperature)
                share = loss / parallel.count  # the optimizer sums the replicas' gradients: each adds its share
            grads = tape.gradient(share, encoder.trainable_variables)
            optimizer.apply(grads, encoder.trainable_variables)
            return loss

        if parallel.count == 1:
            step = tf.function(replica_step)
        else:
            strategy = parallel.strategy
            data = strategy.experimental_distribute_dataset(data)

            @tf.function
            def step(images):  # type: ignore[no-untyped-def]
                losses = strategy.run(replica_step, args=(images,))
                return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

        tracker = Tracker(experiment) if track else None

        def run_epochs(run: Any) -> None:
            if run is not None:
                state["run_id"] = run.run_id
                run.log_missing_epochs(state["history"])  # epochs checkpointed just before a kill
                if not state["epoch"]:
                    run.log_params(
                        {
                            **asdict(config),
                            "shards": str(shards),
                            "shard_images": index.get("images"),
                            "replicas": parallel.count,
                            "global_batch_size": batch,
                        }
                    )
            for epoch in range(state["epoch"], config.epochs):
                started, losses = time.perf_counter(), []
                for images in data:
                    losses.append(float(step(images)))
                if not losses:
                    raise InputError(f"{shards} holds fewer images than one batch of {batch}")
                record = {
                    "epoch": epoch + 1,
                    "loss": float(np.mean(losses)),
                    "epoch_seconds": time.perf_counter() - started,
                    "images_per_second": len(losses) * batch / (time.perf_counter() - started),
                }
                encoder.save_weights(folder / "encoder.weights.h5")
                np.savez(folder / "optimizer.npz", **{f"var_{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
                state["epoch"] = epoch + 1
                state["history"].append(record)
                tmp = folder / "state.json.tmp"
                tmp.write_text(json.dumps(state, indent=1))
                tmp.replace(state_path)
                if run is not None:
                    run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=epoch + 1)

        metadata = {
            "source": "ssl-simclr",
            "shards": str(shards),
            "shard_images": index.get("images"),
            "image_size": size,
            "temperature": config.temperature,
            "freeze_batchnorm": config.freeze_batchnorm,
        }
        if tracker is not None:
            with tracker.run(
                f"simclr-{config.backbone}",
                tags={**standard_tags(index["inputs_sha256"][:16]), **(tags or {})},
                run_id=state["run_id"],
            ) as run:
                run_epochs(run)
                save_backbone(encoder, config.backbone, out / "backbone", {**metadata, "run_id": run.run_id})
                run.log_artifact(out / "backbone", "backbone")
        else:
            run_epochs(None)
            save_backbone(encoder, config.backbone, out / "backbone", metadata)
        return PretrainResult(out / "backbone", state["run_id"], state["epoch"], state["history"])
