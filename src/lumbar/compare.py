"""Comparison tables of a procedure's runs, in the layout of the paper's Tables 6-14.

One *row* is the evaluation of one trained configuration: a flat mapping with ``backbone``, ``mode``
(``frozen`` / ``finetune``), ``roi`` (bool), ``weights_source`` (``imagenet``, ``none``, ``supervised``,
``ssl``), the test metrics ``accuracy``, ``precision``, ``recall``, ``f1`` (fractions in [0, 1]) and,
when tracked, ``run_id``. Evaluate steps put exactly these keys in their ``Metrics`` artifact metadata,
so a compare step reads them from there (kfp.local keeps metrics only in the metadata).

* Procedure 1 (transfer from ImageNet): one table per image type and mode, backbones as rows with
  accuracy, precision, recall and F1 (the layout of the paper's Tables 6-9), then the ROI improvement
  per backbone and mode with the paper's Equation 8 (Table 10).
* Procedures 2 and 3 (MRI pretraining): backbones and modes as rows, the MRI-pretrained result beside the
  ImageNet result when one is given, and the improvement of MRI over ImageNet with Equation 8
  (Tables 11-14).

Numbers are printed as percentages with two decimals, as the paper prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lumbar.errors import InputError
from lumbar.evaluate import improvement_rate

METRICS = ("accuracy", "precision", "recall", "f1")
MODE_NAMES = {"frozen": "frozen backbone (transfer learning)", "finetune": "fine-tuned"}
SOURCE_NAMES = {
    "imagenet": "ImageNet",
    "none": "random initialisation",
    "supervised": "Dataset A (supervised, from scratch)",
    "ssl": "Dataset B (self-supervised)",
}
_VERSUS = ("Procedure 1 accuracy", "Procedure 1 F1", "Improvement rate")
BACKBONE_ORDER = ("vgg16", "vgg19", "resnet50", "mobilenetv2")
_REQUIRED = ("backbone", "mode", "roi", *METRICS)


def config_name(backbone: str, mode: str, roi: bool) -> str:
    """``<backbone>-<mode>-<roi|full>``: the name of one configuration (its MLflow run name)."""
    return f"{backbone}-{mode}-{'roi' if roi else 'full'}"


def as_bool(value: Any) -> bool:
    """Read a bool that may have travelled as text or a number through artifact metadata."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "roi")
    return bool(value)


def normalise_row(row: Mapping[str, Any], where: str = "row") -> dict[str, Any]:
    """Check one row and give its fields their types.

    Raises:
        InputError: Naming the first missing field.
    """
    missing = [key for key in _REQUIRED if key not in row]
    if missing:
        raise InputError(f"{where} has no {missing[0]!r} (an evaluate step's Metrics metadata is expected)")
    out = dict(row)
    out["roi"] = as_bool(row["roi"])
    out["weights_source"] = str(row.get("weights_source") or "imagenet")
    for key in METRICS:
        out[key] = float(row[key])
    return out


def _sort_key(row: Mapping[str, Any]) -> tuple:
    backbone = row["backbone"]
    rank = BACKBONE_ORDER.index(backbone) if backbone in BACKBONE_ORDER else len(BACKBONE_ORDER)
    return (rank, backbone, row["mode"] != "frozen", row["roi"])


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _rate(new: float | None, old: float | None) -> str:
    if new is None or old is None or old == 0:
        return "–"
    return f"{improvement_rate(new, old):+.2f} %"


def best(rows: Sequence[Mapping[str, Any]], metric: str = "f1") -> int:
    """Index of the row with the highest ``metric`` (ties: the first)."""
    if not rows:
        raise InputError("there is no evaluated run to choose from")
    values = [float(r[metric]) for r in rows]
    return values.index(max(values))


def _sources(rows: Iterable[Mapping[str, Any]]) -> str:
    names = dict.fromkeys(SOURCE_NAMES.get(r["weights_source"], r["weights_source"]) for r in rows)
    return " and ".join(names) or "–"


def _index(rows: Iterable[Mapping[str, Any]]) -> dict[tuple, dict[str, Any]]:
    table: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        table[(row["backbone"], row["mode"], row["roi"])] = dict(row)
    return table


@dataclass
class Cell:
    """One table cell: its text, the MLflow run it comes from, and the paper's value for it (if any)."""

    text: str
    run_id: str = ""
    paper: str = ""


@dataclass
class Table:
    """A comparison table: title, column names, rows of cells, and a note printed under it."""

    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""
    key: str = ""


def _paper(table: str, backbone: str, roi: bool, metric: str, mode: str | None) -> str:
    from lumbar.paper import paper_value

    value = paper_value(table, backbone, roi, metric, mode)
    return "" if value is None else f"{value:.2f}"


