"""``lumbar train | evaluate | predict | gradcam``: the training and evaluation core."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.backbones import DEFAULT_BACKBONE
from lumbar.cli._common import clear_errors, load_tensorflow
from lumbar.cli.options import BACKBONE, BATCH_SIZE, EPOCHS, IMAGE_SIZE, LEARNING_RATE, PROFILE, RESUME, SEED, TRACK
from lumbar.procedures import TRAIN_EXPERIMENT
from lumbar.profiles import DEFAULT_PROFILE


def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset folder or published version URI.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder of the model.")],
    backbone: BACKBONE = DEFAULT_BACKBONE,
    weights: Annotated[
        str, typer.Option(help="imagenet | none | PATH or s3:// URI of a backbone saved by lumbar.")
    ] = "imagenet",
    mode: Annotated[str, typer.Option(help="frozen (train the head) | finetune (also the top blocks).")] = "frozen",
    roi: Annotated[bool, typer.Option("--roi/--full", help="Train on the ROI crops or the full images.")] = False,
    profile: PROFILE = DEFAULT_PROFILE,
    epochs: EPOCHS = None,
    batch_size: BATCH_SIZE = None,
    image_size: IMAGE_SIZE = None,
    learning_rate: LEARNING_RATE = None,
    unfreeze: Annotated[
        str | None,
        typer.Option(help="Finetune mode trains the backbone's top blocks:N or layers:N (default: the profile's)."),
    ] = None,
    monitor: Annotated[
        str | None,
        typer.Option(help="Keep the epoch with the lowest val_error (ties: lower val_loss) | val_loss (profile)."),
    ] = None,
    class_weights: Annotated[
        str | None, typer.Option(help="none | balanced (n / (k * n_class)) loss weights (profile: paper none).")
    ] = None,
    target: Annotated[
        str, typer.Option(help="binary (normal/abnormal) | disc_state (4 classes) | pfirrmann (grades 1-5).")
    ] = "binary",
    augment: Annotated[
        bool | None, typer.Option("--augment/--no-augment", help="The paper's augmentation (default: the profile's).")
    ] = None,
    seed: SEED = 0,
    precision: Annotated[str, typer.Option(help="auto | float32 | mixed_float16")] = "auto",
    jit: Annotated[str, typer.Option(help="XLA: auto | on | off")] = "auto",
    standardize: Annotated[
        bool | None,
        typer.Option(
            "--standardize/--no-standardize",
            help="Standardise the pooled features with the training images' mean and variance, computed "
            "before training and, when fine-tuning, again each epoch (default: the profile's).",
        ),
    ] = None,
    probe_epochs: Annotated[
        int | None,
        typer.Option(
            help="Finetune mode: fit the head alone on the frozen features for N epochs first (0: a random head, "
            "as the paper; default: the profile's, quick 30)."
        ),
    ] = None,
    head_l2: Annotated[
        float | None,
        typer.Option(
            help="L2 penalty on the head's output weights, added to the mean loss (0: none, as the paper; "
            "default: the profile's)."
        ),
    ] = None,
    resume: RESUME = False,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = TRAIN_EXPERIMENT,
    register: Annotated[str | None, typer.Option(help="Register the model under this name (alias candidate).")] = None,
    track: TRACK = True,
    verbose: Annotated[int, typer.Option(help="Keras fit verbosity (0, 1, 2).")] = 2,
) -> None:
    """Train one configuration (backbone x mode x ROI) and keep the best epoch (--monitor)."""
    load_tensorflow()
    from lumbar.steps.options import config_from_profile
    from lumbar.train import TrainConfig, train_model

    with clear_errors():
        config = config_from_profile(TrainConfig, profile, locals())  # the options named like its fields
        result = train_model(
            config,
            dataset,
            out,
            resume=resume,
            experiment=experiment,
            track=track,
            verbose=verbose,
            register_as=register,
        )
    error = "" if result.best_val_error is None else f"val_error {result.best_val_error:.4f}, "
    typer.echo(
        f"trained {config.run_name}: best epoch {result.best_epoch} of {result.epochs_run} by {config.monitor} "
        f"({error}val_loss {result.best_val_loss:.4f}); model in {out / 'model.keras'}"
        + (f"; MLflow run {result.run_id}" if result.run_id else "")
    )


def evaluate(
    model: Annotated[Path, typer.Option("--model", help="A model folder written by lumbar train.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset folder or published version URI.")],
    split: Annotated[
        str, typer.Option(help="train | val | test | all (every labelled image: a dataset of unseen patients)")
    ] = "test",
    positive: Annotated[
        str,
        typer.Option(
            help="abnormal (the clinical convention) | normal (the paper's): the class precision, recall and F1 "
            "call positive in this table; both views are recorded."
        ),
    ] = "abnormal",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <model>/eval-<split>).")] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to the model's MLflow run.")] = True,
) -> None:
    """Accuracy, precision, recall, F1, ROC-AUC, confusion matrix and per-disc results, in both positive views."""
    load_tensorflow()
    from rich.console import Console
    from rich.table import Table

    from lumbar.evaluate import evaluate_model
    from lumbar.metrics import METRICS, POSITIVES, confusion_matrix, majority_f1, view_key

    with clear_errors():
        result = evaluate_model(model, dataset, split, out, track=track, positive=positive)
    metrics = result.metrics
    n = int((metrics.get("binary") or metrics)["support"])
    # the title as its own line: a table title wraps at the console's width, splitting the model's path
    typer.echo(f"{model} on {split} ({n} images), positive class: {positive}")
    table = Table()
    table.add_column("scope")
    for metric in METRICS:
        table.add_column(metric.title, justify="right")
    table.add_column("ROC-AUC", justify="right")

    def fmt(value: object) -> str:
        return "-" if value is None else f"{value:.4f}"  # type: ignore[str-format]

    keys = (*(m.name for m in METRICS), "roc_auc")
    table.add_row("all", *(fmt(metrics.get(k)) for k in keys))
    for level, values in result.per_disc.items():
        table.add_row(level, *(fmt(values.get(k)) for k in keys))
    Console().print(table)
    for view in POSITIVES:
        positives = int(metrics[view_key(view, "positives")])
        typer.echo(
            f"{view} positive: F1 {metrics[view_key(view, 'f1')]:.4f}, precision "
            f"{metrics[view_key(view, 'precision')]:.4f}, recall {metrics[view_key(view, 'recall')]:.4f} "
            f"({positives} of {n} {view}; majority-class F1 {majority_f1(n, positives):.4f})"
        )
    classes, matrix = confusion_matrix(metrics)
    rows = "; ".join(
        f"true {c}: " + ", ".join(f"{v} {p}" for v, p in zip(r, classes, strict=True))
        for c, r in zip(classes, matrix, strict=True)
    )
    typer.echo(f"confusion (predicted): {rows}; files in {result.out_dir}")
    if "kappa_linear" in metrics:  # --target pfirrmann: agreement on the ordered grades, beside published results
        from lumbar.metrics import pfirrmann_lines

        for text in pfirrmann_lines(metrics, n):
            typer.echo(text)


def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG or JPEG, any size; converted to grey).")],
    model: Annotated[Path, typer.Option("--model", help="A model folder written by lumbar train.")],
) -> None:
    """Print the predicted class and its probability for each image."""
    load_tensorflow()
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from lumbar.errors import InputError
    from lumbar.models import load_model, read_model_info

    with clear_errors():
        info = read_model_info(model)
        size = info["config"]["image_size"]
        arrays = []
        for path in images:
            try:
                with Image.open(path) as image:
                    arrays.append(np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32))
            except (OSError, UnidentifiedImageError) as exc:
                raise InputError(f"{path} is not a readable image ({exc.__class__.__name__})") from None
        outputs = np.asarray(load_model(model).predict(np.stack(arrays)[..., None], verbose=0))
    classes = info["classes"]
    for path, output in zip(images, outputs, strict=True):
        if output.shape[-1] == 1:
            p = float(output[0])
            label, prob = (classes[1], p) if p >= 0.5 else (classes[0], 1 - p)
        else:
            index = int(output.argmax())
            label, prob = classes[index], float(output[index])
        typer.echo(f"{path}\t{label}\t{prob:.4f}")


def gradcam(
    model: Annotated[Path, typer.Option("--model", help="A model folder written by lumbar train.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset folder or published version URI.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (PNG files and index.html).")],
    n: Annotated[int, typer.Option("--n", help="Number of images.")] = 8,
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
) -> None:
    """Grad-CAM heat maps over n images, as PNG files and one HTML page."""
    load_tensorflow()
    from lumbar.gradcam import gradcam_report

    with clear_errors():
        page = gradcam_report(model, dataset, out, n=n, split=split)
    typer.echo(f"wrote {page}")
