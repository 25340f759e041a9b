"""Comparison tables of a procedure's runs, in the layout of the paper's Tables 6-14, beside the paper's numbers.

One *row* is the evaluation of one trained configuration: a flat mapping with ``backbone``, ``mode``
(``frozen`` / ``finetune``), ``roi`` (bool), ``weights_source`` (``imagenet``, ``none``, ``supervised``,
``ssl``), the test metrics of both positive views (``normal_accuracy`` ... ``abnormal_f1``, fractions in
[0, 1]), ``normal_positives`` and ``support`` (the test-set size) and, when tracked, ``run_id``. Evaluate
steps put exactly these keys in their ``Metrics`` artifact metadata (:func:`evaluation_row` builds them),
so a compare step reads them from there (kfp.local keeps metrics only in the metadata).

Every table stands beside the paper's numbers, so every table uses the paper's positive class
(:data:`lumbar.paper.PAPER_POSITIVE`, normal) and says so in its title, whatever view an evaluation chose:

* Tables 6-9 (procedure 1): one table per image type and mode, backbones as rows, the paper's four metrics
  beside ours, the test-set size and positives beside the paper's, the 95 % Wilson interval of each accuracy
  (with a warning where it is wider than +-10 points) and the majority-class F1.
* Table 10: the paper's Equation 8 on the F1 of the fine-tuned runs, full image vs ROI, with the paper's
  printed and recomputed rates and its inconsistencies; the frozen runs' ROI rates follow as ours only.
* Tables 11 and 13 (procedures 2 and 3): the pretrained runs beside the paper's cells.
* Tables 12 and 14: Equation 8 on F1 of the fine-tuned pretrained runs against procedure 1's fine-tuned
  full-image F1, as the paper does; then ours only: each run against procedure 1 in the same mode and image.

Numbers are printed as percentages with two decimals, as the paper prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lumbar.backbones import MODE_TITLES, backbone_rank, backbone_title, config_name, weights_source
from lumbar.errors import InputError, check_choice
from lumbar.metrics import (
    METRIC_NAMES,
    METRICS,
    POSITIVES,
    improvement_rate,
    majority_f1,
    view_key,
    wilson_interval,
)
from lumbar.paper import METRICS as PAPER_METRICS
from lumbar.paper import PAPER_POSITIVE, audit, paper_metric, paper_rates, paper_test_set
from lumbar.procedures import PROCEDURES, procedure_of_source

SOURCE_NAMES = {
    "imagenet": "ImageNet",
    "none": "random initialisation",
    "supervised": "Dataset A (supervised, from scratch)",
    "ssl": "Dataset B (self-supervised)",
}
#: The paper's metric table of each (roi, mode) of procedure 1.
PROCEDURE1_TABLES = {(False, "frozen"): 6, (False, "finetune"): 7, (True, "frozen"): 8, (True, "finetune"): 9}
#: Per pretraining procedure: the paper's metric table, its rate table, and the paper's source name.
PRETRAINING_TABLES = {
    p.name: (p.metric_tables[0], p.rate_table, p.paper_source)
    for p in PROCEDURES.values()
    if p.weights_source != "imagenet"
}
#: A 95 % interval on accuracy wider than this (half-width, as a fraction) is too wide to compare with.
TOO_WIDE = 0.10
_REQUIRED = ("backbone", "mode", "roi", *(view_key(PAPER_POSITIVE, m) for m in METRIC_NAMES))
_POSITIVE_NOTE = f"positive class {PAPER_POSITIVE}, as in the paper"
_ORIGINS = {"synthetic": "ours on synthetic data", "real": "ours on real data", "unknown": "ours"}


def as_bool(value: Any) -> bool:
    """Read a bool that may have travelled as text or a number through artifact metadata."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "roi")
    return bool(value)