def procedure1_tables(rows: Sequence[Mapping[str, Any]]) -> list[Table]:
    """Procedure 1: one table per image type x mode (Tables 6-9 layout), then the ROI improvement (Table 10)."""
    rows = sorted((normalise_row(r, f"row {i + 1}") for i, r in enumerate(rows)), key=_sort_key)
    index = _index(rows)
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    note = f"Backbone weights: {_sources(rows)}."
    if any(r["weights_source"] != "imagenet" for r in rows):
        note += " Rows not from ImageNet weights are not the paper's transfer learning."
    tables = []
    for roi in (False, True):
        for mode in ("frozen", "finetune"):
            present = [b for b in backbones if (b, mode, roi) in index]
            if not present:
                continue
            table = Table(
                f"{'ROI' if roi else 'Full image'}, {MODE_NAMES[mode]}",
                ["Backbone", "Accuracy", "Precision", "Recall", "F1"],
                note=note,
                key=f"procedure1-{mode}-{'roi' if roi else 'full'}",
            )
            for b in present:
                row = index[(b, mode, roi)]
                table.rows.append(
                    [Cell(b)]
                    + [Cell(_pct(row[m]), row.get("run_id", ""), _paper("6-9", b, roi, m, mode)) for m in METRICS]
                )
            tables.append(table)
    rates = Table(
        "Improvement from the ROI (Equation 8 on accuracy; Table 10 layout)",
        ["Backbone", "Mode", "Accuracy, full image", "Accuracy, ROI", "Improvement rate"],
        key="procedure1-roi-improvement",
    )
    printed = _printed("table10_printed_rates")
    for b in backbones:
        for mode in ("frozen", "finetune"):
            full, roi = index.get((b, mode, False)), index.get((b, mode, True))
            if full is None and roi is None:
                continue
            old = full["accuracy"] if full else None
            new = roi["accuracy"] if roi else None
            rates.rows.append(
                [
                    Cell(b),
                    Cell(mode),
                    Cell(_pct(old), full.get("run_id", "") if full else "", _paper("10", b, False, "accuracy", None)),
                    Cell(_pct(new), roi.get("run_id", "") if roi else "", _paper("10", b, True, "accuracy", None)),
                    Cell(_rate(new, old), paper=printed.get(b, "")),
                ]
            )
    if rates.rows:
        tables.append(rates)
    return tables


def _printed(key: str) -> dict[str, str]:
    from lumbar.paper import PAPER

    return {backbone: f"{value:+d} %" for backbone, value in PAPER[key].items()}


def pretraining_tables(
    rows: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]] = (), source: str | None = None
) -> list[Table]:
    """Procedure 2 or 3: MRI-pretrained runs beside procedure 1's runs (Tables 11-14 layout).

    Args:
        rows: The procedure's runs (all from one pretraining source).
        baseline: Procedure 1's runs for the same backbones, modes and image type, if any.
        source: The pretraining source named in the heading (default: the rows' own).
    """
    rows = sorted((normalise_row(r, f"row {i + 1}") for i, r in enumerate(rows)), key=_sort_key)
    base_rows = [normalise_row(r, f"baseline row {i + 1}") for i, r in enumerate(baseline)]
    base = _index(base_rows)
    source = source or (rows[0]["weights_source"] if rows else "none")
    name = SOURCE_NAMES.get(source, source)
    note = f"Procedure 1 weights: {_sources(base_rows)}." if base_rows else ""
    if not base:
        note = "No procedure 1 runs were given, so there is no improvement rate to compute."
    table = Table(
        f"Pretrained on {name} vs procedure 1 (Equation 8 on accuracy; Tables 11-14 layout)",
        [*("Backbone", "Mode", "Image", "Accuracy", "Precision", "Recall", "F1"), *_VERSUS],
        note=note,
        key=f"pretrained-{source}",
    )
    printed = _printed("transfer_printed_rates") if source == "supervised" else {}
    for row in rows:
        ref = base.get((row["backbone"], row["mode"], row["roi"]))
        ref_id = ref.get("run_id", "") if ref else ""
        table.rows.append(
            [Cell(row["backbone"]), Cell(row["mode"]), Cell("ROI" if row["roi"] else "full")]
            + [Cell(_pct(row[m]), row.get("run_id", "")) for m in METRICS]
            + [
                Cell(_pct(ref["accuracy"] if ref else None), ref_id),
                Cell(_pct(ref["f1"] if ref else None), ref_id),
                Cell(_rate(row["accuracy"], ref["accuracy"] if ref else None), paper=printed.get(row["backbone"], "")),
            ]
        )
    return [table]


def to_markdown(tables: Sequence[Table]) -> str:
    """The tables as Markdown (notes printed once each, before the first table that carries them)."""
    parts, said = [], set()
    for table in tables:
        if table.note and table.note not in said:
            parts.append(table.note)
            said.add(table.note)
        lines = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |"]
        lines.append("|" + "|".join("---" if not i else "---:" for i in range(len(table.columns))) + "|")
        lines += ["| " + " | ".join(c.text for c in row) + " |" for row in table.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def compare_markdown(
    procedure: str,
    rows: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The comparison page of one procedure's runs (a heading, the tables, and the run list).

    Args:
        procedure: ``procedure1``, ``procedure2`` or ``procedure3``.
        rows: The procedure's evaluated runs.
        baseline: ImageNet runs to compare procedures 2 and 3 with.

    Raises:
        InputError: For an unknown procedure, no rows, or a row without a metric.
    """
    if procedure not in ("procedure1", "procedure2", "procedure3"):
        raise InputError(f"unknown procedure {procedure!r}; choose procedure1, procedure2 or procedure3")
    if not rows:
        raise InputError(f"{procedure} has no evaluated runs to compare")
    clean = [normalise_row(r, f"row {i + 1}") for i, r in enumerate(rows)]
    tables = procedure1_tables(clean) if procedure == "procedure1" else pretraining_tables(clean, baseline)
    body = to_markdown(tables)
    top = clean[best(clean)]
    runs = [
        f"- `{config_name(r['backbone'], r['mode'], r['roi'])}` ({r['weights_source']}): "
        + (f"MLflow run `{r['run_id']}`" if r.get("run_id") else "not tracked")
        for r in sorted(clean, key=_sort_key)
    ]
    return (
        f"## {procedure}: {len(clean)} configurations, test split\n\n"
        f"Best F1: **{_pct(top['f1'])}** ({top['backbone']}, {top['mode']}, "
        f"{'ROI' if top['roi'] else 'full image'}). Percentages; Equation 8: (new - old) / old x 100.\n\n"
        + body
        + "\n### Runs\n\n"
        + "\n".join(runs)
        + "\n"
    )
