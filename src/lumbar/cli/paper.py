"""``lumbar paper``: the paper's own numbers, its improvement rates recomputed, and an audit of its arithmetic."""

from __future__ import annotations

from typing import Annotated

import typer

from lumbar.cli._common import clear_errors

app = typer.Typer(
    help="The paper's Tables 6-14 as data: its metric cells, its improvement rates, and an audit of them.",
    no_args_is_help=True,
)

FORMATS: tuple[str, ...] = ("table", "csv")
_FORMAT = Annotated[str, typer.Option("--format", help="table (readable) | csv (machine-readable).")]


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def _check_format(fmt: str) -> None:
    from lumbar.errors import InputError

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")


def _write_csv(columns: tuple[str, ...], rows: list[list[str]]) -> None:
    import csv
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


_TEXT_COLUMNS = ("Table", "Source", "Backbone", "Note")


def _print_table(title: str, columns: list[str], rows: list[list[str]], caption: str = "") -> None:
    """A rich table; a long last "Note" column is printed as numbered notes under the table instead."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    notes: list[str] = []
    if columns[-1] == "Note":
        for row in rows:
            if row[-1]:
                notes.append(row[-1])
                row[-1] = f"[{len(notes)}]"
    table = Table(
        title=title, caption=caption or None, caption_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True
    )
    for column in columns:
        table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for number, note in enumerate(notes, start=1):
        console.print(f"[{number}] {note}", markup=False, highlight=False, soft_wrap=True)


@app.command("values")
def values(fmt: _FORMAT = "table") -> None:
    """Every metric cell of Tables 6-9, 11 and 13, in percent as printed (the paper's positive class: normal)."""
    from lumbar.paper import METRICS, SOURCE_TITLES, VALUES_COLUMNS, backbone_title, paper_cells

    with clear_errors():
        _check_format(fmt)
    cells = paper_cells()
    if fmt == "csv":
        _write_csv(
            VALUES_COLUMNS,
            [
                [str(c.table), c.source, c.backbone, _yes_no(c.roi), _yes_no(c.finetune), c.metric, c.text]
                for c in cells
            ],
        )
        return
    rows: dict[tuple, dict[str, str]] = {}
    for c in cells:
        key = (c.table, SOURCE_TITLES[c.source], backbone_title(c.backbone), _yes_no(c.roi) or "?", _yes_no(c.finetune))
        rows.setdefault(key, {})[c.metric] = c.text
    _print_table(
        "The paper's results (Tables 6-9, 11, 13), percent as printed",
        ["Table", "Source", "Backbone", "ROI", "FT", "Acc.", "Prec.", "Recall", "F1"],
        [[str(key[0]), *key[1:], *(metrics[m] for m in METRICS)] for key, metrics in rows.items()],
        caption="FT: fine-tuned. ROI '?': the paper does not say. Positive class: normal (see `lumbar paper audit`).",
    )


@app.command("rates")
def rates(fmt: _FORMAT = "table") -> None:
    """Equation 8 on the F1 pairs of Tables 10, 12 and 14: printed and recomputed, and where the paper disagrees."""
    from lumbar.paper import RATES_COLUMNS, backbone_title, paper_rates

    with clear_errors():
        _check_format(fmt)
    found = paper_rates()

    def row(r, backbone: str) -> list[str]:  # type: ignore[no-untyped-def]
        return [
            str(r.table),
            backbone,
            r.before_text,
            r.after_text,
            r.printed_rate_text,
            f"{r.recomputed_rate:.2f}",
            r.note,
        ]

    if fmt == "csv":
        _write_csv(RATES_COLUMNS, [row(r, r.backbone) for r in found])
        return
    _print_table(
        "The paper's improvement rates (Equation 8 on F1, fine-tuned runs)",
        ["Table", "Backbone", "F1 before", "F1 after", "Printed rate %", "Recomputed rate %", "Note"],
        [row(r, backbone_title(r.backbone)) for r in found],
    )


@app.command("audit")
def audit(fmt: _FORMAT = "table") -> None:
    """The integer confusion matrix (test size, positives, TP/FP/FN/TN) behind each metric row of the paper."""
    from lumbar.paper import AUDIT_COLUMNS, PAPER_POSITIVE, SOURCE_TITLES, backbone_title
    from lumbar.paper import audit as run_audit

    with clear_errors():
        _check_format(fmt)
    found = run_audit()

    def row(r, source: str, backbone: str) -> list[str]:  # type: ignore[no-untyped-def]
        counts = (_blank(v) for v in (r.n, r.positives, r.tp, r.fp, r.fn, r.tn))
        return [str(r.table), source, backbone, _yes_no(r.finetune), *counts, _yes_no(r.consistent), r.note]

    if fmt == "csv":
        _write_csv(AUDIT_COLUMNS, [row(r, r.source, r.backbone) for r in found])
        return
    shares = list(dict.fromkeys((r.n, r.positives) for r in found if r.consistent and r.n is not None and r.positives))
    caption = "FT: fine-tuned; P: positives; OK: one integer matrix reproduces all four printed metrics.\n"
    caption += "Test sets found: " + ", ".join(f"{n} images with {p} positives ({p / n:.0%})" for n, p in shares)
    caption += f"; the positives' share is that of {PAPER_POSITIVE} discs in Table 5, the paper's positive class."
    _print_table(
        "Audit: the integer confusion matrices behind the paper's printed metrics",
        ["Table", "Source", "Backbone", "FT", "n", "P", "TP", "FP", "FN", "TN", "OK", "Note"],
        [row(r, SOURCE_TITLES[r.source], backbone_title(r.backbone)) for r in found],
        caption=caption,
    )
