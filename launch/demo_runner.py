"""The main job end to end on this machine: synthetic PACS export -> the ``paper`` pipeline (kfp.local) -> report.

Stages (each timed): write a synthetic export; prepare the labelled collection for Dataset A (the real
brain MRI sample in ``../shared`` when it is there, else a synthetic one); with ``services`` upload the
export to the local S3 server; run ``pipeline run paper --local`` in the ``quick`` profile; copy its
report out of the run folder.

It runs a pipeline through :mod:`launch.launcher`; ``lumbar demo`` and ``make demo`` call it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumbar import deid
from lumbar.errors import InputError
from lumbar.procedures import PROCEDURES
from lumbar.profiles import QUICK, QUICK_IMAGE_SIZE

#: Where the shared data lies beside a checkout (``LUMBAR_SHARED_DIR`` overrides).
SHARED_ENV = "LUMBAR_SHARED_DIR"


@dataclass(frozen=True)
class DemoConfig:
    """Size and settings of the demo.

    Attributes:
        out: Demo folder (export, labelled collection, report, pipeline runs).
        patients: Synthetic patients (five graded discs each).
        fractions: Dataset C's train, validation and test shares of the patients.
        backbones: Procedure 1's backbones (comma-separated; default: the procedure registry's).
        pretrain_backbones: Procedures 2 and 3's backbones.
        image_size: Model input size.
        epochs: Transfer epochs (0: the ``quick`` profile's).
        supervised_epochs: Procedure 2's pretraining epochs on Dataset A.
        ssl_epochs: Procedure 3's SimCLR epochs.
        ssl_steps: Procedure 3's SimCLR batches per epoch.
        weights: Procedure 1's weights (``imagenet`` needs the Keras files offline; else ``none``).
        services: Use the local S3 and MLflow servers (their environment must be set).
        workers: Processes for the synthetic export.
        data: ``synthetic`` (a made-up PACS export, the default) or ``spider``: SPIDER's real lumbar MRI
            (``../shared/data/spider-lumbar``), imported and run through pipeline ``paper_dataset``; its
            ``patients`` does not apply.
        spider: The SPIDER folder (default: the shared sample).

    ``fractions``, ``pretrain_backbones`` and the pretraining sizes left at None take the data's defaults,
    :data:`DATA_DEFAULTS` (:meth:`setting`).
    """

    out: Path
    patients: int = 64
    fractions: str | None = None
    backbones: str = field(default_factory=lambda: PROCEDURES["procedure1"].default_backbones())
    pretrain_backbones: str | None = None
    image_size: int = QUICK_IMAGE_SIZE
    epochs: int = 0
    supervised_epochs: int | None = None
    ssl_epochs: int | None = None
    ssl_steps: int | None = None
    weights: str = "auto"
    services: bool = False
    workers: int = 2
    data: str = "synthetic"
    spider: Path | None = None

    def __post_init__(self) -> None:
        if self.data not in DATA:
            raise InputError(f"--data must be one of {', '.join(DATA)}, got {self.data!r}")
        if self.data == "spider" and self.spider is None and shared_spider() is None:
            raise InputError("--data spider needs SPIDER: ../shared/data/spider-lumbar is not here; give --spider DIR")
        if self.patients < 6:
            raise InputError("the demo needs at least 6 patients (train, validation and test must all hold some)")
        if self.weights not in ("auto", "imagenet", "none"):
            raise InputError("weights must be auto, imagenet or none")
        for name in ("supervised_epochs", "ssl_epochs", "ssl_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    def setting(self, name: str) -> Any:
        """The value of ``name``: the one given, else the data's default (:data:`DATA_DEFAULTS`)."""
        given = getattr(self, name)
        return DATA_DEFAULTS[self.data][name] if given is None else given


@dataclass
class DemoResult:
    """Where the demo left its results, and how long each stage took."""

    report: Path
    run_folder: Path
    dataset: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    weights: str = "none"
    tasks: list[Any] = field(default_factory=list)
    log: Path | None = None
    seconds: float = 0.0


#: What the demo runs on.
DATA = ("synthetic", "spider")
#: Each data's defaults of the :class:`DemoConfig` settings left at None, sized for 20 minutes on two cores.
#:
#: * synthetic: 64 patients at 0.25/0.08/0.67 are 16 training, 5 validation and 43 test patients (about
#:   215 test discs), so each F1 is measured to about ±0.03 at two cores' cost.
#: * spider: of the sample's 58 patients about 17 test patients (some 115 test discs, so each number carries
#:   an interval of about ±0.1), 9 validation patients to choose each procedure's configuration on, and 32
#:   training patients. Procedures 2 and 3 pretrain VGG16 only, which pays for 8 supervised epochs. Dataset A's
#:   pretraining still answers its majority class after them (docs/experiments/2026-12-07-demo-real.md), and
#:   the report says so.
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "fractions": "0.25,0.08,0.67",
        "pretrain_backbones": PROCEDURES["procedure2"].default_backbones(),
        "supervised_epochs": 2,
        "ssl_epochs": 2,
        "ssl_steps": 5,
    },
    "spider": {
        "fractions": "0.55,0.15,0.30",
        "pretrain_backbones": "vgg16",
        "supervised_epochs": 8,
        "ssl_epochs": 2,
        "ssl_steps": 5,
    },
}


