"""``lumbar synth``: synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors, show_progress

app = typer.Typer(help="Generate synthetic data (realistic PACS exports).", no_args_is_help=True)


@app.command("pacs")
def synth_pacs(
    out: Annotated[Path, typer.Argument(help="Folder to write the export into (one sub-folder per patient).")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same export.")] = 0,
    size: Annotated[int, typer.Option(help="Matrix size of the sagittal and axial series (pixels).")] = 256,
    compression: Annotated[str, typer.Option(help="none | rle | j2k | mixed (transfer syntax of the files).")] = "none",
    first_id: Annotated[int, typer.Option(help="Number of the first patient id (P000001 for 1).")] = 1,
    workers: Annotated[int, typer.Option(help="Processes writing patients in parallel.")] = 1,
    phi_folders: Annotated[
        bool,
        typer.Option(
            "--phi-folders",
            help="Put identifiers in folder names (accession/NAME, institution/Name_birthdate) and in "
            "SeriesDescription, as careless real exports do (to test that no build output leaks them).",
        ),
    ] = False,
) -> None:
    """Write a synthetic lumbar-spine PACS export with labels.csv and truth.csv."""
    from lumbar.progress import rich_progress
    from lumbar.steps.options import config_from_options
    from lumbar.synth import SynthConfig, write_pacs_export

    with clear_errors():
        config = config_from_options(SynthConfig, locals())  # its InputError is the one-line message
        with rich_progress("patients", show_progress()) as progress:
            write_pacs_export(out, config, progress.task("writing patients", patients))
    typer.echo(f"wrote {patients} patients to {out} (labels: {out / 'labels.csv'}, ground truth: {out / 'truth.csv'})")