def _number(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def evaluation_row(metrics: Mapping[str, Any], model_info: Mapping[str, Any]) -> dict[str, Any]:
    """The row of one evaluated configuration, from its evaluation's metrics and its model's ``model.json``.

    It carries both positive views (``normal_f1``, ``abnormal_f1``, ...), each view's count of positives,
    the test-set size (``support``), and the chosen view under the plain metric names.
    """
    config = model_info["config"]
    views: dict[str, float | int] = {
        view_key(p, k): float(metrics[view_key(p, k)]) for p in POSITIVES for k in METRIC_NAMES
    }
    views.update({view_key(p, "positives"): int(metrics[view_key(p, "positives")]) for p in POSITIVES})
    return {
        "name": config_name(config["backbone"], config["mode"], config["roi"]),
        "backbone": config["backbone"],
        "mode": config["mode"],
        "roi": bool(config["roi"]),
        "weights_source": weights_source(str(config["weights"])),
        "run_id": model_info.get("run_id") or "",
        "dataset_version": model_info.get("dataset_version") or "",
        "positive": str(metrics.get("positive", "")),
        "support": int((metrics.get("binary") or metrics)["support"]),
        **{k: float(metrics[k]) for k in METRIC_NAMES},
        **views,
    }


def normalise_row(row: Mapping[str, Any], where: str = "row") -> dict[str, Any]:
    """Check one row and give its fields their types.

    Metric values may be None (an old run that recorded only the other view): they print as "–".

    Raises:
        InputError: Naming the first missing field.
    """
    missing = [key for key in _REQUIRED if key not in row]
    if missing:
        raise InputError(f"{where} has no {missing[0]!r} (an evaluate step's Metrics metadata is expected)")
    out = dict(row)
    out["roi"] = as_bool(row["roi"])
    out["weights_source"] = str(row.get("weights_source") or "imagenet")
    for key in (*_REQUIRED[3:], "support", view_key(PAPER_POSITIVE, "positives")):
        out[key] = _number(row.get(key))
    return out


def _sort_key(row: Mapping[str, Any]) -> tuple:
    """Table order: backbones in registry order (:data:`lumbar.backbones.BACKBONES`), frozen first, full first."""
    backbone = row["backbone"]
    return (backbone_rank(backbone), backbone, row["mode"] != "frozen", row["roi"])


def paper_view(row: Mapping[str, Any], metric: str) -> float | None:
    """A row's metric in the paper's view (normal positive)."""
    return row.get(view_key(PAPER_POSITIVE, metric))


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
    values = [float(r[metric]) if r.get(metric) is not None else float("-inf") for r in rows]
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
    """One table cell: its text, the MLflow run it comes from, the paper's value, and a warning beside it."""

    text: str
    run_id: str = ""
    paper: str = ""
    warning: str = ""


@dataclass
class Table:
    """A comparison table: title, column names, rows of cells, and notes printed under the title."""

    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key: str = ""


def accuracy_interval(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """The 95 % Wilson interval of a row's accuracy, or None without the test-set size."""
    n, accuracy = row.get("support"), paper_view(row, "accuracy")
    if not n or accuracy is None:
        return None
    return wilson_interval(round(accuracy * n), int(n))


def too_small(row: Mapping[str, Any]) -> str:
    """A warning when the row's test split is too small to compare (accuracy interval wider than +-10 points)."""
    interval = accuracy_interval(row)
    if interval is None:
        return ""
    half = (interval[1] - interval[0]) / 2
    return f"split too small to compare (95% CI ±{100 * half:.1f} points)" if half > TOO_WIDE else ""


def row_majority_f1(row: Mapping[str, Any]) -> float | None:
    """F1 of always predicting the majority class on the row's test split, in the paper's view."""
    n, positives = row.get("support"), row.get(view_key(PAPER_POSITIVE, "positives"))
    if not n or positives is None:
        return None
    return majority_f1(int(n), int(positives))


def _test_set_cell(row: Mapping[str, Any], table: int | None) -> Cell:
    n, positives = row.get("support"), row.get(view_key(PAPER_POSITIVE, "positives"))
    text = "–" if not n or positives is None else f"{int(n)} / {int(positives)}"
    paper = ""
    if table is not None:
        paper_n, paper_positives = paper_test_set(table)
        paper = f"{paper_n} / {paper_positives}"
    return Cell(text, paper=paper)


def _metric_cells(row: Mapping[str, Any], paper: Mapping[str, str]) -> list[Cell]:
    """Accuracy with its interval, precision, recall, F1 (warned when not above the majority class), majority F1."""
    run_id = row.get("run_id", "")
    cells = []
    for metric in METRIC_NAMES:
        value = paper_view(row, metric)
        text, warning = _pct(value), ""
        if metric == "accuracy":
            interval = accuracy_interval(row)
            if interval is not None and value is not None:
                text += f" [{100 * interval[0]:.1f}–{100 * interval[1]:.1f}]"
            warning = too_small(row)
        if metric == "f1":
            majority = row_majority_f1(row)
            if value is not None and majority is not None and value <= majority:
                warning = "not above the majority-class F1"
        cells.append(Cell(text, run_id, paper.get(metric, ""), warning))
    cells.append(Cell(_pct(row_majority_f1(row))))
    return cells


def _metric_columns() -> list[str]:
    titles = [f"{m.title} %" for m in METRICS]
    titles[0] += " [95% CI]"
    return ["Test images / normal", *titles, "Majority-class F1 %"]


def _audit_notes(table: int) -> list[str]:
    notes = []
    for r in audit():
        if r.table == table and not r.consistent:
            mode = f" ({'fine-tuned' if r.finetune else 'frozen'})" if table in (11, 13) else ""
            name = f"{backbone_title(r.backbone)}{mode}"
            notes.append(f"The paper's {name} row fits no integer confusion matrix: {r.note}.")
    return notes


def _origin_label(origin: str) -> str:
    return _ORIGINS.get(origin, "ours")


def procedure1_tables(rows: Sequence[Mapping[str, Any]], origin: str = "unknown") -> list[Table]:
    """Procedure 1: Tables 6-9 (one per image type x mode), Table 10 on fine-tuned F1, and the frozen ROI rates.

    Args:
        rows: Procedure 1's evaluated runs.
        origin: ``synthetic``, ``real`` or ``unknown``: where our numbers come from (said in each title).
    """
    rows = sorted((normalise_row(r, f"row {i + 1}") for i, r in enumerate(rows)), key=_sort_key)
    index = _index(rows)
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    weights = f"Backbone weights: {_sources(rows)}."
    if any(r["weights_source"] != "imagenet" for r in rows):
        weights += " Rows not from ImageNet weights are not the paper's transfer learning."
    ours = _origin_label(origin)
    tables = []
    for (roi, mode), number in PROCEDURE1_TABLES.items():
        present = [b for b in backbones if (b, mode, roi) in index]
        if not present:
            continue
        table = Table(
            f"Table {number}: {'ROI' if roi else 'full image'}, {MODE_TITLES[mode]} ({_POSITIVE_NOTE}; {ours})",
            ["Backbone", *_metric_columns()],
            notes=[weights, *_audit_notes(number)],
            key=f"table{number}",
        )
        for b in present:
            row = index[(b, mode, roi)]
            paper = {m: _paper_text("imagenet", b, roi, mode, m) for m in METRIC_NAMES}
            table.rows.append([Cell(b), _test_set_cell(row, number), *_metric_cells(row, paper)])
        tables.append(table)
    rates = {r.backbone: r for r in paper_rates() if r.table == 10}
    table10 = _rate_table(
        f"Table 10: improvement from the ROI, Equation 8 on F1 of the fine-tuned runs ({_POSITIVE_NOTE}; {ours})",
        "F1 % full image, fine-tuned",
        "F1 % ROI, fine-tuned",
        [(b, index.get((b, "finetune", False)), index.get((b, "finetune", True)), rates.get(b)) for b in backbones],
        key="table10",
    )
    if table10.rows:
        tables.append(table10)
    frozen = Table(
        f"Ours only: improvement from the ROI in frozen mode, Equation 8 on F1 (the paper has no such table; "
        f"{_POSITIVE_NOTE}; {ours})",
        ["Backbone", "F1 % full image, frozen", "F1 % ROI, frozen", "Improvement rate"],
        key="roi-frozen-ours",
    )
    for b in backbones:
        full, roi_row = index.get((b, "frozen", False)), index.get((b, "frozen", True))
        if full is not None and roi_row is not None:
            frozen.rows.append([Cell(b), *_f1_pair(full, roi_row)])
    if frozen.rows:
        tables.append(frozen)
    return tables


def _paper_text(source: str, backbone: str, roi: bool | None, mode: str, metric: str) -> str:
    if metric not in PAPER_METRICS:  # a metric of ours the paper does not print: no paper value beside it
        return ""
    cell = paper_metric(source, backbone, roi, mode == "finetune", metric)
    return "" if cell is None else cell.text


def _f1_cell(row: Mapping[str, Any] | None, paper: str = "") -> Cell:
    if row is None:
        return Cell("–", paper=paper)
    return Cell(_pct(paper_view(row, "f1")), row.get("run_id", ""), paper, too_small(row))


def _f1_pair(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, paper: Any = None) -> list[Cell]:
    """The old and new F1 cells and Equation 8 between them (the paper's pair and printed rate beside)."""
    old_f1 = paper_view(old, "f1") if old else None
    new_f1 = paper_view(new, "f1") if new else None
    return [
        _f1_cell(old, paper.before_text if paper else ""),
        _f1_cell(new, paper.after_text if paper else ""),
        Cell(_rate(new_f1, old_f1), paper=f"{paper.printed_rate:+.0f} %" if paper else ""),
    ]


def _rate_table(title: str, old: str, new: str, pairs: Sequence[tuple], key: str, image: bool = False) -> Table:
    """A table of Equation 8 on F1 with the paper's pair, printed and recomputed rate, and its inconsistency."""
    columns = ["Backbone", *(["Image"] if image else []), old, new, "Improvement rate"]
    paper_columns = ["Paper's rate: printed / recomputed", "Where the paper contradicts itself"]
    table = Table(title, [*columns, *paper_columns], key=key)
    for backbone, *rest in pairs:
        label = [Cell(backbone)]
        if image:
            label.append(Cell(rest.pop(0)))
        base, row, paper = rest
        if base is None and row is None:
            continue
        printed = f"{paper.printed_rate_text} % / {paper.recomputed_rate:.2f} %" if paper else "–"
        table.rows.append([*label, *_f1_pair(base, row, paper), Cell(printed), Cell(paper.note if paper else "")])
    return table


def pretraining_tables(
    rows: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]] = (),
    source: str | None = None,
    procedure: str | None = None,
    origin: str = "unknown",
) -> list[Table]:
    """Procedure 2 or 3: Table 11 or 13 (the runs beside the paper's cells), Table 12 or 14, and ours only.

    Args:
        rows: The procedure's runs (all from one pretraining source).
        baseline: Procedure 1's runs, if any.
        source: The pretraining source named in the heading (default: the rows' own).
        procedure: ``procedure2`` or ``procedure3``: which of the paper's tables (default: from the source).
        origin: ``synthetic``, ``real`` or ``unknown``: where our numbers come from (said in each title).
    """
    rows = sorted((normalise_row(r, f"row {i + 1}") for i, r in enumerate(rows)), key=_sort_key)
    base_rows = [normalise_row(r, f"baseline row {i + 1}") for i, r in enumerate(baseline)]
    base = _index(base_rows)
    source = source or (rows[0]["weights_source"] if rows else "none")
    by_source = procedure_of_source(source)
    procedure = procedure or (by_source.name if by_source else next(iter(PRETRAINING_TABLES)))
    if procedure not in PRETRAINING_TABLES:
        raise InputError(f"procedure must be one of {', '.join(PRETRAINING_TABLES)}, got {procedure!r}")
    metric_number, rate_number, paper_source = PRETRAINING_TABLES[procedure]
    name = SOURCE_NAMES.get(source, source)
    ours = _origin_label(origin)
    baseline_note = f"Procedure 1 weights: {_sources(base_rows)}." if base_rows else ""
    if not base:
        baseline_note = "No procedure 1 runs were given, so there is no improvement rate to compute."
    metrics = Table(
        f"Table {metric_number}: pretrained on {name} ({_POSITIVE_NOTE}; {ours})",
        ["Backbone", "Mode", "Image", *_metric_columns()],
        notes=[
            "The paper does not say whether its Tables 11 and 13 used the ROI: its cells stand beside both images.",
            *_audit_notes(metric_number),
        ],
        key=f"table{metric_number}",
    )
    for row in rows:
        b, mode, roi = row["backbone"], row["mode"], row["roi"]
        paper = {m: _paper_text(paper_source, b, roi, mode, m) for m in METRIC_NAMES}
        label = [Cell(b), Cell(mode), Cell("ROI" if roi else "full")]
        metrics.rows.append([*label, _test_set_cell(row, metric_number), *_metric_cells(row, paper)])
    rates = {r.backbone: r for r in paper_rates() if r.table == rate_number}
    paper_rate = _rate_table(
        f"Table {rate_number}: fine-tuned from {name} vs procedure 1 fine-tuned on full images, Equation 8 on F1, "
        f"as the paper ({_POSITIVE_NOTE}; {ours})",
        "F1 % procedure 1, full image, fine-tuned",
        f"F1 % from {name}, fine-tuned",
        [
            (
                r["backbone"],
                "ROI" if r["roi"] else "full",
                base.get((r["backbone"], "finetune", False)),
                r,
                rates.get(r["backbone"]),
            )
            for r in rows
            if r["mode"] == "finetune"
        ],
        key=f"table{rate_number}",
        image=True,
    )
    paper_rate.notes = [baseline_note] if baseline_note else []
    same = Table(
        f"Ours only: pretrained on {name} vs procedure 1 in the same mode and image, Equation 8 on F1 "
        f"({_POSITIVE_NOTE}; {ours})",
        ["Backbone", "Mode", "Image", "F1 % procedure 1", f"F1 % from {name}", "Improvement rate"],
        notes=[baseline_note] if baseline_note else [],
        key=f"table{rate_number}-same-mode-ours",
    )
    for row in rows:
        ref = base.get((row["backbone"], row["mode"], row["roi"]))
        same.rows.append(
            [Cell(row["backbone"]), Cell(row["mode"]), Cell("ROI" if row["roi"] else "full"), *_f1_pair(ref, row)]
        )
    return [t for t in (metrics, paper_rate, same) if t.rows]


