"""``lumbar label serve | merge``: the radiologists' grading page and the merging of two graders' files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors

app = typer.Typer(help="Grade Dataset C's patients in a web page; merge graders.", no_args_is_help=True)


@app.command("serve")
def label_serve(
    dataset: Annotated[str, typer.Option("--dataset", help="A Dataset C folder, or a published version URI.")],
    labels: Annotated[Path, typer.Option("--labels", help="The grading CSV to write (created when missing).")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", help="A further Host name to answer to, e.g. a reverse proxy's (repeatable)."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve a non-loopback --host without a password (anyone can grade).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Log every request.")] = False,
) -> None:
    """Serve the grading page; every change is saved to --labels at once (set LUMBAR_LABEL_PASSWORD for a password)."""
    import contextlib
    import logging

    from lumbar.label_server import PASSWORD_ENV, GradingServer, is_loopback
    from lumbar.paths import check_output_file

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s")

    with clear_errors():
        check_output_file(labels, "--labels")
        server = GradingServer(
            dataset, labels, host, port, verbose=verbose, allowed_hosts=allowed_host or (), insecure=insecure
        )
    # serve_forever returns, or raises KeyboardInterrupt, once Ctrl-C has let the open requests finish
    with contextlib.suppress(KeyboardInterrupt):
        progress = server.session.progress()
        typer.echo(
            f"grading {len(server.session.patients)} patients of {dataset} into {labels} "
            f"({progress['graded']} graded); open {server.url}"
            + (" (password required)" if server.password_required else "")
        )
        if not server.password_required and not is_loopback(host):
            typer.echo(
                f"WARNING: --insecure: {host} is served WITHOUT A PASSWORD; anyone who can reach it can read and "
                f"change every grade (set {PASSWORD_ENV} instead)",
                err=True,
            )
        server.serve_forever()
    typer.echo("stopped")


@app.command("merge")
def label_merge(
    first: Annotated[Path, typer.Argument(help="The first grader's CSV.")],
    second: Annotated[Path, typer.Argument(help="The second grader's CSV.")],
    out: Annotated[Path | None, typer.Option("--out", help="Merged grading CSV.")] = None,
    disagreements: Annotated[
        Path | None, typer.Option(help="CSV listing each disagreeing disc with both graders' grades.")
    ] = None,
    prefer: Annotated[
        str | None, typer.Option(help="first | second: resolve disagreements with that grader (default: leave out).")
    ] = None,
) -> None:
    """Combine two graders' files: agreements kept, disagreements reported per disc, Cohen's kappa per grade."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lumbar.grading import atomic_write_labels, merge_gradings, write_disagreements
    from lumbar.labels import FIELD_TITLES
    from lumbar.selection import DISC_LEVELS

    with clear_errors():
        result = merge_gradings(first, second, prefer)
        if out:
            atomic_write_labels(out, result.merged)
        if disagreements:
            write_disagreements(disagreements, result.disagreements)
    # ids and file names are printed literally: a patient id like "[/bold]" is text, not console markup
    console = Console()
    console.print(
        f"{result.both} discs graded by both, {result.only_first} only by {first.name}, "
        f"{result.only_second} only by {second.name}; {len(result.disagreements)} disagreement(s)",
        markup=False,
        highlight=False,
    )
    kappa = Table(title="Cohen's kappa between the two graders (discs graded by both)")
    kappa.add_column("grade")
    kappa.add_column("kappa", justify="right")
    for name, value in result.kappa.items():
        kappa.add_row(FIELD_TITLES[name], "–" if value is None else f"{value:.3f}")
    console.print(kappa)
    if result.disagreements:
        table = Table(title="Disagreements")
        for column in ("patient", "disc", "grades that differ", Text(first.name), Text(second.name)):
            table.add_column(column)
        for d in result.disagreements:
            table.add_row(
                Text(d["patient_id"]),
                DISC_LEVELS[d["disc"]],
                ", ".join(d["fields"]),
                " ".join(str(d["first"][f]) for f in d["fields"]),
                " ".join(str(d["second"][f]) for f in d["fields"]),
            )
        console.print(table)
    if out:
        left_out = "" if prefer else f"; {len(result.disagreements)} disagreeing disc(s) left out to adjudicate"
        console.print(f"merged grades written to {out} ({len(result.merged)} discs{left_out})", markup=False)
