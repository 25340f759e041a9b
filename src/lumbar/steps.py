"""One function per pipeline step: what a Kubeflow component calls, in plain Python.

Components (``components/``) stay thin: they turn their typed artifacts into paths, call one function
here, and write what it returns into their output artifacts. Everything a step needs beyond that lives
here, so it is tested without kfp and reused by the CLI and the benchmarks:

* inputs given as URIs (a local folder, ``file://``, or ``s3://bucket/prefix``) are staged to a local
  folder first (downloaded once into ``<data dir>/cache/staging``);
* tracking is on when ``MLFLOW_TRACKING_URI`` is set (a cluster's config map, or ``lumbar pipeline
  run --local``), and every MLflow run carries the Kubeflow run id (tag ``kfp.run_id``) and the
  procedure;
* numbers passed as ``0`` mean "the profile's default" (pipeline parameters are flat primitives);
* what a later step needs travels as flat artifact metadata (:func:`evaluation_row`).

This module never imports kfp.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumbar.errors import InputError
from lumbar.paths import data_dir

#: Store root for published datasets when a step is not given one (set by the cluster's config map).
STORE_ENV = "LUMBAR_STORE_URI"


def tracking_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Steps log to MLflow only when ``MLFLOW_TRACKING_URI`` is set."""
    env = os.environ if environ is None else environ
    return bool(env.get("MLFLOW_TRACKING_URI"))


@contextmanager
def kfp_run(run_id: str) -> Iterator[None]:
    """Make ``run_id`` the Kubeflow run id that :func:`lumbar.tracking.standard_tags` puts on MLflow runs."""
    previous = os.environ.get("KFP_RUN_ID")
    if run_id:
        os.environ["KFP_RUN_ID"] = run_id
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("KFP_RUN_ID", None)
        else:
            os.environ["KFP_RUN_ID"] = previous


def _none_if_zero(**values: int | float) -> dict[str, int | float | None]:
    return {k: (v or None) for k, v in values.items()}


def split_list(text: str, what: str) -> list[str]:
    """Split a comma-separated pipeline parameter into its non-empty items.

    Raises:
        InputError: When nothing is left.
    """
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise InputError(f"{what} is empty; give a comma-separated list")
    return items


def _stage(uri: str, folder: bool) -> Path:
    from lumbar.storage import is_remote, open_store

    kind = "folder" if folder else "file"
    if not is_remote(uri):
        path = Path(uri.removeprefix("file://"))
        if not (path.is_dir() if folder else path.is_file()):
            raise InputError(f"{uri} is not a {kind}")
        return path
    target = data_dir() / "cache" / "staging" / hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    if folder:
        open_store(uri).get_tree("", target)  # unchanged files are skipped on a second run
        return target
    parent, _, name = uri.rstrip("/").rpartition("/")
    return open_store(parent).get_file(name, target / name)


def stage_folder(uri: str) -> Path:
    """A local folder holding the tree at ``uri`` (returned as is when it is already local).

    Remote trees are downloaded once into ``<data dir>/cache/staging``.

    Raises:
        InputError: When a local folder does not exist.
    """
    return _stage(uri, folder=True)


def stage_file(uri: str) -> Path:
    """A local copy of the file at ``uri`` (returned as is when it is already local).

    Raises:
        InputError: When a local file does not exist.
    """
    return _stage(uri, folder=False)


def _copy_tree(source: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, out, dirs_exist_ok=True)


# --- datasets -------------------------------------------------------------------------------------


