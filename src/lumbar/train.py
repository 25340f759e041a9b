"""Transfer-learning training of one configuration (backbone x mode x ROI), tracked in MLflow.

* Profiles: ``paper`` (the paper's hyper-parameters) and ``quick`` (CPU-sized for tests and the demos),
  both in :mod:`lumbar.profiles`; every value can be overridden (:meth:`TrainConfig.from_profile`).
* The weights of the epoch with the lowest validation error are kept (the paper's rule; ties go to the
  lower validation loss; ``monitor="val_loss"`` keeps the lowest loss instead).
* A checkpoint is written after every epoch (model with optimizer state, and the run's state), so a
  killed run continues where it stopped with ``resume=True``, in the same MLflow run.
* Params, per-epoch metrics (one batch per epoch), the final model (Keras flavour), the training
  curves and the dataset version go to MLflow (local SQLite store when no server is set).
* Seeds make a run reproducible on the CPU (op determinism is switched on there). Mixed precision
  (``mixed_float16``) and XLA are switched on automatically when a GPU is present, off on the CPU.

Output folder: ``model.keras`` (best epoch), ``model.json`` (config, best epoch, run id, dataset
version, device, mixed precision and XLA), ``history.csv``, ``curves.png``, and while the run is unfinished
``checkpoints/`` (``last.keras``, ``best.weights.h5``, ``state.json``; a run without augmentation fits its
head, or its top blocks, on outputs computed once and checkpoints their weights, ``best.head.weights.h5``
and ``last.head.weights.h5``), removed once the run is complete.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lumbar.backbones import BACKBONES, DEFAULT_BACKBONE, MODES, config_name
from lumbar.data import TARGET_CLASSES, TARGETS, InputConfig, SplitRecords, class_weights, make_dataset, split_records
from lumbar.errors import InputError, check_choice
from lumbar.models import ModelConfig, head_description, parse_unfreeze
from lumbar.procedures import TRAIN_EXPERIMENT
from lumbar.profiles import DEFAULT_PROFILE, PROFILE_NAMES, profile_settings

PRECISIONS = ("auto", "float32", "mixed_float16")
SWITCHES = ("auto", "on", "off")
#: Model selection: the epoch whose weights are kept. ``val_error`` (the paper: "the lowest error rate on the
#: validation set"; ties go to the lower validation loss, then the earlier epoch) or ``val_loss``.
MONITORS = ("val_error", "val_loss")
#: Class weights of the loss: ``none`` (the paper mentions none) or ``balanced`` (``n / (k * n_c)``).
CLASS_WEIGHTS = ("none", "balanced")


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration, built from a profile by :meth:`from_profile`.

    The profile-shaped settings have no defaults of their own: they come from :mod:`lumbar.profiles`.

    Attributes:
        backbone: One of :data:`lumbar.backbones.BACKBONES`.
        weights: ``imagenet``, ``none``, or a path / URI of a backbone saved by lumbar.
        mode: ``frozen`` (train the head) or ``finetune`` (also the top blocks).
        roi: Train on the ROI crops instead of the full images.
        target: ``binary`` (normal/abnormal, the paper), ``disc_state`` (four classes) or ``pfirrmann``
            (grades 1-5, datasets that have them: SPIDER).
        profile: The profile the defaults came from (recorded with the run).
        image_size: Input size in pixels.
        batch_size: Images per batch.
        epochs: Total epochs.
        learning_rate: Adam learning rate.
        dropout: Head dropout.
        unfreeze: The fine-tune rule: ``blocks:N`` (the backbone's top N blocks are trained in ``finetune``
            mode) or ``layers:N`` (its top N weighted layers); see :func:`lumbar.models.parse_unfreeze`.
        monitor: Model selection, one of :data:`MONITORS`: the epoch with the lowest validation error
            (ties: the lower validation loss, then the earlier epoch) or the lowest validation loss.
        class_weights: One of :data:`CLASS_WEIGHTS`: ``balanced`` weighs the loss by ``n / (k * n_c)``
            from the training labels, ``none`` leaves it unweighted.
        seed: Seed of weights initialisation, shuffling and augmentation.
        augment: Apply the paper's augmentation.
        precision: ``auto`` (mixed_float16 on a GPU), ``float32`` or ``mixed_float16``.
        jit: XLA compilation: ``auto`` (on a GPU), ``on`` or ``off``.
        standardize: Standardise the pooled features with their mean and variance over the training
            images (in ``frozen`` mode a linear probe that does not depend on the scale of a backbone's
            features, computed once; in ``finetune`` mode computed before training and again before each
            epoch's validation, so they follow the features as the top blocks change them).
        probe_epochs: ``finetune`` mode only: first fit the head alone on the backbone's pooled features
            (computed once, not augmented) for this many epochs at ``probe_learning_rate``, keep its epoch
            with the lowest validation error (then loss), and fine-tune from there. 0: the head starts
            random and trains with the top blocks, as the paper's procedure does.
        probe_learning_rate: Adam learning rate of that probe (the paper's frozen-mode rate).
        head_l2: L2 penalty on the head's output kernel (:class:`lumbar.models.ModelConfig`); 0 in the paper
            profile, which adds none.
    """

    image_size: int
    batch_size: int
    epochs: int
    learning_rate: float
    unfreeze: str
    monitor: str
    class_weights: str
    augment: bool
    standardize: bool
    probe_epochs: int
    head_l2: float
    backbone: str = DEFAULT_BACKBONE
    weights: str = "imagenet"
    mode: str = "frozen"
    roi: bool = False
    target: str = "binary"
    profile: str = DEFAULT_PROFILE
    dropout: float = 0.2
    seed: int = 0
    precision: str = "auto"
    jit: str = "auto"
    probe_learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("mode", self.mode, MODES)
        check_choice("target", self.target, TARGETS)
        check_choice("profile", self.profile, PROFILE_NAMES)
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise InputError("epochs and batch size must be at least 1 and the learning rate positive")
        if self.image_size < BACKBONES[self.backbone].min_size:
            raise InputError(f"{self.backbone} needs --image-size of at least {BACKBONES[self.backbone].min_size}")
        if self.precision not in PRECISIONS or self.jit not in SWITCHES:
            raise InputError(f"precision must be one of {PRECISIONS} and jit one of {SWITCHES}")
        try:
            parse_unfreeze(self.unfreeze)
        except InputError:
            raise InputError(f"--unfreeze must be blocks:N or layers:N with N >= 1, got {self.unfreeze!r}") from None
        check_choice("monitor", self.monitor, MONITORS)
        check_choice("class weights", self.class_weights, CLASS_WEIGHTS)
        if self.probe_epochs < 0 or self.probe_learning_rate <= 0:
            raise InputError("--probe-epochs must be 0 or more and the probe's learning rate positive")
        if not self.head_l2 >= 0:
            raise InputError("--head-l2 (head_l2) must be 0 or more")
        if self.probe_epochs and self.mode != "finetune":
            raise InputError("--probe-epochs fits the head before fine-tuning: use it with --mode finetune")

    @classmethod
    def from_profile(cls, profile: str = DEFAULT_PROFILE, **overrides: Any) -> TrainConfig:
        """A configuration from the profile's ``train`` section (:mod:`lumbar.profiles`) and ``overrides``.

        ``None`` overrides are ignored. The learning rate and the number of epochs follow the mode (frozen or
        fine-tune); a frozen run fits no head before training (``probe_epochs`` 0).
        """
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown training option(s) {', '.join(sorted(unknown))}")
        p = profile_settings(profile, "train")
        finetune = values.get("mode", "frozen") == "finetune"
        defaults = {
            "image_size": p["image_size"],
            "batch_size": p["batch_size"],
            "epochs": p["epochs_finetune"] if finetune else p["epochs_frozen"],
            "learning_rate": p["lr_finetune"] if finetune else p["lr_frozen"],
            "unfreeze": p["unfreeze"],
            "monitor": p["monitor"],
            "class_weights": p["class_weights"],
            "augment": p["augment"],
            "standardize": p["standardize"],
            "probe_epochs": p["probe_epochs"] if finetune else 0,
            "head_l2": p["head_l2"],
        }
        return cls(profile=profile, **{**defaults, **values})

    @property
    def run_name(self) -> str:
        """``<backbone>-<mode>-<roi|full>``, the name of the configuration's run."""
        return config_name(self.backbone, self.mode, self.roi)

    @property
    def head(self) -> str:
        """The classifier head, as one line (an MLflow param)."""
        return head_description(self.model_config())

    def model_config(self) -> ModelConfig:
        """The architecture part."""
        unit, count = parse_unfreeze(self.unfreeze)
        return ModelConfig(
            backbone=self.backbone,
            weights=self.weights,
            mode=self.mode,
            image_size=self.image_size,
            num_classes=TARGETS[self.target],
            dropout=self.dropout,
            unfreeze_blocks=count if unit == "blocks" else 0,
            unfreeze_layers=count if unit == "layers" else 0,
            standardize=self.standardize,
            head_l2=self.head_l2,
        )

    def input_config(self) -> InputConfig:
        """The input part."""
        return InputConfig(
            image_size=self.image_size,
            batch_size=self.batch_size,
            roi=self.roi,
            target=self.target,
            augment=self.augment,
            seed=self.seed,
        )


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    run_id: str | None
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    best_val_error: float | None = None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    fit_seconds: float = 0.0
    images_per_second: float = 0.0


