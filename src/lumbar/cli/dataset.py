"""``lumbar dataset``: build, describe, publish and fetch datasets."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors, show_progress
from lumbar.limits import ImageLimits
from lumbar.profiles import PAPER_IMAGE_SIZE

app = typer.Typer(help="Build, inspect, publish and fetch datasets.", no_args_is_help=True)

_CREATE_BUCKET = Annotated[bool, typer.Option("--create-bucket", help="Create a missing S3 bucket.")]
_LIMITS = ImageLimits()


@contextmanager
def _build_folder(out: str, name: str, create_bucket: bool) -> Iterator[Path]:
    """The local folder a build writes: ``out`` itself, or a temporary one when ``out`` is an s3:// URI.

    For a URI the credentials and the bucket are checked first, so a bad endpoint fails before the build.
    """
    from lumbar.storage import is_remote, open_store

    if not is_remote(out):
        yield Path(out)
        return
    open_store(out, create_bucket=create_bucket).exists("manifest.csv")
    with tempfile.TemporaryDirectory(prefix="lumbar-build-") as scratch:
        yield Path(scratch) / name


def _upload_if_remote(local: Path, out: str, progress):  # type: ignore[no-untyped-def]
    """Upload a built folder to ``out`` when it is an s3:// URI; returns the transfer, or None."""
    from lumbar.storage import is_remote, open_store

    if not is_remote(out):
        return None
    return open_store(out).put_tree(local, progress=progress.task("uploading", None))


def _fractions(text: str) -> tuple[float, float, float]:
    """Parse ``--fractions TRAIN,VAL,TEST`` (the build config checks that they sum to 1)."""
    from lumbar.errors import InputError

    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"--fractions {text!r} must be three numbers, e.g. 0.75,0.15,0.10")
    return values  # type: ignore[return-value]