def build_dataset_c_step(
    export_uri: str,
    out: str | Path,
    labels_uri: str = "",
    publish_to: str = "",
    split_by: str = "patient",
    seed: int = 0,
    workers: int = 1,
    fractions: str = "",
) -> dict[str, Any]:
    """Build Dataset C from a DICOM export into ``out``, and publish it as a version when a store is given.

    Args:
        export_uri: The PACS export (folder or ``s3://`` prefix).
        out: The dataset folder to write (a ``Dataset`` artifact's path).
        labels_uri: The grading CSV (default: ``labels.csv`` inside the export).
        publish_to: Store root to publish the version to (default: ``$LUMBAR_STORE_URI``; none: not published).
        split_by: ``patient`` or ``image``.
        seed: Split seed.
        workers: Decoding processes.
        fractions: Train, validation and test shares as ``"0.75,0.15,0.10"`` (empty: the build's default).

    Returns:
        Flat metadata: counts, the dataset version, and the published URI when published.

    Raises:
        InputError: When nothing usable (no labelled image) was built.
    """
    from lumbar.dataset_c import BuildConfig, build_dataset_c
    from lumbar.versions import file_index, publish_dataset, version_of

    source = stage_folder(export_uri)
    labels = stage_file(labels_uri) if labels_uri else source / "labels.csv"
    try:
        shares = {"fractions": tuple(float(part) for part in fractions.split(","))} if fractions else {}
    except ValueError:
        raise InputError(f"fractions {fractions!r} must be three numbers, e.g. 0.75,0.15,0.10") from None
    config = BuildConfig(
        source=source,
        out=Path(out),
        labels=labels if labels.is_file() else None,
        split_by=split_by,
        seed=seed,
        workers=workers,
        **shares,  # type: ignore[arg-type]
    )
    result = build_dataset_c(config)
    if not result.usable:
        raise InputError(f"nothing usable was built from {export_uri} (no labelled images); see {out}/report.json")
    info: dict[str, Any] = {
        "patients": result.patients,
        "images": result.images,
        "labelled_images": result.labelled_images,
        "problems": result.problems,
        "version": version_of(file_index(out)),
    }
    store = publish_to or os.environ.get(STORE_ENV, "")
    if store:
        published = publish_dataset(out, store, "dataset-c")
        info["published_uri"] = published.uri
    return info


def fetch_dataset_step(uri: str, out: str | Path) -> dict[str, Any]:
    """Copy the dataset at ``uri`` (folder or published version) into ``out``; returns its version."""
    from lumbar.versions import fetch_dataset, file_index, version_of

    local = fetch_dataset(uri)
    _copy_tree(local, Path(out))
    return {"source_uri": uri, "version": version_of(file_index(out))}


def build_dataset_a_step(
    sources: str, out: str | Path, mapping_uri: str = "", seed: int = 0, max_size: int = 512, workers: int = 1
) -> dict[str, Any]:
    """Build Dataset A from ``NAME=URI,NAME=URI`` collections (class sub-folders) into ``out``.

    Raises:
        InputError: For a malformed ``sources`` entry.
    """
    from lumbar.dataset_a import ClassMapping, LabelledBuildConfig, build_dataset_a

    pairs = []
    for item in split_list(sources, "sources"):
        name, sep, uri = item.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise InputError(f"source {item!r} must be NAME=URI")
        pairs.append((name.strip(), stage_folder(uri.strip())))
    config = LabelledBuildConfig(
        sources=tuple(pairs),
        out=Path(out),
        mapping=ClassMapping.from_yaml(stage_file(mapping_uri)) if mapping_uri else ClassMapping.paper(),
        seed=seed,
        max_size=max_size,
        workers=workers,
    )
    summary = build_dataset_a(config)
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}


def build_dataset_b_step(
    sources: str,
    out: str | Path,
    image_size: int = 224,
    shard_mb: float = 100.0,
    workers: int = 1,
    fit: str = "pad",
) -> dict[str, Any]:
    """Build Dataset B shards from comma-separated folders or ``s3://`` prefixes into ``out``.

    ``fit`` is ``pad`` or ``stretch`` (for sources of ROI crops, see :class:`UnlabelledBuildConfig`).
    """
    from lumbar.dataset_b import UnlabelledBuildConfig, build_dataset_b

    config = UnlabelledBuildConfig(
        sources=tuple(stage_folder(uri) for uri in split_list(sources, "sources")),
        out=Path(out),
        image_size=image_size,
        shard_mb=shard_mb,
        workers=workers,
        fit=fit,
    )
    summary = build_dataset_b(config)
    return {"images": summary.images, "shards": summary.shards, "files": summary.files, **summary.counts}


# --- pretraining and training ---------------------------------------------------------------------


