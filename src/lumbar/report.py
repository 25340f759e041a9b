"""The results report: the paper's tables rebuilt from tracked runs, with plots, beside the paper's numbers.

:func:`build_report` reads the training runs of the three procedures from MLflow (experiments
``<prefix>-procedure1`` ... ; one Kubeflow run each: the given ``kfp_run_id``, else the latest), and
writes ``report.html`` (self-contained: plots embedded) and ``report.md`` (plots in ``plots/``):

* the first screen: data origin, dataset version and size, profile, image size, epochs, the weights each
  procedure actually used (when ImageNet weights were not available offline, the report says that
  procedure 1 ran from random initialisation and is not transfer learning), the positive class, and the
  declared choices (:data:`CHOICES`: where the project drifts from the paper's procedure or the paper is
  vague) with each run's value beside what the paper says;
* Tables 6-14 (:mod:`lumbar.compare`): each number linked to its MLflow run, in the paper's positive
  class (normal), the paper's own number beside it (:mod:`lumbar.paper`), the test-set sizes side by side,
  an interval on each accuracy and the majority-class F1;
* plots: F1 per configuration, training curves, confusion matrices, ROC curves in both positive views,
  and a Grad-CAM panel per pretraining source (the paper's Figures 17-18) when the dataset is given;
* with the dataset, when it names its source (an imported public dataset such as SPIDER), that source
  and its credit on the first screen, and the one-feature baselines (:mod:`lumbar.baselines`: the disc's
  level alone, its brightness alone, fitted on the training patients) beside each procedure's configuration
  chosen on the validation patients, in sentences generated from the numbers;
* for runs trained on Pfirrmann grades (``target=pfirrmann``), balanced accuracy, linearly weighted kappa and
  the share of discs off by more than one grade, with intervals, beside the published references.
"""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.backbones import config_name, weights_source
from lumbar.compare import SOURCE_NAMES, Table, paper_view, procedure_tables, row_majority_f1, to_markdown
from lumbar.errors import InputError
from lumbar.metrics import (
    METRIC_NAMES,
    PFIRRMANN_REFERENCES,
    POSITIVES,
    confusion_matrix,
    ordinal_text,
    view_key,
    views_from_confusion,
)
from lumbar.paper import PAPER_POSITIVE
from lumbar.procedures import EXPERIMENT_PREFIX, PROCEDURES, experiment_name

ORIGINS = ("synthetic", "real", "unknown")
#: Where a first-screen condition turns into a warning (the HTML shows such a condition in red).
WARNING = " — "
PAPER_NOTE = (
    "Paper values are the published numbers of Al-kubaisi & Khamiss (Electronics 2022, 11(1), 85), "
    "measured on their hospital's data (test sets of 182 and 91 discs), not on this dataset: they are there to "
    "compare with, not to match. Every table scores normal as the positive class, as the paper did "
    "(`lumbar paper audit` shows how that was found); `lumbar paper values` lists every number of the paper."
)


@dataclass(frozen=True)
class Choice:
    """A training setting where the project drifted from the paper's procedure or the paper is vague.

    Attributes:
        param: The MLflow param that records it on every training run.
        title: What it is.
        paper: What the paper says.
        profile_key: The key of the ``paper`` profile's training value (:data:`lumbar.profiles.PROFILES`), if any.
    """

    param: str
    title: str
    paper: str
    profile_key: str = ""


#: The declared choices listed on the report's first screen.
CHOICES: tuple[Choice, ...] = (
    Choice(
        "unfreeze",
        "Fine-tune rule",
        "vague: “we did not freeze all pre-trained layers. Instead, we made some layers trainable with two” "
        "(Section 3.6.2), learning rate 1e-5",
        "unfreeze",
    ),
    Choice(
        "monitor",
        "Model selection",
        "“the model with the lowest error rate on the validation set” (Section 3.6)",
        "monitor",
    ),
    Choice("class_weights", "Class weights", "none mentioned", "class_weights"),
    Choice(
        "probe_epochs",
        "Head before fine-tuning (epochs fitted on frozen features)",
        "“we performed the same steps above, except in step 3” (Section 3.6.2): the head trains with the "
        "unfrozen layers from the start (0 epochs)",
        "probe_epochs",
    ),
    Choice(
        "head",
        "Head",
        "vague: “the fully connected layer” trained on the backbone, dropout 0.2 (Sections 3.5, 3.6.2); its "
        "layers are not given, and no weight penalty is mentioned (the paper profile adds none)",
    ),
)