@app.command("build")
def dataset_build(
    source: Annotated[Path, typer.Option("--source", help="PACS export folder (any tree of DICOM files).")],
    out: Annotated[str, typer.Option("--out", help="Dataset folder to write, or an s3:// URI to upload it to.")],
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
    fractions: Annotated[
        str,
        typer.Option(
            help="Train,validation,test shares (paper: 0.75,0.15,0.10; a small train share probes few labels)."
        ),
    ] = "0.75,0.15,0.10",
    workers: Annotated[int, typer.Option(help="Processes for indexing and decoding.")] = 1,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero on any problem in the input.")] = False,
    write_key: Annotated[
        Path | None,
        typer.Option(
            "--write-key",
            help="Write the pseudonym -> PatientID key here and the file token -> source path map beside it "
            "(<stem>-files.csv); mode 0600, never inside --out.",
        ),
    ] = None,
    series_map: Annotated[
        Path | None, typer.Option("--series-map", help="YAML file overriding the series identification keywords.")
    ] = None,
    publish: Annotated[
        str | None,
        typer.Option(
            "--publish",
            help="Also publish the dataset as an immutable version to this store "
            "(<store>/datasets/<name>/<hash>/, with a 'latest' pointer).",
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Dataset name used by --publish.")] = "dataset-c",
    create_bucket: _CREATE_BUCKET = False,
    max_image_size: Annotated[
        int, typer.Option(help="Largest Rows or Columns a file may declare; larger files are quarantined.")
    ] = _LIMITS.max_size,
    min_image_size: Annotated[
        int, typer.Option(help="Least Rows and Columns of an image used; smaller (degenerate) ones are quarantined.")
    ] = _LIMITS.min_size,
    max_frames: Annotated[
        int, typer.Option(help="Most frames one file may declare; files declaring more are quarantined.")
    ] = _LIMITS.max_frames,
    max_frame_mb: Annotated[
        float,
        typer.Option(help="Largest decoded frame in MiB (Rows x Columns x samples x bytes); larger: quarantined."),
    ] = _LIMITS.max_frame_bytes / 2**20,
) -> None:
    """Build Dataset C: select, de-identify, label, crop and split the images of a PACS export."""
    from lumbar.dataset_c import BuildConfig, build_dataset_c
    from lumbar.dicom import SeriesRules
    from lumbar.progress import rich_progress
    from lumbar.storage import is_remote
    from lumbar.versions import publish_dataset

    remote = is_remote(out)
    with clear_errors(unexpected="the build"), _build_folder(out, "dataset-c", create_bucket) as local_out:
        rules = SeriesRules.from_yaml(series_map) if series_map else SeriesRules()
        limits = ImageLimits(min_image_size, max_image_size, max_frames, round(max_frame_mb * 2**20))
        config = BuildConfig(
            source=source,
            out=local_out,
            labels=labels,
            key_secret_env=key_secret_env,
            split_by=split_by,
            seed=seed,
            fractions=_fractions(fractions),
            workers=workers,
            strict=strict,
            write_key=write_key,
            rules=rules,
            limits=limits,
        )
        with rich_progress("files", show_progress()) as progress:
            result = build_dataset_c(config, progress)
            uploaded = _upload_if_remote(local_out, out, progress)
            if publish:
                version = publish_dataset(
                    local_out, publish, name, create_bucket=create_bucket, progress=progress.task("publishing", None)
                )
    files = result.files
    where = out if remote else result.out
    typer.echo(
        f"built {where}: {result.patients} patients, {result.images} images ({result.labelled_images} labelled); "
        f"input files: {files.get('used', 0)} used, {files.get('not_needed', 0)} not needed, "
        f"{files.get('quarantined', 0)} quarantined; {result.problems} problem(s) listed in {where}/report.json"
    )
    if uploaded is not None:
        typer.echo(f"uploaded {uploaded.transferred} files to {out} ({uploaded.skipped} unchanged)")
    if publish:
        typer.echo(f"published {version.uri} (version {version.version}; latest -> it)")
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


import_app = typer.Typer(help="Import a public dataset into Dataset C's format.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("spider")
def dataset_import_spider(
    source: Annotated[Path, typer.Option("--source", help="SPIDER folder (boxed/, discs/, slices/, gradings).")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write.")],
    sequences: Annotated[
        str, typer.Option(help="Sequences to import, comma-separated: t2 (the paper's), t1, t2_space.")
    ] = "t2",
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    fractions: Annotated[str, typer.Option(help="Train,validation,test shares of patients.")] = "0.70,0.15,0.15",
    key_secret_env: Annotated[
        str | None,
        typer.Option(
            "--key-secret-env",
            help="Environment variable holding a pseudonymisation secret (default: the key declared for public "
            "data, so every import splits the same way).",
        ),
    ] = None,
    publish: Annotated[
        str | None, typer.Option("--publish", help="Also publish it as an immutable version to this store.")
    ] = None,
    name: Annotated[str, typer.Option(help="Dataset name used by --publish.")] = "spider",
    create_bucket: _CREATE_BUCKET = False,
) -> None:
    """Import SPIDER's real lumbar MRI (van der Graaf et al. 2024, CC BY 4.0) as a Dataset C folder."""
    import os

    from lumbar.errors import InputError
    from lumbar.progress import rich_progress
    from lumbar.spider import CREDIT, SpiderConfig, import_spider
    from lumbar.versions import publish_dataset

    with clear_errors(unexpected="the import"):
        secret = None
        if key_secret_env:
            secret = os.environ.get(key_secret_env, "")
            if not secret:
                raise InputError(f"--key-secret-env {key_secret_env}: that environment variable is not set")
        config = SpiderConfig(
            source=source,
            out=out,
            sequences=tuple(sequences.split(",")),
            fractions=_fractions(fractions),
            seed=seed,
            secret=secret,
        )
        with rich_progress("series", show_progress()) as progress:
            result = import_spider(config, progress)
            if publish:
                version = publish_dataset(
                    result.out, publish, name, create_bucket=create_bucket, progress=progress.task("publishing", None)
                )
    files = result.files
    typer.echo(
        f"imported {result.out}: {result.patients} patients, {result.images} disc images "
        f"({result.labelled_images} labelled), version {result.version}; input files: {files.get('used', 0)} used, "
        f"{files.get('not_needed', 0)} not needed, {files.get('quarantined', 0)} quarantined "
        f"(reasons in {result.out}/report.json)"
    )
    if publish:
        typer.echo(f"published {version.uri} (version {version.version}; latest -> it)")
    typer.echo(f"credit (CC BY 4.0): {CREDIT}")


@app.command("baselines")
def dataset_baselines(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder with labelled train and test discs.")],
    split: Annotated[str, typer.Option(help="The split scored: test | val.")] = "test",
) -> None:
    """One-feature baselines fitted on the training patients: the disc's level alone, its brightness alone."""
    from lumbar.baselines import evaluate_baselines

    with clear_errors():
        results = evaluate_baselines(dataset, split=split)
    for b in results:
        auc = "n/a" if b.auc is None else f"{b.auc:.3f} ({b.auc_interval[0]:.2f}-{b.auc_interval[1]:.2f})"
        typer.echo(
            f"{b.name:<10} ROC-AUC {auc}  F1 {b.f1:.3f} ({b.f1_interval[0]:.2f}-{b.f1_interval[1]:.2f}) on "
            f"{b.support} {split} discs; fitted on train: {'larger' if b.sign > 0 else 'smaller'} is abnormal"
        )
    typer.echo("(95 % intervals: bootstrap over the test patients)")


@app.command("describe")
def dataset_describe(
    dataset: Annotated[str, typer.Argument(help="A dataset folder or a published version URI.")],
) -> None:
    """Print a dataset's class counts per disc (paper Table 5) and its split sizes."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lumbar.dataset_c import grade_table, read_manifest, split_table
    from lumbar.labels import FIELD_TITLES
    from lumbar.selection import DISC_LEVELS, DISCS
    from lumbar.versions import fetch_dataset

    with clear_errors():
        rows = read_manifest(fetch_dataset(dataset))
    console = Console()
    table = Table(title=Text(f"{dataset}: disc state per level (paper Table 5)"))  # a path is text, not markup
    for column in (FIELD_TITLES["disc_state"], *(DISC_LEVELS[d] for d in DISCS), "Total"):
        table.add_column(column, justify="left" if column == FIELD_TITLES["disc_state"] else "right")
    for row in grade_table(rows, "disc_state"):
        table.add_row(*row)
    console.print(table)
    splits = Table(title="Split sizes (labelled disc images)")
    for column in ("Split", "Patients", "Images", "Normal", "Abnormal", "Abnormal %"):
        splits.add_column(column, justify="left" if column == "Split" else "right")
    for row in split_table(rows):
        splits.add_row(*row)
    console.print(splits)
    console.print(f"{len(rows)} images of {len({r['patient'] for r in rows})} patients")


@app.command("publish")
def dataset_publish(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder (with manifest.csv).")],
    store: Annotated[str, typer.Option("--store", help="Store root: s3://bucket/prefix, file:///path or a folder.")],
    name: Annotated[str, typer.Option(help="Dataset name.")] = "dataset-c",
    create_bucket: _CREATE_BUCKET = False,
) -> None:
    """Publish a dataset as an immutable, content-addressed version and point 'latest' at it."""
    from lumbar.progress import rich_progress
    from lumbar.versions import publish_dataset

    with clear_errors(), rich_progress("files", show_progress()) as progress:
        version = publish_dataset(
            dataset, store, name, create_bucket=create_bucket, progress=progress.task("publishing", None)
        )
    if version.already_published and version.repaired:
        state = (
            f"already published; {version.verified} objects verified, {len(version.repaired)} failed their checksum "
            f"and were uploaded again: {', '.join(version.repaired[:5])}{' ...' if len(version.repaired) > 5 else ''}"
        )
    elif version.already_published:
        state = f"already published; {version.verified} objects verified intact"
    else:
        state = f"{version.uploaded} files uploaded"
    typer.echo(f"{version.uri} (version {version.version}; {state}; latest -> it)")


@app.command("fetch")
def dataset_fetch(
    uri: Annotated[str, typer.Argument(help="A published version: .../datasets/<name>[/latest|/<version>].")],
    cache: Annotated[Path | None, typer.Option(help="Cache folder (default: <data dir>/cache).")] = None,
) -> None:
    """Download a published dataset version once into the local cache and print its folder."""
    from lumbar.progress import rich_progress
    from lumbar.versions import fetch_dataset

    with clear_errors(), rich_progress("files", show_progress()) as progress:
        folder = fetch_dataset(uri, cache, progress=progress.task("downloading", None))
    typer.echo(str(folder))


@app.command("build-labelled")
def dataset_build_labelled(
    source: Annotated[
        list[str], typer.Option("--source", help="NAME=DIR: a collection whose sub-folders are classes.")
    ],
    out: Annotated[str, typer.Option("--out", help="Dataset folder to write, or an s3:// URI to upload it to.")],
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="YAML mapping class folders to normal/abnormal (default: the paper's mapping)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    max_size: Annotated[int, typer.Option(help="Longest side of the written images, in pixels.")] = 512,
    workers: Annotated[int, typer.Option(help="Processes for decoding.")] = 1,
    create_bucket: _CREATE_BUCKET = False,
) -> None:
    """Build Dataset A: labelled MRI collections mapped to normal/abnormal, deduplicated, split 85/15."""
    from lumbar.dataset_a import ClassMapping, LabelledBuildConfig, build_dataset_a
    from lumbar.errors import InputError
    from lumbar.progress import rich_progress

    with clear_errors(), _build_folder(out, "dataset-a", create_bucket) as local_out:
        pairs = []
        for item in source:
            name, sep, folder = item.partition("=")
            if not sep or not name or not folder:
                raise InputError(f"--source {item!r} must be NAME=DIR")
            pairs.append((name, Path(folder)))
        config = LabelledBuildConfig(
            sources=tuple(pairs),
            out=local_out,
            mapping=ClassMapping.from_yaml(mapping) if mapping else ClassMapping.paper(),
            seed=seed,
            max_size=max_size,
            workers=workers,
        )
        with rich_progress("images", show_progress()) as progress:
            summary = build_dataset_a(config, progress)
            _upload_if_remote(local_out, out, progress)
    typer.echo(
        f"built {out}: {summary['used']} images ({summary['duplicates']} duplicates removed, "
        f"{summary['unmapped']} unmapped, {summary['quarantined']} quarantined of {summary['files']} files); "
        f"see {out}/report.json"
    )


@app.command("build-unlabelled")
def dataset_build_unlabelled(
    source: Annotated[
        list[Path], typer.Option("--source", help="Folder of DICOM (any series) and images; repeatable.")
    ],
    out: Annotated[str, typer.Option("--out", help="Shard folder, or an s3:// URI (shards upload as they close).")],
    shard_size: Annotated[float, typer.Option("--shard-size", help="Target shard size in MB.")] = 100.0,
    image_size: Annotated[int, typer.Option(help="Side of the square grey images, in pixels.")] = PAPER_IMAGE_SIZE,
    workers: Annotated[int, typer.Option(help="Processes decoding inputs.")] = 1,
    key_secret_env: Annotated[
        str | None, typer.Option("--key-secret-env", help="Environment variable holding the pseudonymisation secret.")
    ] = None,
    fit: Annotated[
        str,
        typer.Option(
            help="How non-square images become square: pad (black borders) or stretch (as lumbar train --roi "
            "resizes ROI crops; use it for a Dataset B of ROI crops)."
        ),
    ] = "pad",
    create_bucket: _CREATE_BUCKET = False,
) -> None:
    """Build Dataset B: every DICOM frame and image as grey PNG in TFRecord shards (resumable)."""
    import hashlib

    from lumbar.cli._common import load_tensorflow
    from lumbar.dataset_b import UnlabelledBuildConfig, build_dataset_b
    from lumbar.paths import data_dir
    from lumbar.progress import rich_progress
    from lumbar.storage import is_remote, open_store

    load_tensorflow()
    with clear_errors():
        remote = is_remote(out)
        upload = None
        local = Path(out)
        if remote:
            store = open_store(out, create_bucket=create_bucket)
            local = data_dir() / "cache" / "staging" / hashlib.sha256(out.encode()).hexdigest()[:16]

            def upload(index: Path) -> None:
                for path in sorted(local.rglob("*")):
                    if path.is_file() and not path.name.endswith(".tmp") and path.name != "index.json":
                        store.put_file(path, path.relative_to(local).as_posix())
                store.put_file(index, "index.json")  # last: the index never names a shard not yet uploaded

        config = UnlabelledBuildConfig(
            sources=tuple(source),
            out=local,
            image_size=image_size,
            shard_mb=shard_size,
            workers=workers,
            key_secret_env=key_secret_env,
            fit=fit,
        )
        with rich_progress("images", show_progress()) as progress:
            summary = build_dataset_b(config, progress, on_shard=upload)
    counts = summary.counts
    typer.echo(
        f"wrote {summary.images} images in {summary.shards} shard(s) to {out} from {summary.files} inputs "
        f"({counts.get('used', 0)} used, {counts.get('skipped', 0)} skipped, {counts.get('quarantined', 0)} "
        f"quarantined)" + (f"; resumed after input {summary.resumed_from}" if summary.resumed_from else "")
    )