def pretrain_supervised_step(
    dataset: str | Path,
    out: str | Path,
    backbone: str,
    profile: str = "quick",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    seed: int = 0,
    experiment: str = "lumbar-pretrain-supervised",
    kfp_run_id: str = "",
) -> dict[str, Any]:
    """Pretrain ``backbone`` from scratch on Dataset A; the backbone lands in ``<out>/backbone``."""
    from lumbar.pretrain import pretrain_supervised

    with kfp_run(kfp_run_id):
        result = pretrain_supervised(
            dataset,
            out,
            backbone,
            profile,
            track=tracking_enabled(),
            experiment=experiment,
            seed=seed,
            **_none_if_zero(epochs=epochs, image_size=image_size, batch_size=batch_size),
        )
    return {"backbone": backbone, "source": "supervised", "epochs": result.epochs, "run_id": result.run_id or ""}


def pretrain_ssl_step(
    shards: str | Path,
    out: str | Path,
    backbone: str,
    profile: str = "quick",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    steps_per_epoch: int = 0,
    seed: int = 0,
    experiment: str = "lumbar-pretrain-ssl",
    kfp_run_id: str = "",
) -> dict[str, Any]:
    """SimCLR-pretrain ``backbone`` on Dataset B shards; the backbone lands in ``<out>/backbone``."""
    from lumbar.pretrain import SSLConfig, pretrain_ssl

    config = SSLConfig.from_profile(
        profile,
        backbone=backbone,
        seed=seed,
        **_none_if_zero(epochs=epochs, image_size=image_size, batch_size=batch_size, steps_per_epoch=steps_per_epoch),
    )
    with kfp_run(kfp_run_id):
        result = pretrain_ssl(shards, out, config, track=tracking_enabled(), experiment=experiment)
    return {"backbone": backbone, "source": "ssl", "epochs": result.epochs, "run_id": result.run_id or ""}


def weights_source(weights: str) -> str:
    """``imagenet``, ``none``, or the ``source`` recorded with a backbone saved by lumbar (``supervised``/``ssl``)."""
    if weights in ("imagenet", "none"):
        return weights
    meta = Path(weights) / "backbone.json"
    if meta.is_file():
        source = str(json.loads(meta.read_text()).get("source", "pretrained"))
        return "ssl" if source.startswith("ssl") else source
    return "pretrained"


def pretrained_backbone(folder: str | Path) -> str:
    """The backbone folder inside a pretraining step's output (or the folder itself when it is one)."""
    folder = Path(folder)
    return str(folder / "backbone") if (folder / "backbone" / "backbone.npz").is_file() else str(folder)


def train_step(
    dataset: str | Path,
    out: str | Path,
    backbone: str,
    mode: str,
    roi: bool,
    weights: str = "imagenet",
    profile: str = "quick",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    seed: int = 0,
    procedure: str = "train",
    kfp_run_id: str = "",
    unfreeze: str = "",
    monitor: str = "",
    class_weights: str = "",
) -> dict[str, Any]:
    """Train one configuration into ``out`` (a ``Model`` artifact's path), tracked under ``lumbar-<procedure>``.

    Args:
        dataset: Dataset C folder.
        out: The model folder to write.
        backbone: Backbone name.
        mode: ``frozen`` or ``finetune``.
        roi: ROI crops instead of full images.
        weights: ``imagenet``, ``none``, or a pretraining step's output folder.
        profile: ``paper`` or ``quick``.
        epochs: Epochs (0: the profile's).
        image_size: Input size (0: the profile's).
        batch_size: Batch size (0: the profile's).
        seed: Seed.
        procedure: ``procedure1`` ... (the MLflow experiment is ``lumbar-<procedure>``).
        kfp_run_id: The Kubeflow run id to tag the MLflow run with.
        unfreeze: Fine-tune rule ``blocks:N`` / ``layers:N`` (empty: the profile's).
        monitor: Model selection, ``val_error`` or ``val_loss`` (empty: the profile's).
        class_weights: ``none`` or ``balanced`` (empty: the profile's).

    Returns:
        Flat metadata of the model: configuration name, weights source, best epoch, MLflow run id.
    """
    from lumbar.train import TrainConfig, train_model

    if weights not in ("imagenet", "none"):
        weights = pretrained_backbone(weights)
    source = weights_source(weights)
    config = TrainConfig.from_profile(
        profile,
        backbone=backbone,
        weights=weights,
        mode=mode,
        roi=roi,
        seed=seed,
        unfreeze=unfreeze or None,
        monitor=monitor or None,
        class_weights=class_weights or None,
        **_none_if_zero(epochs=epochs, image_size=image_size, batch_size=batch_size),
    )
    with kfp_run(kfp_run_id):
        result = train_model(
            config,
            dataset,
            out,
            experiment=f"lumbar-{procedure}",
            track=tracking_enabled(),
            tags={"lumbar.procedure": procedure, "lumbar.weights_source": source},
        )
    return {
        "name": config.run_name,
        "backbone": backbone,
        "mode": mode,
        "roi": roi,
        "weights_source": source,
        "monitor": config.monitor,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "run_id": result.run_id or "",
    }