def _markdown_cell(cell: Cell) -> str:
    text = cell.text
    if cell.paper:
        text += f" (paper {cell.paper})"
    if cell.warning:
        text += f" ⚠ {cell.warning}"
    return text.replace("|", "\\|")


def to_markdown(tables: Sequence[Table]) -> str:
    """The tables as Markdown (each note printed once, before the first table that carries it)."""
    parts, said = [], set()
    for table in tables:
        lines = [f"### {table.title}", ""]
        for note in table.notes:
            if note and note not in said:
                lines += [note, ""]
                said.add(note)
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "|".join("---" if not i else "---:" for i in range(len(table.columns))) + "|")
        lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in table.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def procedure_tables(
    procedure: str,
    rows: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]] = (),
    origin: str = "unknown",
) -> list[Table]:
    """The tables of one procedure: Tables 6-10 for ``procedure1``, 11-12 or 13-14 for the others.

    Raises:
        InputError: For an unknown procedure, no rows, or a row without a metric.
    """
    check_choice("procedure", procedure, PROCEDURES)
    if not rows:
        raise InputError(f"{procedure} has no evaluated runs to compare")
    if procedure == "procedure1":
        return procedure1_tables(rows, origin=origin)
    return pretraining_tables(rows, baseline, procedure=procedure, origin=origin)