@dataclass(frozen=True)
class ReportConfig:
    """What to report and where.

    Attributes:
        out: Output folder.
        experiment_prefix: Experiments are ``<prefix>-procedure1`` ... .
        tracking_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI`` or the local store).
        kfp_run_id: Report this Kubeflow run (default: each procedure's latest).
        mlflow_ui: Base URL of the MLflow UI the run links point to.
        data_origin: ``synthetic``, ``real`` or ``unknown`` (stated on the first screen).
        dataset: Dataset C folder or version URI, for the Grad-CAM panels (none: no panels).
        gradcam_images: Images per Grad-CAM panel.
    """

    out: Path
    experiment_prefix: str = EXPERIMENT_PREFIX
    tracking_uri: str | None = None
    kfp_run_id: str | None = None
    mlflow_ui: str = "http://127.0.0.1:5000"
    data_origin: str = "unknown"
    dataset: str | None = None
    gradcam_images: int = 4

    def __post_init__(self) -> None:
        if self.data_origin not in ORIGINS:
            raise InputError(f"data origin must be one of {', '.join(ORIGINS)}, got {self.data_origin!r}")
        if not self.experiment_prefix:
            raise InputError("the experiment prefix must not be empty")


@dataclass
class RunRecord:
    """One training run of a procedure, as the report needs it."""

    procedure: str
    row: dict[str, Any]
    experiment_id: str
    params: dict[str, str]
    tags: dict[str, str]
    history: dict[str, list[float]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``vgg16-finetune-roi (ssl)``."""
        r = self.row
        return f"{config_name(r['backbone'], r['mode'], r['roi'])} ({r['weights_source']})"


@dataclass
class Report:
    """What :func:`build_report` wrote and read."""

    html: Path
    markdown: Path
    runs: dict[str, list[RunRecord]]
    tables: dict[str, list[Table]]


def collect_runs(config: ReportConfig) -> dict[str, list[RunRecord]]:
    """The evaluated training runs of each procedure's chosen Kubeflow run, from MLflow.

    Raises:
        InputError: When no procedure has an evaluated run.
    """
    from mlflow import MlflowClient

    from lumbar.tracking import tracking_uri

    client = MlflowClient(tracking_uri=config.tracking_uri or tracking_uri())
    found: dict[str, list[RunRecord]] = {}
    for procedure in PROCEDURES:
        experiment = client.get_experiment_by_name(experiment_name(procedure, config.experiment_prefix))
        if experiment is None:
            continue
        query = f"tags.`lumbar.procedure` = '{procedure}' and metrics.test_accuracy >= 0"
        if config.kfp_run_id:
            query += f" and tags.`kfp.run_id` = '{config.kfp_run_id}'"
        runs = client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"])
        if not runs:
            continue
        chosen = config.kfp_run_id or runs[0].data.tags.get("kfp.run_id", "")
        records = []
        for run in runs:
            if run.data.tags.get("kfp.run_id", "") != chosen:
                continue
            params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
            views = [view_key(v, k) for v in POSITIVES for k in (*METRIC_NAMES, "positives")]
            row = {
                "backbone": params["backbone"],
                "mode": params["mode"],
                "roi": params["roi"] == "True",
                "weights_source": tags.get("lumbar.weights_source") or weights_source(params.get("weights", "")),
                "run_id": run.info.run_id,
                **{k: metrics.get(f"test_{k}") for k in (*METRIC_NAMES, "support", *views)},
            }
            records.append(RunRecord(procedure, row, experiment.experiment_id, dict(params), dict(tags)))
        # one run per configuration: the latest wins when a configuration was trained twice
        unique = {(r.row["backbone"], r.row["mode"], r.row["roi"]): r for r in reversed(records)}
        found[procedure] = list(unique.values())
        for record in found[procedure]:
            _details(client, record)
            _fill_views(record)
    if not found:
        raise InputError(
            f"no evaluated training runs in the experiments {config.experiment_prefix}-procedure1..3 "
            f"at {config.tracking_uri or tracking_uri()}"
        )
    return found


def _details(client: Any, record: RunRecord) -> None:
    run_id = record.row["run_id"]
    for key in ("loss", "val_loss"):
        record.history[key] = [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
    with tempfile.TemporaryDirectory(prefix="lumbar-report-") as scratch:
        try:
            path = client.download_artifacts(run_id, "eval-test/metrics.json", scratch)
        except Exception:  # an evaluation without files (metrics only): the plots skip this run
            return
        record.evaluation = json.loads(Path(path).read_text())


def _fill_views(record: RunRecord) -> None:
    """Both positive views of a run evaluated before they were recorded, from its confusion matrix (if kept)."""
    row = record.row
    if row.get(view_key(PAPER_POSITIVE, "f1")) is not None or not record.evaluation:
        return
    metrics = record.evaluation.get("metrics", {})
    metrics = metrics.get("binary", metrics)
    if "confusion" not in metrics:
        return
    _, matrix = confusion_matrix(metrics)
    if len(matrix) != 2:
        return
    row.update(views_from_confusion(matrix))
    row["support"] = sum(map(sum, matrix))


def run_link(config: ReportConfig, record: RunRecord) -> str:
    """The MLflow UI page of a run."""
    return f"{config.mlflow_ui.rstrip('/')}/#/experiments/{record.experiment_id}/runs/{record.row['run_id']}"


def tables(runs: Mapping[str, Sequence[RunRecord]], origin: str = "unknown") -> dict[str, list[Table]]:
    """The paper's tables from the runs: procedure 1, then procedures 2 and 3 against it."""
    baseline = [r.row for r in runs.get("procedure1", [])]
    return {
        procedure: procedure_tables(procedure, [r.row for r in runs[procedure]], baseline, origin)
        for procedure in PROCEDURES
        if runs.get(procedure)
    }


def choices(runs: Mapping[str, Sequence[RunRecord]]) -> list[tuple[Choice, str, str]]:
    """The declared choices with the runs' values: ``(choice, values, what the paper says)``.

    Values are each distinct param value with its run count when they differ, and "not recorded" for
    runs trained before the param existed.
    """
    from lumbar.profiles import PAPER, profile_settings

    records = [r for group in runs.values() for r in group]
    out = []
    for choice in CHOICES:
        counts: dict[str, int] = {}
        for record in records:
            value = record.params.get(choice.param) or "not recorded"
            counts[value] = counts.get(value, 0) + 1
        values = (
            next(iter(counts)) if len(counts) == 1 else "; ".join(f"{v} ({n} runs)" for v, n in sorted(counts.items()))
        )
        paper = choice.paper
        profile = profile_settings(PAPER, "train").get(choice.profile_key) if choice.profile_key else None
        if profile is not None:
            paper += f"; the paper profile uses {choice.param}={profile}"
        out.append((choice, values or "no runs", paper))
    return out


@dataclass(frozen=True)
class DatasetFacts:
    """What the report reads from the dataset itself: its local folder and, for an import, its source."""

    folder: Path
    source: str = ""
    credit: str = ""


def dataset_facts(config: ReportConfig) -> DatasetFacts | None:
    """The dataset's folder (fetched when a URI) and the source and credit its ``report.json`` names."""
    if not config.dataset:
        return None
    from lumbar.versions import fetch_dataset

    folder = fetch_dataset(config.dataset)
    try:
        built = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        built = {}
    return DatasetFacts(folder, str(built.get("source", "")), str(built.get("credit", "")))


def baseline_comparison(facts: DatasetFacts | None, runs: Mapping[str, Sequence[RunRecord]]) -> tuple[list, list[str]]:
    """The one-feature baselines on the test discs and the generated sentences (empty without a dataset)."""
    from lumbar.baselines import evaluate_baselines, model_score, verdicts
    from lumbar.dataset_c import read_manifest

    if facts is None:
        return [], []
    try:
        baselines = evaluate_baselines(facts.folder)
    except InputError:
        return [], []
    patient_of = {r["image_path"]: r["patient"] for r in read_manifest(facts.folder, ("image_path", "patient"))}
    models = []
    for group in runs.values():
        for record in group:
            predictions = record.evaluation.get("predictions") or []
            if not predictions or any(p["image"] not in patient_of for p in predictions):
                continue
            models.append(
                model_score(
                    record.procedure,
                    record.label,
                    [p["true"] for p in predictions],
                    [p["score"] for p in predictions],
                    [patient_of[p["image"]] for p in predictions],
                    record.row.get(view_key("abnormal", "f1")) or 0.0,
                    (record.evaluation.get("selection") or {}).get("roc_auc"),
                )
            )
    return baselines, verdicts(models, baselines)


def conditions(
    config: ReportConfig, runs: Mapping[str, Sequence[RunRecord]], facts: DatasetFacts | None = None
) -> list[tuple[str, str]]:
    """The run conditions stated on the first screen, as (name, value) pairs."""
    records = [r for group in runs.values() for r in group]

    def values(key: str, source: str = "params") -> str:
        found = sorted({str(getattr(r, source).get(key, "")) for r in records} - {""})
        return ", ".join(found) or "unknown"

    origin = {
        "synthetic": "synthetic (generated by `lumbar synth pacs`; no patient data)",
        "real": "real hospital data",
        "unknown": "not stated",
    }[config.data_origin]
    if facts is not None and facts.credit:
        origin = (
            f"real MRI, {facts.source}: sagittal discs graded by the dataset's radiologists, where the paper "
            f"classified axial T2 images of its own hospital's patients. Credit (CC BY 4.0): {facts.credit}"
        )
    items = [
        ("Data", origin),
        ("Dataset version", values("dataset.version", "tags")),
        ("Training images per run", values("train_images")),
        ("Profile", values("profile")),
        ("Image size", values("image_size") + " px"),
        ("Epochs", values("epochs")),
        ("Target", _target_text(values("target"))),
    ]
    for procedure, group in runs.items():
        sources = sorted({r.row["weights_source"] for r in group})
        text = ", ".join(SOURCE_NAMES.get(s, s) for s in sources)
        if procedure == "procedure1" and "imagenet" not in sources:
            text += (
                f"{WARNING}ImageNet weights were not available offline, so the procedure 1 rows ran from random "
                "initialisation: they are not transfer learning"
            )
        unlearned = _unlearned_pretraining(group)
        if unlearned:
            text += WARNING + unlearned
        items.append((f"Weights, {procedure}", text))
    items.append(
        (
            "Positive class",
            f"{PAPER_POSITIVE} in every table, the paper's convention (its printed metrics fit a test set with about "
            "60 % positives, the share of normal discs); `lumbar evaluate --positive` chooses the view of a single "
            "evaluation (default abnormal, the clinical convention), and both views are recorded with every run",
        )
    )
    return items


#: A pretraining validation ROC-AUC up to which the backbone is said to have learned nothing of its task.
CHANCE_AUC = 0.6


def _unlearned_pretraining(group: Sequence[RunRecord]) -> str:
    """A warning when a run's supervised pretraining ended no better than answering its majority class.

    Its validation ROC-AUC then says whether it had begun to rank its images or learned nothing at all.
    """
    from lumbar.backbones import PRETRAINING_TAGS

    for record in group:
        error, majority, auc = (record.tags.get(tag) for tag in PRETRAINING_TAGS)
        if error is None or majority is None or float(error) < float(majority):
            continue
        ranked = f"; validation ROC-AUC {float(auc):.2f}" if auc is not None else ""
        verdict = (
            "it had begun to rank its images, not yet to classify them"
            if auc is not None and float(auc) > CHANCE_AUC
            else "it learned nothing usable from its labels"
        )
        return (
            f"its pretraining ended no better than always answering the majority class (validation error "
            f"{float(error):.3f}, majority {float(majority):.3f}{ranked}): {verdict}, so these rows say little about "
            "what that data can teach"
        )
    return ""


def _target_text(targets: str) -> str:
    """The first screen's target line: what the classifiers predict, and how the binary tables read them."""
    if targets in ("binary", "unknown"):
        return "binary (normal / abnormal), the paper's" if targets == "binary" else "not recorded"
    return (
        f"{targets}; the paper's tables read each model's binary view (abnormal: any state but normal; for "
        "Pfirrmann grades, grade 3 or more)"
    )


#: The Pfirrmann section's note: what the published numbers are and what a comparison with them can mean.
PFIRRMANN_NOTE = (
    "Agreement on Pfirrmann grades (1-5) on the test discs, with 95 % intervals from resampling the test patients, "
    "beside published results. Those come from other patients, scanners and graders (SpineNet: 1,331 participants), "
    "so they show the scale of what is achievable, not a ranking; where our interval contains a published number, "
    "the data cannot tell the two apart."
)


def pfirrmann_lines(runs: Mapping[str, Sequence[RunRecord]]) -> list[tuple[str, str, str, str, str]]:
    """``(configuration, test discs, balanced accuracy, kappa, off by more than one)`` of each Pfirrmann run."""
    lines = []
    for record in (r for group in runs.values() for r in group):
        metrics = (record.evaluation or {}).get("metrics", {})
        if "kappa_linear" not in metrics:
            continue
        discs = str(int((metrics.get("binary") or metrics).get("support", 0)))
        lines.append(
            (
                f"{record.procedure}: {record.label}",
                discs,
                ordinal_text(metrics, "balanced_accuracy", 100, 1),
                ordinal_text(metrics, "kappa_linear"),
                ordinal_text(metrics, "off_by_more_than_one", 100, 1),
            )
        )
    return lines


PFIRRMANN_COLUMNS = (
    "Configuration",
    "Test discs",
    "Balanced accuracy % (95 %)",
    "Linearly weighted kappa (95 %)",
    "Off by more than one grade % (95 %)",
)


# --- plots ----------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _per_procedure(runs: Mapping[str, Sequence[RunRecord]], width: float, height: float) -> tuple[Any, list]:
    """A figure with one panel per procedure: ``(figure, [(axes, procedure, runs), ...])``."""
    fig, axes = _pyplot().subplots(1, len(runs), figsize=(width * len(runs), height), squeeze=False)
    return fig, [(ax, procedure, group) for ax, (procedure, group) in zip(axes[0], runs.items(), strict=True)]


def _figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_f1(runs: Mapping[str, Sequence[RunRecord]]) -> bytes:
    """Horizontal bars: test F1 (normal positive) of every configuration, coloured by procedure; ticks: majority F1."""
    plt = _pyplot()
    records = [r for group in runs.values() for r in group]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(records) + 1.2))
    colours = {"procedure1": "#4c72b0", "procedure2": "#dd8452", "procedure3": "#55a868"}
    labels = [f"{r.procedure[-1]}: {r.label}" for r in records]
    values = [100 * (paper_view(r.row, "f1") or 0.0) for r in records]
    ax.barh(labels, values, color=[colours[r.procedure] for r in records])
    majority = [(i, row_majority_f1(r.row)) for i, r in enumerate(records)]
    shown = [(i, 100 * m) for i, m in majority if m is not None]
    if shown:
        x, y = [m for _, m in shown], [i for i, _ in shown]
        ax.scatter(x, y, marker="|", s=300, color="black", zorder=3, label="majority-class F1")
        ax.legend(loc="lower right", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"test F1 (%), {PAPER_POSITIVE} positive as in the paper")
    ax.set_title("F1 per configuration (procedure: backbone-mode-image (weights))")
    return _figure_png(fig)