# --- evaluation, explanation, comparison ----------------------------------------------------------


@dataclass
class EvaluationStep:
    """What an evaluate step writes into its ``Metrics`` and ``ClassificationMetrics`` artifacts.

    ``classes`` and ``confusion`` are the class-indexed matrix (rows true), the same in both views;
    ``roc`` holds the ROC points ``(fpr, tpr, thresholds)`` of each positive view.
    """

    metrics: dict[str, float]
    row: dict[str, Any]
    classes: list[str]
    confusion: list[list[int]]
    roc: dict[str, tuple[list[float], list[float], list[float]]]


def roc_points(y_true: Sequence[int], score: Sequence[float], limit: int = 200) -> tuple[list, list, list]:
    """ROC curve points (fpr, tpr, threshold), thinned to at most ``limit`` points for artifact metadata."""
    import numpy as np

    from lumbar.evaluate import roc_curve

    s = np.asarray(score, dtype=float)
    fpr, tpr = roc_curve(np.asarray(y_true), s)
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]  # roc_curve's points: above every score, then each distinct one
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(limit, len(thresholds))).round().astype(int))
    finite = np.where(np.isfinite(thresholds[keep]), thresholds[keep], 1.0 + 1e-9)
    return fpr[keep].tolist(), tpr[keep].tolist(), finite.tolist()


def evaluation_row(metrics: Mapping[str, Any], model_info: Mapping[str, Any]) -> dict[str, Any]:
    """The flat record of one evaluated configuration that a compare step reads (see :mod:`lumbar.compare`).

    It carries both positive views (``normal_f1``, ``abnormal_f1``, ...), each view's count of positives,
    the test-set size (``support``), and the chosen view under the plain metric names.
    """
    from lumbar.compare import config_name
    from lumbar.evaluate import METRIC_NAMES, POSITIVES, view_key

    config = model_info["config"]
    views: dict[str, float | int] = {
        view_key(p, k): float(metrics[view_key(p, k)]) for p in POSITIVES for k in METRIC_NAMES
    }
    views.update({view_key(p, "positives"): int(metrics[view_key(p, "positives")]) for p in POSITIVES})
    return {
        "name": config_name(config["backbone"], config["mode"], config["roi"]),
        "backbone": config["backbone"],
        "mode": config["mode"],
        "roi": bool(config["roi"]),
        "weights_source": weights_source(str(config["weights"])),
        "run_id": model_info.get("run_id") or "",
        "dataset_version": model_info.get("dataset_version") or "",
        "positive": str(metrics.get("positive", "")),
        "support": int((metrics.get("binary") or metrics)["support"]),
        **{k: float(metrics[k]) for k in METRIC_NAMES},
        **views,
    }


def evaluate_step(
    model: str | Path, dataset: str | Path, out: str | Path, split: str = "test", positive: str = "abnormal"
) -> EvaluationStep:
    """Evaluate a trained model on a split; files go to ``out``, metrics to its MLflow run when tracked.

    Both positive views are recorded; ``positive`` (``abnormal`` or ``normal``) is the one under the plain
    metric names.
    """
    from lumbar.evaluate import POSITIVES, confusion_matrix, evaluate_model, view_scores
    from lumbar.train import read_model_info

    info = read_model_info(model)
    result = evaluate_model(
        model, dataset, split, out, track=tracking_enabled() and bool(info.get("run_id")), positive=positive
    )
    classes, matrix = confusion_matrix(result.metrics)
    return EvaluationStep(
        metrics=result.summary(),
        row=evaluation_row(result.metrics, info),
        classes=classes,
        confusion=matrix,
        roc={p: roc_points(*view_scores(result.y_true, result.y_score, p)) for p in POSITIVES},
    )


