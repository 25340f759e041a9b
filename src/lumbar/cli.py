"""The ``lumbar`` command line: one entry point, one subcommand per job.

Errors on bad input are printed as one sentence (``error: ...``) with exit code 2, never as a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from lumbar.errors import LumbarError

app = typer.Typer(
    name="lumbar",
    help="Lumbar-spine MRI: DICOM ingest, datasets, transfer learning, pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
synth_app = typer.Typer(help="Generate synthetic data (realistic PACS exports).", no_args_is_help=True)
dataset_app = typer.Typer(help="Build and inspect datasets.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")
app.add_typer(dataset_app, name="dataset")


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn domain errors into one line on stderr and exit code 2."""
    try:
        yield
    except LumbarError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _show_progress() -> bool:
    return sys.stderr.isatty()


@app.callback()
def _main() -> None:
    """Lumbar-spine MRI: DICOM ingest, datasets, transfer learning, pipelines."""


@app.command("version")
def version() -> None:
    """Print the lumbar version."""
    from lumbar import __version__

    typer.echo(__version__)


@synth_app.command("pacs")
def synth_pacs(
    out: Annotated[Path, typer.Argument(help="Folder to write the export into (one sub-folder per patient).")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same export.")] = 0,
    size: Annotated[int, typer.Option(help="Matrix size of the sagittal and axial series (pixels).")] = 256,
    compression: Annotated[str, typer.Option(help="none | rle | j2k | mixed (transfer syntax of the files).")] = "none",
    first_id: Annotated[int, typer.Option(help="Number of the first patient id (P000001 for 1).")] = 1,
    workers: Annotated[int, typer.Option(help="Processes writing patients in parallel.")] = 1,
) -> None:
    """Write a synthetic lumbar-spine PACS export with labels.csv and truth.csv."""
    from lumbar.progress import rich_progress
    from lumbar.synth import SynthConfig, write_pacs_export

    with _clear_errors():
        try:
            config = SynthConfig(
                patients=patients, seed=seed, size=size, compression=compression, first_id=first_id, workers=workers
            )
        except ValueError as exc:
            raise LumbarError(str(exc)) from exc
        with rich_progress("patients", _show_progress()) as progress:
            write_pacs_export(out, config, progress.task("writing patients", patients))
    typer.echo(f"wrote {patients} patients to {out} (labels: {out / 'labels.csv'}, ground truth: {out / 'truth.csv'})")


@dataset_app.command("build")
def dataset_build(
    source: Annotated[Path, typer.Option("--source", help="PACS export folder (any tree of DICOM files).")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write.")],
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Grading CSV (patient_id,disc,disc_state,...).")
    ] = None,
    key_secret_env: Annotated[
        str | None,
        typer.Option(
            "--key-secret-env",
            help="Environment variable holding the pseudonymisation secret "
            "(default: LUMBAR_PSEUDONYM_SECRET if set, else a random secret for this build).",
        ),
    ] = None,
    split_by: Annotated[
        str, typer.Option(help="patient (no patient in two splits) | image (the paper's setting).")
    ] = "patient",
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes for indexing and decoding.")] = 1,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero on any problem in the input.")] = False,
    write_key: Annotated[
        Path | None,
        typer.Option("--write-key", help="Write the pseudonym -> PatientID key here (mode 0600; never inside --out)."),
    ] = None,
    series_map: Annotated[
        Path | None, typer.Option("--series-map", help="YAML file overriding the series identification keywords.")
    ] = None,
) -> None:
    """Build Dataset C: select, de-identify, label, crop and split the images of a PACS export."""
    from lumbar.dataset_c import BuildConfig, build_dataset_c
    from lumbar.dicom import SeriesRules
    from lumbar.progress import rich_progress

    with _clear_errors():
        rules = SeriesRules.from_yaml(series_map) if series_map else SeriesRules()
        config = BuildConfig(
            source=source,
            out=out,
            labels=labels,
            key_secret_env=key_secret_env,
            split_by=split_by,
            seed=seed,
            workers=workers,
            strict=strict,
            write_key=write_key,
            rules=rules,
        )
        with rich_progress("files", _show_progress()) as progress:
            result = build_dataset_c(config, progress)
    files = result.files
    typer.echo(
        f"built {result.out}: {result.patients} patients, {result.images} images ({result.labelled_images} labelled); "
        f"input files: {files.get('used', 0)} used, {files.get('not_needed', 0)} not needed, "
        f"{files.get('quarantined', 0)} quarantined; {result.problems} problem(s) listed in "
        f"{result.out / 'report.json'}"
    )
    if result.ephemeral_secret:
        typer.echo(
            "note: no pseudonymisation secret was given; pseudonyms are random for this build "
            "(set LUMBAR_PSEUDONYM_SECRET or --key-secret-env for stable ones)",
            err=True,
        )
    if not result.usable:
        typer.echo("error: nothing usable was built (no labelled images); see report.json", err=True)
        raise typer.Exit(1)
    if strict and result.problems:
        typer.echo(f"error: --strict and {result.problems} problem(s) in the input; see report.json", err=True)
        raise typer.Exit(1)


@dataset_app.command("describe")
def dataset_describe(dataset: Annotated[Path, typer.Argument(help="A dataset folder (with manifest.csv).")]) -> None:
    """Print a dataset's class counts per disc (paper Table 5) and its split sizes."""
    from rich.console import Console
    from rich.table import Table

    from lumbar.dataset_c import grade_table, read_manifest, split_table
    from lumbar.labels import FIELD_TITLES
    from lumbar.selection import DISC_LEVELS, DISCS

    with _clear_errors():
        rows = read_manifest(dataset)
    console = Console()
    table = Table(title=f"{dataset}: disc state per level (paper Table 5)")
    for name in (FIELD_TITLES["disc_state"], *(DISC_LEVELS[d] for d in DISCS), "Total"):
        table.add_column(name, justify="left" if name == FIELD_TITLES["disc_state"] else "right")
    for row in grade_table(rows, "disc_state"):
        table.add_row(*row)
    console.print(table)
    splits = Table(title="Split sizes (labelled disc images)")
    for name in ("Split", "Patients", "Images", "Normal", "Abnormal", "Abnormal %"):
        splits.add_column(name, justify="left" if name == "Split" else "right")
    for row in split_table(rows):
        splits.add_row(*row)
    console.print(splits)
    patients = {r["patient"] for r in rows}
    console.print(f"{len(rows)} images of {len(patients)} patients")


if __name__ == "__main__":  # pragma: no cover
    app()
