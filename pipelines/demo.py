"""The main job end to end on this machine: synthetic PACS export -> the ``paper`` pipeline (kfp.local) -> report.

Stages (each timed): write a synthetic export; prepare the labelled collection for Dataset A (the real
brain MRI sample in ``../shared`` when it is there, else a synthetic one); with ``services`` upload the
export to the local S3 server; run ``pipeline run paper --local`` in the ``quick`` profile; copy its
report out of the run folder.

It lives beside the pipelines (it runs one) and is what ``lumbar demo`` and ``make demo`` call.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lumbar.errors import InputError

#: Where the shared data lies beside a checkout (``LUMBAR_SHARED_DIR`` overrides).
SHARED_ENV = "LUMBAR_SHARED_DIR"


@dataclass(frozen=True)
class DemoConfig:
    """Size and settings of the demo.

    Attributes:
        out: Demo folder (export, labelled collection, report, pipeline runs).
        patients: Synthetic patients.
        backbones: Procedure 1's backbones (comma-separated).
        pretrain_backbones: Procedures 2 and 3's backbones.
        image_size: Model input size.
        epochs: Transfer epochs.
        pretrain_epochs: Pretraining epochs.
        pretrain_steps: SSL batches per epoch.
        weights: Procedure 1's weights (``imagenet`` needs the Keras files offline; else ``none``).
        services: Use the local S3 and MLflow servers (their environment must be set).
        workers: Processes for the synthetic export.
    """

    out: Path
    patients: int = 12
    backbones: str = "vgg16,vgg19,resnet50,mobilenetv2"
    pretrain_backbones: str = "vgg16,vgg19"
    image_size: int = 64
    epochs: int = 3
    pretrain_epochs: int = 2
    pretrain_steps: int = 10
    weights: str = "auto"
    services: bool = False
    workers: int = 2

    def __post_init__(self) -> None:
        if self.patients < 6:
            raise InputError("the demo needs at least 6 patients (train, validation and test must all hold some)")
        if self.weights not in ("auto", "imagenet", "none"):
            raise InputError("weights must be auto, imagenet or none")


@dataclass
class DemoResult:
    """Where the demo left its results, and how long each stage took."""

    report: Path
    run_folder: Path
    timings: dict[str, float] = field(default_factory=dict)
    weights: str = "none"


def shared_brain_sample() -> Path | None:
    """The real brain MRI sample in the shared data, if this checkout has it."""
    base = os.environ.get(SHARED_ENV)
    beside = Path(__file__).resolve().parents[2] / "shared"  # ../shared next to the checkout
    candidates = [Path(base)] if base else [Path.cwd().parent / "shared", beside]
    for shared in candidates:
        sample = shared / "data" / "brain-mri-sample"
        if (sample / "yes").is_dir() and (sample / "no").is_dir():
            return sample
    return None


def synthetic_collection(out: Path, patients: int, workers: int) -> Path:
    """A labelled collection (``normal/`` and ``abnormal/`` folders) from a second synthetic export's disc images."""
    import csv

    from lumbar.dataset_c import BuildConfig, build_dataset_c
    from lumbar.synth import SynthConfig, write_pacs_export

    scratch = out.parent / f".{out.name}-build"
    write_pacs_export(scratch / "export", SynthConfig(patients=patients, seed=99, size=128, workers=workers))
    build_dataset_c(BuildConfig(source=scratch / "export", labels=scratch / "export" / "labels.csv", out=scratch / "c"))
    with (scratch / "c" / "manifest.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("label") in ("0", "1") and row.get("roi_path"):
                folder = out / ("abnormal" if row["label"] == "1" else "normal")
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(scratch / "c" / row["roi_path"], folder / Path(row["roi_path"]).name)
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def imagenet_available(backbones: str, image_size: int) -> bool:
    """Whether Keras' ImageNet files for every backbone are in the local Keras cache."""
    from lumbar.models import imagenet_weights_file, keras_models_dir

    return all(
        (keras_models_dir() / imagenet_weights_file(b.strip(), image_size)[0]).is_file() for b in backbones.split(",")
    )


def run_demo(config: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    """Run every stage; ``say`` gets one line per finished stage.

    Raises:
        InputError: With ``services`` and no S3 endpoint or MLflow server in the environment.
    """
    from lumbar.synth import SynthConfig, write_pacs_export
    from pipelines.registry import run_local

    out = Path(config.out).absolute()
    timings: dict[str, float] = {}

    def stage(name: str, started: float) -> None:
        timings[name] = time.perf_counter() - started
        say(f"[{timings[name]:7.1f} s] {name}")

    started = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    write_pacs_export(out / "export", SynthConfig(patients=config.patients, seed=0, size=256, workers=config.workers))
    stage(f"synthetic PACS export ({config.patients} patients)", started)

    started = time.perf_counter()
    sample = shared_brain_sample()
    labelled = sample or synthetic_collection(out / "labelled", max(config.patients, 8), config.workers)
    stage(f"labelled collection for Dataset A ({'real brain MRI sample' if sample else 'synthetic'})", started)

    export_uri = str(out / "export")
    publish_to = (out / "store").as_uri()
    if config.services:
        if not os.environ.get("LUMBAR_S3_ENDPOINT") or not os.environ.get("MLFLOW_TRACKING_URI"):
            raise InputError("--services needs the local servers' environment: run `lumbar services up` and source it")
        from lumbar.storage import open_store

        started = time.perf_counter()
        open_store("s3://lumbar", create_bucket=True)
        open_store("s3://lumbar/exports/demo").put_tree(out / "export")
        export_uri, publish_to = "s3://lumbar/exports/demo", "s3://lumbar"
        stage("upload the export to the local S3 server", started)

    weights = config.weights
    if weights == "auto":
        weights = "imagenet" if imagenet_available(config.backbones, config.image_size) else "none"
    params = {
        "export_uri": export_uri,
        "labelled_sources": f"brain={labelled}",
        "unlabelled_sources": export_uri,
        "publish_to": publish_to,
        "backbones": config.backbones,
        "pretrain_backbones": config.pretrain_backbones,
        "weights": weights,
        "profile": "quick",
        "shard_image_size": config.image_size,
        "image_size": config.image_size,
        "epochs": config.epochs,
        "pretrain_epochs": config.pretrain_epochs,
        "pretrain_steps": config.pretrain_steps,
        "data_origin": "synthetic",
    }
    started = time.perf_counter()
    run = run_local("paper", params, out / "pipelines")
    stage("pipeline `paper` (dataset_c, procedures 1-3, report) with kfp.local", started)
    for task, seconds in task_times(run.folder).items():
        say(f"           {seconds:7.1f} s  {task}")

    started = time.perf_counter()
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    report_task = run.folder / "report"
    shutil.copyfile(report_task / "page", report_dir / "report.html")
    shutil.copyfile(report_task / "summary", report_dir / "report.md")
    stage("report copied out of the run", started)
    return DemoResult(report_dir / "report.html", run.folder, timings, weights)


def task_times(run_folder: Path) -> dict[str, float]:
    """Seconds per group of tasks of a local run (from the tasks' output files), by procedure step."""
    groups: dict[str, float] = {}
    stamps = sorted(
        (p.stat().st_mtime, p.parent) for p in Path(run_folder).rglob("executor_output.json") if p.is_file()
    )
    start = min((p.stat().st_ctime for p in Path(run_folder).iterdir()), default=None)
    previous = start
    for stamp, folder in stamps:
        name = folder.name.rstrip("-0123456789") or folder.name
        groups[name] = groups.get(name, 0.0) + (stamp - previous if previous else 0.0)
        previous = stamp
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))
