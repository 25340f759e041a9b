"""The ``lumbar`` command line: one entry point, one subcommand group per job.

Errors on bad input are printed as one sentence (``error: ...``) with exit code 2, never as a
traceback. Each group lives in its own module; heavy libraries are imported inside the commands.
"""

from __future__ import annotations

import typer

from lumbar.cli import cluster, dataset, label, paper, pipeline, pretrain, services, store, synth, weights
from lumbar.cli import demo as demo_cli
from lumbar.cli import report as report_cli
from lumbar.cli import train as train_cli

app = typer.Typer(
    name="lumbar",
    help="Lumbar-spine MRI: DICOM ingest, datasets, object stores, tracking, pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(synth.app, name="synth")
app.add_typer(dataset.app, name="dataset")
app.add_typer(store.app, name="store")
app.add_typer(services.app, name="services")
app.add_typer(pretrain.app, name="pretrain")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(cluster.app, name="cluster")
app.add_typer(label.app, name="label")
app.add_typer(paper.app, name="paper")
app.add_typer(weights.app, name="weights")
app.command("train")(train_cli.train)
app.command("evaluate")(train_cli.evaluate)
app.command("predict")(train_cli.predict)
app.command("gradcam")(train_cli.gradcam)
app.command("report")(report_cli.report)
app.command("demo")(demo_cli.demo)


@app.callback()
def _main() -> None:
    """Lumbar-spine MRI: DICOM ingest, datasets, object stores, tracking, training, pipelines."""
    import os

    # the command line prints one clear line per error: keep TensorFlow's C++ runtime chatter out of it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@app.command("version")
def version() -> None:
    """Print the lumbar version."""
    from lumbar import __version__

    typer.echo(__version__)


__all__ = ["app"]