def _shared() -> list[Path]:
    base = os.environ.get(SHARED_ENV)
    beside = Path(__file__).resolve().parents[2] / "shared"  # ../shared next to the checkout
    return [Path(base)] if base else [Path.cwd().parent / "shared", beside]


def shared_spider() -> Path | None:
    """SPIDER's lumbar sample in the shared data, if this checkout has it."""
    for shared in _shared():
        sample = shared / "data" / "spider-lumbar"
        if (sample / "radiological_gradings.csv").is_file():
            return sample
    return None


def shared_brain_sample() -> Path | None:
    """The real brain MRI sample in the shared data, if this checkout has it."""
    for shared in _shared():
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


def run_demo(config: DemoConfig, say: Callable[[str], None] | None = None) -> DemoResult:
    """Run every stage quietly, the terminal showing only how far it has come.

    The terminal (standard output as it is on entry) gets a header, one line per stage and per pipeline
    task as it finishes (name, status, seconds), a progress bar while the pipeline runs, then the timing
    table and where the outputs are. Everything else the stages, kfp.local and its task subprocesses
    print goes to ``<out>/logs/demo.log``.

    Args:
        config: The demo's size and settings.
        say: Also gets each stage's and task's line (for callers that collect them).

    Raises:
        InputError: With ``services`` and no S3 endpoint or MLflow server in the environment.
        LumbarError: When a pipeline task fails; the terminal shows which, and its last lines.
    """
    from rich.console import Console

    from launch.console import TaskWatcher, output_to_log

    out = Path(config.out).absolute()
    shutil.rmtree(out, ignore_errors=True)
    log = out / "logs" / "demo.log"
    watcher = TaskWatcher()
    started = time.perf_counter()
    with output_to_log(log, watcher.feed) as terminal:
        console = Console(file=terminal, highlight=False, soft_wrap=True)

        def line(text: str) -> None:
            console.print(text, markup=False)
            if say:
                say(text)

        if config.data == "spider":
            line(f"lumbar demo: SPIDER's real lumbar MRI -> pipeline `paper_dataset` -> report; full logs in {log}")
        else:
            line(f"lumbar demo: synthetic export -> pipeline `paper` with kfp.local -> report; full logs in {log}")
        result = _stages(config, out, console, line, watcher, log)
        result.log = log
        result.seconds = time.perf_counter() - started
        _summary(result, console, line)
    return result