def plot_curves(runs: Mapping[str, Sequence[RunRecord]]) -> bytes:
    """Validation loss per epoch of every run, one panel per procedure."""
    fig, panels = _per_procedure(runs, 4.5, 3.2)
    for ax, procedure, group in panels:
        for record in group:
            losses = record.history.get("val_loss", [])
            if losses:
                ax.plot(range(1, len(losses) + 1), losses, marker=".", label=record.label)
        ax.set_title(f"{procedure}: validation loss")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    return _figure_png(fig)


def plot_confusions(runs: Mapping[str, Sequence[RunRecord]]) -> bytes:
    """The test confusion matrix of every run, labelled with the class names (rows: true, columns: predicted)."""
    plt = _pyplot()
    records = [r for group in runs.values() for r in group if r.evaluation]
    cols = min(4, max(1, len(records)))
    rows = max(1, -(-len(records) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, record in zip(axes.flat, records, strict=False):
        classes, confusion = confusion_matrix(record.evaluation["metrics"])
        matrix = np.asarray(confusion)
        ax.axis("on")
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(matrix.shape[1]), classes, fontsize=7)
        ax.set_yticks(range(matrix.shape[0]), classes, fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        ax.set_title(f"{record.procedure[-1]}: {record.label}", fontsize=7)
    return _figure_png(fig)


def plot_rocs(runs: Mapping[str, Sequence[RunRecord]]) -> bytes:
    """ROC curves of every run: one column per procedure, one row per positive view (the paper's first)."""
    from lumbar.metrics import roc_auc, roc_curve, view_scores

    views = (PAPER_POSITIVE, *(p for p in POSITIVES if p != PAPER_POSITIVE))
    fig, axes = _pyplot().subplots(len(views), len(runs), figsize=(4.2 * len(runs), 3.6 * len(views)), squeeze=False)
    for row, positive in zip(axes, views, strict=True):
        for ax, (procedure, group) in zip(row, runs.items(), strict=True):
            for record in group:
                predictions = record.evaluation.get("predictions") or []
                if not predictions:
                    continue
                abnormal = [p["true"] for p in predictions]  # 1 = abnormal; score = P(abnormal)
                y, s = view_scores(abnormal, [p["score"] for p in predictions], positive)
                fpr, tpr = roc_curve(y, s)
                auc = roc_auc(y, s)
                ax.plot(fpr, tpr, label=f"{record.label} (AUC {'–' if auc is None else f'{auc:.2f}'})")
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
            ax.set_title(f"{procedure}: ROC (test), {positive} positive")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.legend(fontsize=6)
    return _figure_png(fig)


def gradcam_panels(
    config: ReportConfig, runs: Mapping[str, Sequence[RunRecord]], local: Path | None
) -> dict[str, bytes]:
    """One Grad-CAM panel per pretraining source: the best run (F1, normal positive) of each source, on test images.

    ``local`` is the dataset's folder (:func:`dataset_facts` fetched it; None: no panels).
    """
    if local is None:
        return {}
    import mlflow
    from PIL import Image

    import lumbar.models  # noqa: F401 (registers lumbar's Keras layers, which the logged models use)
    from lumbar.data import abnormal_probability, split_records
    from lumbar.gradcam import gradcam, overlay
    from lumbar.tracking import fluent_tracking_uri, tracking_uri

    best: dict[str, RunRecord] = {}
    for record in (r for group in runs.values() for r in group):
        source = record.row["weights_source"]
        if source not in best or (paper_view(record.row, "f1") or 0.0) > (paper_view(best[source].row, "f1") or 0.0):
            best[source] = record
    panels = {}
    for source, record in best.items():
        size = int(record.params.get("image_size", 64))
        records = split_records(local, "test", record.row["roi"], "binary")
        picks = np.random.default_rng(0).permutation(len(records.paths))[: config.gradcam_images]
        images = np.stack(
            [
                np.asarray(Image.open(records.paths[i]).convert("L").resize((size, size)), dtype=np.float32)[..., None]
                for i in picks
            ]
        )
        with fluent_tracking_uri(config.tracking_uri or tracking_uri()):
            model = mlflow.keras.load_model(f"runs:/{record.row['run_id']}/model")
        maps, outputs = gradcam(model, images, record.row["backbone"])
        abnormal = abnormal_probability(outputs, record.params.get("target", "binary"))
        fig, axes = _pyplot().subplots(1, len(picks), figsize=(2.2 * len(picks), 2.6), squeeze=False)
        for k, ax in enumerate(axes[0]):
            ax.imshow(overlay(images[k, ..., 0], maps[k]))
            ax.axis("off")
            truth = "abnormal" if records.labels[picks[k]] else "normal"
            ax.set_title(f"true {truth}\nP(abn.) {float(abnormal[k]):.2f}", fontsize=7)
        fig.suptitle(f"{SOURCE_NAMES.get(source, source)}: {record.label}", fontsize=9)
        panels[source] = _figure_png(fig)
    return panels


# --- rendering ------------------------------------------------------------------------------------


def _html_table(table: Table, config: ReportConfig, links: Mapping[str, str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            text = html.escape(cell.text)
            if cell.run_id and cell.run_id in links:
                text = f"<a href='{html.escape(links[cell.run_id])}'>{text}</a>"
            if cell.paper:
                text += f"<br><small class='paper'>paper: {html.escape(cell.paper)}</small>"
            if cell.warning:
                text += f"<br><small class='warning'>{html.escape(cell.warning)}</small>"
            numeric = i and cell.text[:1] in "0123456789+-–"  # numbers right-aligned, words and notes left
            cells.append(f"<td class='{'num' if numeric else 'name'}'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in table.notes if n)
    return (
        f"<h3 id='{html.escape(table.key)}'>{html.escape(table.title)}</h3>{note}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _img(data: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em} th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f2f2f2} td.num{text-align:right} .paper{color:#8a5a00} .note{color:#555;font-size:.9em}
.conditions{background:#f7f9fc;border:1px solid #d6dfeb;padding:.6em 1.2em;border-radius:6px}
.warning{color:#a00000;font-weight:600} img{max-width:100%;margin:.5em 0}
table.choices td{vertical-align:top;font-size:.92em}
"""


def _choices_html(runs: Mapping[str, Sequence[RunRecord]]) -> str:
    rows = "".join(
        f"<tr><td class='name'>{html.escape(choice.title)}</td><td><code>{html.escape(choice.param)}</code></td>"
        f"<td>{html.escape(values)}</td><td>{html.escape(paper)}</td></tr>"
        for choice, values, paper in choices(runs)
    )
    return (
        "<h3 id='choices'>The paper's procedure where the project drifted, or a declared choice where the paper "
        "is vague</h3><table class='choices'><thead><tr><th>Choice</th><th>Run param</th><th>These runs</th>"
        f"<th>The paper</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render_html(
    config: ReportConfig,
    runs: Mapping[str, Sequence[RunRecord]],
    all_tables: Mapping[str, list[Table]],
    plots: Mapping[str, bytes],
    panels: Mapping[str, bytes],
    facts: DatasetFacts | None = None,
    baselines: tuple[list, list[str]] = ([], []),
) -> str:
    """The self-contained HTML page."""
    links = {r.row["run_id"]: run_link(config, r) for group in runs.values() for r in group}
    items = "".join(
        f"<li><b>{html.escape(k)}:</b> "
        + (f"<span class='warning'>{html.escape(v)}</span>" if WARNING in v else html.escape(v))
        + "</li>"
        for k, v in conditions(config, runs, facts)
    )
    sections = []
    titles = {
        "procedure1": "Procedure 1: transfer learning from ImageNet (Tables 6-10)",
        "procedure2": "Procedure 2: pretrained on Dataset A (Tables 11-12)",
        "procedure3": "Procedure 3: self-supervised on Dataset B (Tables 13-14)",
    }
    rules, sentences = baselines
    if rules:
        rows = "".join(
            f"<tr><td>{html.escape(line[0])}</td><td>{html.escape(line[1])}</td><td>{html.escape(line[2])}</td>"
            f"<td>{html.escape(line[3])}</td></tr>"
            for line in _baseline_lines(rules)
        )
        said = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
        sections.append(
            "<h2 id='baselines'>What the images add: one-feature baselines</h2>"
            f"<p class='note'>{html.escape(BASELINES_NOTE)}</p>"
            "<table><tr><th>Baseline</th><th>ROC-AUC (95 %)</th><th>F1 (95 %)</th><th>Fitted on the training "
            f"patients</th></tr>{rows}</table><ul>{said}</ul>"
        )
    graded = pfirrmann_lines(runs)
    if graded:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in PFIRRMANN_COLUMNS)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>" for line in graded)
        published = "".join(
            f"<li>{html.escape(source)}: {html.escape(result)}</li>" for source, result in PFIRRMANN_REFERENCES
        )
        sections.append(
            "<h2 id='pfirrmann'>Pfirrmann grades beside the published state of the art</h2>"
            f"<p class='note'>{html.escape(PFIRRMANN_NOTE)}</p><table><tr>{head}</tr>{rows}</table>"
            f"<p>Published:</p><ul>{published}</ul>"
        )
    for procedure, group_tables in all_tables.items():
        sections.append(f"<h2 id='{procedure}'>{titles[procedure]}</h2>")
        sections += [_html_table(t, config, links) for t in group_tables]
    figures = "".join(f"<h3>{html.escape(name)}</h3>{_img(data, name)}" for name, data in plots.items())
    if panels:
        figures += "<h3>Grad-CAM per pretraining source (cf. the paper's Figures 17-18)</h3>"
        figures += "".join(_img(data, f"Grad-CAM {source}") for source, data in panels.items())
    else:
        figures += "<p class='note'>No Grad-CAM panels: the report was made without --dataset.</p>"
    run_list = "".join(
        f"<li><a href='{html.escape(links[r.row['run_id']])}'>{html.escape(r.procedure)}: "
        f"{html.escape(r.label)}</a></li>"
        for group in runs.values()
        for r in group
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lumbar results report</title>
<style>{_STYLE}</style></head>
<body>
<h1>lumbar results report</h1>
<div class="conditions"><h2>Conditions</h2><ul>{items}</ul>
{_choices_html(runs)}
<p class="note">{html.escape(PAPER_NOTE)} Numbers are percentages on the test split; each links to its MLflow run.
Improvement rates follow the paper's Equation 8: (new - old) / old x 100.</p></div>
{"".join(sections)}
<h2>Plots</h2>{figures}
<h2>Runs</h2><ul>{run_list}</ul>
</body></html>
"""


def render_markdown(
    config: ReportConfig,
    runs: Mapping[str, Sequence[RunRecord]],
    all_tables: Mapping[str, list[Table]],
    plots: dict,
    facts: DatasetFacts | None = None,
    baselines: tuple[list, list[str]] = ([], []),
) -> str:
    """The Markdown report (plots referenced from ``plots/``)."""
    lines = ["# lumbar results report", "", "## Conditions", ""]
    lines += [f"- **{k}:** {v}" for k, v in conditions(config, runs, facts)]
    rules, sentences = baselines
    if rules:
        lines += ["", "## What the images add: one-feature baselines", "", BASELINES_NOTE, ""]
        lines += ["| Baseline | ROC-AUC (95 %) | F1 (95 %) | Fitted on the training patients |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(line)} |" for line in _baseline_lines(rules)]
        lines += [""] + [f"- {s}" for s in sentences]
    graded = pfirrmann_lines(runs)
    if graded:
        lines += ["", "## Pfirrmann grades beside the published state of the art", "", PFIRRMANN_NOTE, ""]
        lines += [f"| {' | '.join(PFIRRMANN_COLUMNS)} |", "|---|" + "---:|" * (len(PFIRRMANN_COLUMNS) - 1)]
        lines += [f"| {' | '.join(line)} |" for line in graded]
        lines += ["", "Published:", ""] + [f"- {source}: {result}" for source, result in PFIRRMANN_REFERENCES]
    lines += [
        "",
        "### The paper's procedure where the project drifted, or a declared choice where the paper is vague",
        "",
    ]
    lines += ["| Choice | Run param | These runs | The paper |", "|---|---|---|---|"]
    lines += [f"| {c.title} | `{c.param}` | {values} | {paper} |" for c, values, paper in choices(runs)]
    lines += ["", PAPER_NOTE, ""]
    for procedure, group_tables in all_tables.items():
        lines += [f"## {procedure}", "", to_markdown(group_tables)]
    lines += ["## Plots", ""] + [f"![{name}](plots/{name}.png)" for name in plots]
    lines += ["", "## Runs", ""]
    lines += [f"- [{r.procedure}: {r.label}]({run_link(config, r)})" for group in runs.values() for r in group]
    return "\n".join(lines) + "\n"


BASELINES_NOTE = (
    "A disc's level alone and its mean brightness alone, each fitted on the training patients (direction and "
    "F1-best threshold) and scored on the same test discs as the models (abnormal positive). A model that does "
    "not rank the discs better than these has not shown that it reads more of the image. Intervals: 95 %, "
    "bootstrap over the test patients."
)


def _baseline_lines(rules: Sequence[Any]) -> list[tuple[str, str, str, str]]:
    lines = []
    for b in rules:
        auc = "n/a" if b.auc is None else f"{b.auc:.2f} ({b.auc_interval[0]:.2f}-{b.auc_interval[1]:.2f})"
        f1 = f"{b.f1:.2f} ({b.f1_interval[0]:.2f}-{b.f1_interval[1]:.2f})"
        direction = f"{'larger' if b.sign > 0 else 'smaller'} is abnormal, {b.support} test discs"
        lines.append((b.name, auc, f1, direction))
    return lines


def build_report(config: ReportConfig) -> Report:
    """Read the runs, build the tables and plots, write ``report.html``, ``report.md`` and ``plots/``."""
    runs = collect_runs(config)
    facts = dataset_facts(config)
    compared = baseline_comparison(facts, runs)
    all_tables = tables(runs, config.data_origin)
    plots = {
        "f1": plot_f1(runs),
        "training-curves": plot_curves(runs),
        "confusion-matrices": plot_confusions(runs),
        "roc-curves": plot_rocs(runs),
    }
    panels = gradcam_panels(config, runs, facts.folder if facts else None)  # the dataset fetched once for both
    out = Path(config.out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for name, data in {**plots, **{f"gradcam-{k}": v for k, v in panels.items()}}.items():
        (out / "plots" / f"{name}.png").write_bytes(data)
    page = out / "report.html"
    page.write_text(render_html(config, runs, all_tables, plots, panels, facts, compared), encoding="utf-8")
    markdown = out / "report.md"
    plot_names = {**plots, **{f"gradcam-{k}": v for k, v in panels.items()}}
    markdown.write_text(render_markdown(config, runs, all_tables, plot_names, facts, compared), encoding="utf-8")
    return Report(page, markdown, runs, all_tables)