def compare_markdown(
    procedure: str,
    rows: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]] = (),
    origin: str = "unknown",
) -> str:
    """The comparison page of one procedure's runs (a heading, the tables, and the run list).

    Args:
        procedure: ``procedure1``, ``procedure2`` or ``procedure3``.
        rows: The procedure's evaluated runs.
        baseline: Procedure 1's runs to compare procedures 2 and 3 with.
        origin: ``synthetic``, ``real`` or ``unknown``: where the runs' data come from.

    Raises:
        InputError: For an unknown procedure, no rows, or a row without a metric.
    """
    tables = procedure_tables(procedure, rows, baseline, origin)
    clean = [normalise_row(r, f"row {i + 1}") for i, r in enumerate(rows)]
    key = view_key(PAPER_POSITIVE, "f1")
    top = clean[best(clean, key)]
    runs = [
        f"- `{config_name(r['backbone'], r['mode'], r['roi'])}` ({r['weights_source']}): "
        + (f"MLflow run `{r['run_id']}`" if r.get("run_id") else "not tracked")
        for r in sorted(clean, key=_sort_key)
    ]
    return (
        f"## {procedure}: {len(clean)} configurations, test split\n\n"
        f"Best F1 ({_POSITIVE_NOTE}): **{_pct(top[key])}** ({top['backbone']}, {top['mode']}, "
        f"{'ROI' if top['roi'] else 'full image'}). Percentages; Equation 8: (new - old) / old x 100.\n\n"
        + to_markdown(tables)
        + "\n### Runs\n\n"
        + "\n".join(runs)
        + "\n"
    )