def _stages(
    config: DemoConfig,
    out: Path,
    console: Any,
    line: Callable[[str], None],
    watcher: Any,
    log: Path,
) -> DemoResult:
    """The demo's stages, each timed (output already redirected to the log)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from launch.console import TaskRecord, expected_tasks
    from launch.launcher import get, run_local
    from lumbar.errors import LumbarError
    from lumbar.synth import SynthConfig, write_pacs_export

    timings: dict[str, float] = {}

    def stage(name: str, started: float, quiet: bool = False) -> None:
        timings[name] = time.perf_counter() - started
        if not quiet:
            line(f"[{timings[name]:7.1f} s] {name}")

    real = config.data == "spider"
    started = time.perf_counter()
    if real:
        from lumbar.spider import CREDIT, SpiderConfig, import_spider

        fractions = tuple(float(f) for f in config.setting("fractions").split(","))
        imported = import_spider(
            SpiderConfig(source=config.spider or shared_spider(), out=out / "spider", fractions=fractions)
        )
        stage(f"SPIDER imported ({imported.patients} patients, {imported.labelled_images} T2 discs)", started)
        line(f"  data: {CREDIT}")
    else:
        write_pacs_export(
            out / "export", SynthConfig(patients=config.patients, seed=0, size=256, workers=config.workers)
        )
        stage(f"synthetic PACS export ({config.patients} patients)", started)

    started = time.perf_counter()
    sample = shared_brain_sample()
    labelled = sample or synthetic_collection(out / "labelled", max(config.patients, 8), config.workers)
    stage(f"labelled collection for Dataset A ({'real brain MRI sample' if sample else 'synthetic'})", started)

    export_uri = str(out / "export")
    publish_to = (out / "store").as_uri()
    if config.services and real:
        raise InputError("--services runs the synthetic demo only; run --data spider without it")
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
        "fractions": config.setting("fractions"),
        "data_origin": "synthetic",
    }
    name = "paper"
    if real:  # the imported dataset, pinned; its unlabelled slices are procedure 3's pretraining data
        name = "paper_dataset"
        params = {
            "dataset_uri": str(out / "spider"),
            "labelled_sources": f"brain={labelled}",
            "unlabelled_sources": str(out / "spider" / "unlabelled"),
            "data_origin": "real",
        }
    params |= {
        "backbones": config.backbones,
        "pretrain_backbones": config.setting("pretrain_backbones"),
        "weights": weights,
        "profile": QUICK,
        "shard_image_size": config.image_size,
        "image_size": config.image_size,
        "epochs": config.epochs,
        "supervised_epochs": config.setting("supervised_epochs"),
        "ssl_epochs": config.setting("ssl_epochs"),
        "ssl_steps": config.setting("ssl_steps"),
    }
    from google.protobuf.json_format import MessageToDict

    total = expected_tasks(MessageToDict(get(name).pipeline_spec), params)
    line(f"pipeline `{name}`: {total or 'its'} tasks, one line each as it finishes (task, status, seconds)")
    started = time.perf_counter()
    columns = (TextColumn(f"pipeline `{name}`"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, redirect_stdout=False, redirect_stderr=False) as bar:
        job = bar.add_task("tasks", total=total)

        def finished(record: TaskRecord) -> None:
            line(f"  {record.name:<20} {record.subject:<26} {record.status:<7} {record.seconds:7.1f} s")
            bar.advance(job)

        watcher.on_finish = finished
        try:
            with _pseudonym_secret():
                run = run_local(name, params, out / "pipelines")
        except LumbarError:
            failed = watcher.failed
            if failed is not None:
                line(f"task {failed.name} failed after {failed.seconds:.1f} s; its last lines (all in {log}):")
                for text in failed.tail:
                    line(f"  | {text.removeprefix('    ')[:160]}")  # kfp.local indents a task's lines by 4
            raise
    stage(f"pipeline `{name}` with kfp.local", started)

    started = time.perf_counter()
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    report_task = run.folder / "report"
    shutil.copyfile(report_task / "page", report_dir / "report.html")
    shutil.copyfile(report_task / "summary", report_dir / "report.md")
    if real:
        dataset = out / "spider"
    else:  # where the README's tour expects it (`lumbar dataset describe data/demo/dataset-c`)
        dataset = out / "dataset-c"
        shutil.copytree(run.folder / "build-dataset-c" / "dataset", dataset, dirs_exist_ok=True)
    stage("report and Dataset C copied out of the run", started, quiet=True)  # in the timing table only
    return DemoResult(
        report_dir / "report.html",
        run.folder,
        dataset=dataset,
        timings=timings,
        weights=weights,
        tasks=list(watcher.finished),
    )


#: The demo's pseudonym key when the environment sets none (defined in the library, which accepts it only for
#: exports `lumbar synth` wrote). The demo's patients are synthetic, so this key protects nobody; it is fixed
#: so that every demo pseudonymises, and therefore splits, its patients the same way, and prints the same
#: numbers. Setting ``LUMBAR_PSEUDONYM_SECRET`` gives another split. A deployment holding real exports keeps
#: its own secret in a Kubernetes secret (docs/security.md).
DEMO_SECRET = deid.DEMO_SECRET


@contextmanager
def _pseudonym_secret() -> Iterator[None]:
    """The demo's fixed pseudonym key for this run when the environment has none (the dataset builds need one)."""
    from lumbar.deid import DEFAULT_SECRET_ENV

    if os.environ.get(DEFAULT_SECRET_ENV):
        yield
        return
    print(f"{DEFAULT_SECRET_ENV} is not set: the demo pseudonymises its synthetic patients with its fixed demo key")
    os.environ[DEFAULT_SECRET_ENV] = DEMO_SECRET
    try:
        yield
    finally:
        os.environ.pop(DEFAULT_SECRET_ENV, None)


def task_groups(tasks: list[Any]) -> dict[str, tuple[int, float]]:
    """Runs and seconds per kind of task (``train-3`` counts as ``train``), longest first."""
    groups: dict[str, tuple[int, float]] = {}
    for record in tasks:
        name = re.sub(r"-\d+$", "", record.name)
        runs, seconds = groups.get(name, (0, 0.0))
        groups[name] = (runs + 1, seconds + record.seconds)
    return dict(sorted(groups.items(), key=lambda kv: -kv[1][1]))


def _summary(result: DemoResult, console: Any, line: Callable[[str], None]) -> None:
    """The timing table and where the outputs are."""
    from rich import box
    from rich.table import Table

    from lumbar.tracking import tracking_uri

    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for column, justify in (("timings: stage / pipeline task", "left"), ("runs", "right"), ("seconds", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, seconds in result.timings.items():
        table.add_row(name, "1", f"{seconds:.1f}")
        if name.startswith("pipeline"):
            for task, (runs, total) in task_groups(result.tasks).items():
                table.add_row(f"  {task}", str(runs), f"{total:.1f}")
    console.print()
    console.print(table)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri()
    mlflow = (
        f".venv/bin/mlflow ui --backend-store-uri {uri}  -> http://127.0.0.1:5000" if uri.startswith("sqlite:") else uri
    )
    line(f"done in {result.seconds:.0f} s (procedure 1 weights: {result.weights})")
    line(f"report:       {result.report}  (open it in a browser; Markdown beside it)")
    line(f"dataset:      {result.dataset}  (pseudonymised; try `lumbar dataset describe` on it)")
    line(f"pipeline run: {result.run_folder}")
    line(f"MLflow UI:    {mlflow}")
    line(f"logs:         {result.log}")