def dataset_version(folder: str | Path) -> str:
    """The version id of a local dataset folder (from its ``SHA256SUMS``, else computed from its files)."""
    from lumbar.versions import INDEX, file_index, version_of

    index = Path(folder) / INDEX
    return version_of(index.read_text(encoding="utf-8") if index.is_file() else file_index(folder))


def selection_key(logs: dict[str, float], monitor: str) -> tuple[float, ...]:
    """What model selection minimises for one epoch's logs: ``(val_error, val_loss)`` or ``(val_loss,)``.

    An epoch replaces the best one only when its key is strictly smaller, so ties keep the earlier epoch.
    """
    loss = logs.get("val_loss", float("inf"))
    if monitor == "val_error":
        return (logs.get("val_error", float("inf")), loss)
    return (loss,)


def _epoch_logs(logs: dict | None) -> dict[str, float]:
    """An epoch's Keras logs as floats, with ``val_error`` (``1 - val_accuracy``) that model selection reads."""
    out = {k: float(v) for k, v in (logs or {}).items()}
    if "val_accuracy" in out:
        out["val_error"] = 1.0 - out["val_accuracy"]
    return out


def accelerator() -> str:
    """``gpu`` when TensorFlow sees a GPU, else ``cpu``."""
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def deterministic(device: str) -> bool:
    """Whether a run on ``device`` switches op determinism on: on the CPU (reproducible runs), not on a GPU.

    Training and pretraining share this rule (:func:`lumbar.models.keras_session` applies it).
    """
    return device == "cpu"