def gradcam_best_step(
    models: Sequence[tuple[str, Mapping[str, Any]]],
    rows: Sequence[Mapping[str, Any]],
    dataset: str | Path,
    out_html: str | Path,
    metric: str = "f1",
    n: int = 8,
) -> dict[str, Any]:
    """Grad-CAM page of the best evaluated configuration, written as one self-contained HTML file.

    Args:
        models: ``(folder, metadata)`` of each trained model; matched to ``rows`` by configuration name.
        rows: Evaluation rows (:func:`evaluation_row`).
        dataset: Dataset C folder.
        out_html: The HTML file to write.
        metric: The metric that picks the best.
        n: Images on the page.

    Raises:
        InputError: When the best row has no model.
    """
    import tempfile

    from lumbar.compare import best
    from lumbar.gradcam import gradcam_report

    top = rows[best(rows, metric)]
    folders = {str(meta.get("name")): folder for folder, meta in models}
    if top["name"] not in folders:
        raise InputError(f"no trained model is named {top['name']!r}; models: {', '.join(sorted(folders))}")
    with tempfile.TemporaryDirectory(prefix="lumbar-gradcam-") as scratch:
        page = gradcam_report(folders[top["name"]], dataset, scratch, n=n)
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, out_html)
    return {"name": top["name"], metric: float(top[metric])}


def compare_step(
    procedure: str,
    rows: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]] = (),
    data_origin: str = "unknown",
) -> str:
    """The Markdown comparison of a procedure's evaluated runs (see :func:`lumbar.compare.compare_markdown`).

    ``data_origin`` (``synthetic``, ``real``, ``unknown``) is said in each table's title.
    """
    from lumbar.compare import compare_markdown

    return compare_markdown(procedure, rows, baseline, origin=data_origin)


def plan_step(backbones: str, modes: str = "frozen,finetune", images: str = "full,roi") -> list[dict[str, Any]]:
    """The configurations a procedure fans out over: backbones x modes x image types.

    Raises:
        InputError: For an unknown backbone, mode or image type.
    """
    from lumbar.compare import BACKBONE_ORDER, MODE_NAMES  # not lumbar.models: a plan step need not load Keras

    chosen = split_list(backbones, "backbones")
    unknown = [b for b in chosen if b not in BACKBONE_ORDER]
    if unknown:
        raise InputError(f"unknown backbone {unknown[0]!r}; choose from {', '.join(BACKBONE_ORDER)}")
    mode_list = split_list(modes, "modes")
    if any(m not in MODE_NAMES for m in mode_list):
        raise InputError(f"modes must be among {', '.join(MODE_NAMES)}, got {modes!r}")
    image_list = split_list(images, "images")
    if any(i not in ("full", "roi") for i in image_list):
        raise InputError(f"images must be among full, roi, got {images!r}")
    return [{"backbone": b, "mode": m, "roi": i == "roi"} for b in chosen for m in mode_list for i in image_list]


def report_step(
    page: str | Path,
    summary: str | Path,
    experiment_prefix: str = "lumbar",
    kfp_run_id: str = "",
    data_origin: str = "unknown",
    mlflow_ui: str = "http://127.0.0.1:5000",
    dataset: str | Path = "",
) -> dict[str, Any]:
    """Build the results report and write its HTML page and Markdown summary to the given files."""
    import tempfile

    from lumbar.report import ReportConfig, build_report

    with tempfile.TemporaryDirectory(prefix="lumbar-report-") as scratch:
        config = ReportConfig(
            out=Path(scratch),
            experiment_prefix=experiment_prefix,
            kfp_run_id=kfp_run_id or None,
            mlflow_ui=mlflow_ui,
            data_origin=data_origin,
            dataset=str(dataset) if dataset else None,
        )
        result = build_report(config)
        for source, target in ((result.html, page), (result.markdown, summary)):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return {f"{procedure}_runs": len(runs) for procedure, runs in result.runs.items()}