def _metrics(target: str) -> list:
    import keras

    if target == "binary":
        return [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.AUC(name="auc"),
        ]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def _first_batch(batch: int, images: int, replicas: int) -> int:
    """A batch size whose first batch splits evenly between the replicas.

    Keras builds a distributed model from the first batch averaged over the replicas, which fails when
    the replicas' shares differ, as they do when a split smaller than one batch (a small validation
    split) does not divide by the replicas. The batch size of evaluation does not change its metrics.
    """
    if replicas == 1 or images >= batch:
        return batch
    return max(replicas, images // replicas * replicas)


def _compile(model, config: TrainConfig, jit: bool, learning_rate: float | None = None) -> None:  # type: ignore[no-untyped-def]
    import keras

    loss = "binary_crossentropy" if config.target == "binary" else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate or config.learning_rate),
        loss=loss,
        metrics=_metrics(config.target),
        jit_compile=jit,
    )


#: A head fit on cached features checkpoints only its weights; ``last.keras`` then holds the model as it
#: was before the first epoch (the frozen backbone and the standardisation), saved once.
BEST_HEAD, LAST_HEAD = "best.head.weights.h5", "last.head.weights.h5"


class _EpochCheckpoint:
    """Keras callback (built lazily): checkpoint every epoch, keep the best weights, log metrics to MLflow."""

    def __new__(cls, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        import keras

        class Checkpoint(keras.callbacks.Callback):
            def __init__(self, folder: Path, state: dict, run: Any, head_only: bool = False) -> None:
                super().__init__()
                self.folder, self.state, self.run = folder, state, run
                # fitting a head on cached features: checkpoint its weights (kilobytes), not the whole model
                self.head_only = head_only
                self.epoch_start = 0.0

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.epoch_start = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = _epoch_logs({**(logs or {}), "epoch_seconds": time.perf_counter() - self.epoch_start})
                key = selection_key(logs, self.state["monitor"])
                best = self.state.get("best_key")
                if best is None or key < tuple(best):
                    self.state.update(
                        best_key=list(key),
                        best_val_loss=logs.get("val_loss", float("inf")),
                        best_val_error=logs.get("val_error"),
                        best_epoch=epoch + 1,
                    )
                    self.model.save_weights(self.folder / (BEST_HEAD if self.head_only else "best.weights.h5"))
                self.state["epoch"] = epoch + 1
                self.state["history"].append({"epoch": epoch + 1, **logs})
                if self.head_only:
                    self.model.save_weights(self.folder / "last.head.tmp.weights.h5")
                    os.replace(self.folder / "last.head.tmp.weights.h5", self.folder / LAST_HEAD)
                else:
                    self.model.save(self.folder / "last.keras.tmp.keras")
                    os.replace(self.folder / "last.keras.tmp.keras", self.folder / "last.keras")
                tmp = self.folder / "state.json.tmp"
                tmp.write_text(json.dumps(self.state, indent=1))
                os.replace(tmp, self.folder / "state.json")
                if self.run is not None:
                    self.run.log_metrics(logs, step=epoch + 1)

        return Checkpoint(*args, **kwargs)


class _CachedHead(NamedTuple):
    """The trained part of a model as a model of its own, and the frozen part's outputs it trains on.

    The part's layers are the model's own, so fitting it trains the model.
    """

    head: Any
    train: tuple[np.ndarray, np.ndarray]  # the frozen part's outputs and the labels of the training split
    val: tuple[np.ndarray, np.ndarray]


def _head_on_features(  # type: ignore[no-untyped-def]
    model, dataset: Path, inputs: InputConfig, train: SplitRecords, val: SplitRecords, top: _CachedHead | None = None
) -> _CachedHead:
    """The head of ``model`` and the pooled features of the train and val splits (computed once, not augmented).

    With ``top`` (a fine-tuned run's top on the frozen trunk's cached outputs, :func:`_top_on_trunk`), the
    features come from those outputs through the top's layers up to the pooling, not from another pass of
    the images through the whole model.
    """
    import keras

    from lumbar.models import HEAD_POOL_LAYER, pooled_features

    pooled = pooled_features(model) if top is None else _trunk_to_pool(model)
    names = [layer.name for layer in model.layers]
    after = model.layers[names.index(HEAD_POOL_LAYER) + 1 :]
    features_in = keras.Input(pooled.output.shape[1:], name="features")
    x = features_in
    for layer in after:
        x = layer(x)
    head = keras.Model(features_in, x, name=f"{model.name}_head")

    def split(name: str, records: SplitRecords, outputs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        source = make_dataset(dataset, name, inputs, records=records) if outputs is None else outputs
        return pooled.predict(source, verbose=0), records.targets(inputs.target)

    return _CachedHead(
        head,
        split("train", train, None if top is None else top.train[0]),
        split("val", val, None if top is None else top.val[0]),
    )


#: The most memory the frozen part's outputs may take for a fine-tuned run to fit its top on them (train
#: and val splits together); above it the run passes its images through the whole model every epoch.
TRUNK_CACHE_BYTES = 2 * 1024**3


def _trainable_start(model):  # type: ignore[no-untyped-def]
    """The input tensor of ``model``'s first layer with trainable weights (None when nothing trains)."""
    first = next((layer for layer in model.layers if layer.trainable_weights), None)
    return None if first is None else first.input


def _trunk_to_pool(model):  # type: ignore[no-untyped-def]
    """``model`` from the input of its first trainable layer to its pooled features (the top, without its head)."""
    import keras

    from lumbar.models import HEAD_POOL_LAYER

    return keras.Model(_trainable_start(model), model.get_layer(HEAD_POOL_LAYER).output)


def _top_on_trunk(  # type: ignore[no-untyped-def]
    model, dataset: Path, inputs: InputConfig, train: SplitRecords, val: SplitRecords
) -> _CachedHead | None:
    """The trainable top of a fine-tuned ``model`` and the frozen trunk's outputs for the train and val splits.

    Without augmentation the frozen lower blocks (their BatchNormalization in inference mode) give the same
    output for an image every epoch: computed once, each epoch then runs only the top blocks and the head.
    None when the top does not hang on one tensor of the trunk, or the outputs would not fit
    :data:`TRUNK_CACHE_BYTES`.
    """
    import keras

    cut = _trainable_start(model)
    if cut is None or isinstance(cut, (list, tuple, dict)):
        return None
    if float(np.prod(cut.shape[1:])) * 4 * (len(train.paths) + len(val.paths)) > TRUNK_CACHE_BYTES:
        return None
    try:
        top = keras.Model(cut, model.output, name=f"{model.name}_top")
    except ValueError:  # the top also reads a tensor from below the cut (a skip connection around it)
        return None
    trunk = keras.Model(model.input, cut)

    def split(name: str, records: SplitRecords) -> tuple[np.ndarray, np.ndarray]:
        outputs = trunk.predict(make_dataset(dataset, name, inputs, records=records), verbose=0)
        return outputs, records.targets(inputs.target)

    return _CachedHead(top, split("train", train), split("val", val))


class _Restandardize:
    """Keras callback (built lazily): before each validation, set ``head_norm`` from the current training features.

    The features are the training images' pooled features as the model now computes them. Fine-tuning
    changes them under a head that reads them standardised; with statistics fixed before the first epoch,
    a small coherent change of the top blocks is a large one in standardised units, and the head's
    threshold no longer sits between the classes although their order holds. With the
    statistics refreshed, each epoch is validated, kept and saved with statistics that describe it.

    Args:
        model: The model (built with ``standardize=True``).
        pooled: A model that computes the pooled features (sharing ``model``'s layers) from ``inputs``.
        inputs: The training split as ``pooled`` reads it: the trunk's cached outputs, or the images.
    """

    def __new__(cls, model: Any, pooled: Any, inputs: Any):  # type: ignore[no-untyped-def]
        import keras

        from lumbar.models import set_head_norm

        class Restandardize(keras.callbacks.Callback):
            def on_test_begin(self, logs: dict | None = None) -> None:
                set_head_norm(model, pooled.predict(inputs, verbose=0))

        return Restandardize()


def _fit_probe(  # type: ignore[no-untyped-def]
    probe: _CachedHead, config: TrainConfig, jit: bool, weights: dict[int, float] | None, batch_size: int
) -> dict[str, Any]:
    """Fit the head alone on cached features for ``config.probe_epochs`` epochs; keep its best epoch's weights.

    The best epoch is chosen as the fine-tuning's (:func:`selection_key`, ``config.monitor``). The head's
    layers are the model's own, so the model fine-tunes from the kept head.

    Returns:
        The probe's ``epochs``, ``best_epoch``, ``val_loss`` and ``val_error`` (recorded with the run).
    """
    import keras

    best: dict[str, Any] = {"key": None}

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = _epoch_logs(logs)
            key = selection_key(logs, config.monitor)
            if best["key"] is None or key < best["key"]:
                best.update(key=key, epoch=epoch + 1, logs=logs, weights=self.model.get_weights())

    _compile(probe.head, config, jit, learning_rate=config.probe_learning_rate)
    probe.head.fit(
        *probe.train,
        batch_size=batch_size,
        validation_data=probe.val,
        epochs=config.probe_epochs,
        class_weight=weights,
        callbacks=[KeepBest()],
        verbose=0,
        shuffle=True,
    )
    probe.head.set_weights(best["weights"])
    logs = best["logs"]
    return {
        "epochs": config.probe_epochs,
        "best_epoch": best["epoch"],
        "val_loss": logs.get("val_loss"),
        "val_error": logs.get("val_error"),
    }


def _write_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, [h.get(key) for h in history], marker="o", label=f"train {key}")
        ax.plot(epochs, [h.get(f"val_{key}") for h in history], marker="o", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_history(history: list[dict], path: Path) -> None:
    keys = sorted({k for h in history for k in h} - {"epoch"})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for h in history:
            writer.writerow([h["epoch"], *(h.get(k, "") for k in keys)])


def read_history(path: Path) -> list[dict[str, float]]:
    """A run's ``history.csv`` (written by :func:`_write_history`): one dict per epoch, blank cells left out."""
    with path.open() as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def train_model(
    config: TrainConfig,
    dataset: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    experiment: str = TRAIN_EXPERIMENT,
    parent_run_id: str | None = None,
    track: bool = True,
    verbose: int = 0,
    register_as: str | None = None,
    tags: dict[str, str] | None = None,
    replicas: int | None = None,
) -> TrainResult:
    """Train one configuration and save the best-validation-loss model.

    Args:
        config: The configuration.
        dataset: A dataset folder, or a published version URI (fetched into the cache once).
        out_dir: Output folder (see the module docstring).
        resume: Continue a killed run from its last checkpoint (same configuration required).
        experiment: MLflow experiment.
        parent_run_id: Nest the run under this MLflow run (a pipeline run).
        track: Log to MLflow (on by default; off only for benchmarks).
        verbose: Keras ``fit`` verbosity.
        register_as: Register the final model under this name with the alias ``candidate``.
        tags: Extra MLflow tags (a pipeline puts its procedure and weights source here).
        replicas: Data-parallel replicas (GPUs); None reads ``$LUMBAR_REPLICAS``, 0 takes every GPU
            visible (:mod:`lumbar.distribute`). ``config.batch_size`` is per replica and the learning
            rate scales linearly with the replicas.

    Raises:
        InputError: For a bad dataset, or a resume whose folder holds another configuration.
    """
    import keras

    from lumbar.distribute import data_parallel, requested_replicas
    from lumbar.models import adapt_head_norm, build_model, keras_session, pooled_features, set_head_norm
    from lumbar.tracking import Tracker, standard_tags
    from lumbar.versions import fetch_dataset

    out = Path(out_dir)
    folder = out / "checkpoints"
    state_path = folder / "state.json"
    resuming = resume and state_path.is_file() and (folder / "last.keras").is_file()
    if (out / "model.keras").exists() and not resume:
        raise InputError(f"{out} already holds a trained model; choose a new --out (or --resume a killed run)")
    if not resuming and (out / "model.keras").exists() and (out / "model.json").exists():
        # resuming a run that completed (and removed its checkpoints): nothing to do, no dataset to fetch
        return _finished(out, config)
    local = fetch_dataset(dataset)
    version = dataset_version(local)
    state: dict[str, Any] = {
        "config": asdict(config),
        "epoch": 0,
        "best_epoch": 0,
        "best_val_loss": float("inf"),
        "best_val_error": None,
        "best_key": None,
        "monitor": config.monitor,
        "history": [],
        "run_id": None,
        "dataset_version": version,
    }
    if resuming:
        state = json.loads(state_path.read_text())
        _check_same_config(state["config"], config, out)
    folder.mkdir(parents=True, exist_ok=True)

    device = accelerator()
    mixed = config.precision == "mixed_float16" or (config.precision == "auto" and device == "gpu")
    jit = config.jit == "on" or (config.jit == "auto" and device == "gpu")
    with ExitStack() as session:  # Keras' global state and the data-parallel scope, restored on the way out
        session.enter_context(
            keras_session(
                config.seed, deterministic=deterministic(device), precision="mixed_float16" if mixed else "float32"
            )
        )
        parallel = session.enter_context(data_parallel(requested_replicas(replicas)))
        inputs = replace(config.input_config(), batch_size=parallel.global_batch(config.batch_size))
        train_records = split_records(local, "train", config.roi, config.target)
        train_ds = make_dataset(local, "train", inputs, training=True, records=train_records)
        val_records = split_records(local, "val", config.roi, config.target)
        val_batch = _first_batch(inputs.batch_size, len(val_records.paths), parallel.count)
        val_ds = make_dataset(local, "val", replace(inputs, batch_size=val_batch), records=val_records)
        weights = (
            class_weights(train_records.labels, TARGETS[config.target]) if config.class_weights == "balanced" else None
        )

        model = keras.models.load_model(folder / "last.keras") if resuming else build_model(config.model_config())
        # a frozen backbone seen without augmentation gives the same features every epoch (its BatchNorm
        # runs in inference mode): compute them once and fit only the head on them
        cached = None
        if config.mode == "frozen" and not config.augment and parallel.count == 1:
            cached = _head_on_features(model, local, inputs, train_records, val_records)
        # fine-tuned without augmentation, the frozen lower blocks' outputs do not change either: the epochs
        # train the top blocks and the head on them (same function, same weights; the saved model is whole)
        elif config.mode == "finetune" and not config.augment and parallel.count == 1:
            cached = _top_on_trunk(model, local, inputs, train_records, val_records)
        # fine-tuning from a fitted head: the probe's features, computed once like a frozen run's
        plain = replace(inputs, augment=False)
        probe = None
        if config.probe_epochs and not resuming:  # from the trunk's cached outputs where the top has them
            probe = _head_on_features(model, local, plain, train_records, val_records, top=cached)
        if not resuming:
            features = (cached if config.mode == "frozen" else None) or probe
            if config.standardize and features is not None:
                set_head_norm(model, features.train[0])
            elif config.standardize:
                adapt_head_norm(model, make_dataset(local, "train", plain, records=train_records))
            if probe is not None:
                state["probe"] = _fit_probe(probe, config, jit, weights, inputs.batch_size)
            _compile(model, config, jit, learning_rate=parallel.learning_rate(config.learning_rate))
        if cached is not None:
            _compile(cached.head, config, jit, learning_rate=parallel.learning_rate(config.learning_rate))
            if not resuming:
                model.save(folder / "last.keras")  # the frozen part, once; the head's epochs go to LAST_HEAD
            elif (folder / LAST_HEAD).is_file():
                cached.head.load_weights(folder / LAST_HEAD)

        # fine-tuning moves the features under a standardised head: its statistics follow them (each epoch)
        refresh = []
        if config.mode == "finetune" and config.standardize:
            if cached is not None:
                refresh = [_Restandardize(model, _trunk_to_pool(model), cached.train[0])]
            else:
                images = make_dataset(local, "train", plain, records=train_records)
                refresh = [_Restandardize(model, pooled_features(model), images)]

        tracker = Tracker(experiment) if track else None
        # Keras drops XLA where it cannot honour it (with op determinism, switched on for the CPU): record
        # what the run really uses
        runtime = {
            "device": device,
            "mixed_precision": mixed,
            "xla": bool(model.jit_compile),
            "replicas": parallel.count,
            "global_batch_size": inputs.batch_size,
            "cached_features": cached is not None,
            "scaled_learning_rate": parallel.learning_rate(config.learning_rate),
        }
        params = {
            **asdict(config),
            "head": config.head,
            "dataset": str(dataset),
            "dataset_version": version,
            **runtime,
            "train_images": len(train_records.paths),
        }
        tags = {**standard_tags(version), "lumbar.config": config.run_name, **(tags or {})}
        started = time.perf_counter()
        epochs_before = state["epoch"]
        timing = {"fit": 0.0}

        def fit(run: Any) -> None:
            if run is not None and not resuming:
                run.log_params(params)
            if run is not None:
                state["run_id"] = run.run_id
                run.log_missing_epochs(state["history"])  # epochs checkpointed just before a kill
            if state["epoch"] < config.epochs:
                fit_started = time.perf_counter()
                if cached is not None:  # not augmented: fit the head (frozen) or the top (finetune) on cached outputs
                    cached.head.fit(
                        *cached.train,
                        batch_size=inputs.batch_size,
                        validation_data=cached.val,
                        epochs=config.epochs,
                        initial_epoch=state["epoch"],
                        class_weight=weights,
                        callbacks=[*refresh, _EpochCheckpoint(folder, state, run, head_only=True)],
                        verbose=verbose,
                        shuffle=True,
                    )
                else:
                    model.fit(
                        train_ds,
                        validation_data=val_ds,
                        epochs=config.epochs,
                        initial_epoch=state["epoch"],
                        class_weight=weights,
                        callbacks=[*refresh, _EpochCheckpoint(folder, state, run)],
                        verbose=verbose,
                        shuffle=False,
                    )
                timing["fit"] = time.perf_counter() - fit_started

        if tracker is not None:
            with tracker.run(config.run_name, parent=parent_run_id, tags=tags, run_id=state["run_id"]) as run:
                fit(run)
                result = _finish(model, config, state, out, version, run, register_as, runtime, cached)
        else:
            fit(None)
            result = _finish(model, config, state, out, version, None, None, runtime, cached)
        # the run is complete (model, history, MLflow): its checkpoints only served a resume, and hold the
        # model again two or three times over (the optimizer's moments included)
        shutil.rmtree(folder, ignore_errors=True)
        result.seconds = time.perf_counter() - started
        trained_epochs = state["epoch"] - epochs_before
        result.fit_seconds = timing["fit"]
        result.images_per_second = trained_epochs * len(train_records.paths) / timing["fit"] if timing["fit"] else 0.0
        return result


def _check_same_config(saved: dict, config: TrainConfig, out: Path) -> None:
    """Raise InputError unless ``saved`` (a run's recorded configuration) is ``config``: a resume continues one run.

    A field added since the run was recorded counts with the value of the profile the run recorded.
    """
    known = {f.name for f in fields(TrainConfig)}
    recorded = TrainConfig.from_profile(saved.get("profile", DEFAULT_PROFILE), mode=saved.get("mode"))
    if {**asdict(recorded), **{k: v for k, v in saved.items() if k in known}} != asdict(config):
        raise InputError(f"{out} holds a run with another configuration; use a new --out or the same options")


def _finished(out: Path, config: TrainConfig) -> TrainResult:
    """The result of a run that completed in ``out``, read back from its ``model.json`` and ``history.csv``.

    Raises:
        InputError: If that run had another configuration.
    """
    info = json.loads((out / "model.json").read_text())
    _check_same_config(info["config"], config, out)
    history = read_history(out / "history.csv")
    return TrainResult(
        out,
        info["run_id"],
        info["best_epoch"],
        info["best_val_loss"],
        info["epochs"],
        info.get("best_val_error"),
        history,
    )


def _finish(
    model,
    config: TrainConfig,
    state: dict,
    out: Path,
    version: str,
    run: Any,  # type: ignore[no-untyped-def]
    register_as: str | None,
    runtime: dict[str, Any],
    cached: _CachedHead | None = None,
) -> TrainResult:
    """Restore the best epoch, save the model and its description, log the final artifacts."""
    folder = out / "checkpoints"
    if cached is not None and (folder / BEST_HEAD).is_file():
        cached.head.load_weights(folder / BEST_HEAD)  # the head's layers are the model's own
    elif (folder / "best.weights.h5").is_file():
        model.load_weights(folder / "best.weights.h5")
    model.save(out / "model.keras")
    history = state["history"]
    _write_history(history, out / "history.csv")
    _write_curves(history, out / "curves.png")
    info = {
        "config": asdict(config),
        "monitor": config.monitor,
        "best_epoch": state["best_epoch"],
        "best_val_loss": state["best_val_loss"],
        "best_val_error": state.get("best_val_error"),
        "epochs": state["epoch"],
        "probe": state.get("probe"),
        "run_id": run.run_id if run is not None else None,
        "dataset_version": version,
        **runtime,
        "classes": list(TARGET_CLASSES[config.target]),
    }
    (out / "model.json").write_text(json.dumps(info, indent=2))
    if run is not None:
        best = {"best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"]}
        if state.get("best_val_error") is not None:
            best["best_val_error"] = state["best_val_error"]
        probe = state.get("probe") or {}
        best.update({f"probe_{k}": v for k, v in probe.items() if k != "epochs" and v is not None})
        run.log_metrics(best)
        for name in ("curves.png", "history.csv", "model.json"):
            run.log_artifact(out / name)
        run.log_keras_model(model, registered_name=register_as, alias="candidate" if register_as else None)
    return TrainResult(
        out,
        info["run_id"],
        state["best_epoch"],
        state["best_val_loss"],
        state["epoch"],
        state.get("best_val_error"),
        history,
    )
