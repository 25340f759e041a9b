"""The paper's own numbers, kept to compare with ours, and checks of its arithmetic.

``paper_tables.json`` holds every number of the paper's Tables 5-14, transcribed once from its text:
:func:`paper_cells` and :func:`paper_metric` read the metric cells (Tables 6-9, 11, 13), :func:`paper_rates`
recomputes Equation 8 for Tables 10, 12 and 14 and notes where the paper contradicts itself, and :func:`audit`
reconstructs the integer confusion matrix behind each metric row, which shows the paper's test-set sizes and
its positive class (:data:`PAPER_POSITIVE`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from lumbar.backbones import backbone_title
from lumbar.errors import InputError
from lumbar.metrics import METRICS as METRIC_REGISTRY
from lumbar.metrics import improvement_rate

# ---------------------------------------------------------------------------------------------------------------
# The paper's tables as data (``paper_tables.json``): every cell of Tables 5-14, its improvement rates, an audit.
# ---------------------------------------------------------------------------------------------------------------

#: The class the paper scored as positive: the audit's test sets hold ~60% positives, the share of normal discs
#: in Table 5 (545 of 905), so the paper's precision, recall and F1 are those of the *normal* class.
PAPER_POSITIVE: str = "normal"
#: Where the transferred weights come from: procedure 1 (ImageNet), 2 (Dataset A, labelled) and 3 (Dataset B).
SOURCES: tuple[str, ...] = ("imagenet", "dataset_a", "dataset_b")
#: The metrics the paper prints (Equations 4-7), in the column order of its tables: the registry's metrics
#: (:data:`lumbar.metrics.METRICS`) that the paper has cells for.
METRICS: tuple[str, ...] = tuple(m.name for m in METRIC_REGISTRY if m.name in ("accuracy", "precision", "recall", "f1"))
#: How a sentence names each metric (``accuracy``, ``F1``).
_METRIC_WORDS: dict[str, str] = {m.name: m.title if m.title.isupper() else m.title.lower() for m in METRIC_REGISTRY}
SOURCE_TITLES: dict[str, str] = {"imagenet": "ImageNet", "dataset_a": "Dataset A", "dataset_b": "Dataset B"}
#: The CSV columns of ``lumbar paper values|rates|audit``.
VALUES_COLUMNS: tuple[str, ...] = ("table", "source", "backbone", "roi", "finetune", "metric", "value")
RATES_COLUMNS: tuple[str, ...] = ("table", "backbone", "before", "after", "printed_rate", "recomputed_rate", "note")
AUDIT_COLUMNS: tuple[str, ...] = (
    "table", "source", "backbone", "finetune", "n", "positives", "tp", "fp", "fn", "tn", "consistent", "note",
)  # fmt: skip


@cache
def _tables() -> dict[str, Any]:
    return json.loads(resources.files("lumbar").joinpath("paper_tables.json").read_text(encoding="utf-8"))


def _decimals(printed: str) -> int:
    """Decimals of a number as printed: ``"83.4"`` -> 1, ``"2"`` -> 0."""
    return len(printed.partition(".")[2])


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


@dataclass(frozen=True)
class PaperCell:
    """One metric cell of Tables 6-9, 11 or 13.

    Attributes:
        table: The paper's table number.
        source: Where the transferred weights come from, one of :data:`SOURCES`.
        backbone: ``vgg16``, ``vgg19``, ``resnet50`` or ``mobilenetv2``.
        roi: Whether the ROI was applied; None where the paper does not say (Tables 11 and 13).
        finetune: Whether the backbone was fine-tuned (False: only the fully connected head was trained).
        metric: One of :data:`METRICS`.
        value: The value in percent, as printed.
        decimals: The decimals the paper printed (the rounding the audit allows for).
    """

    table: int
    source: str
    backbone: str
    roi: bool | None
    finetune: bool
    metric: str
    value: float
    decimals: int = 2

    @property
    def text(self) -> str:
        """The value as the paper printed it."""
        return _fmt(self.value, self.decimals)


@cache
def _cells() -> tuple[PaperCell, ...]:
    data = _tables()
    cells = []
    for table in data["metric_tables"]:
        for row in table["rows"]:
            for metric, printed in zip(data["metrics"], row["values"], strict=True):
                cells.append(
                    PaperCell(
                        table=table["table"],
                        source=table["source"],
                        backbone=row["backbone"],
                        roi=table["roi"],
                        finetune=row.get("finetune", table.get("finetune")),
                        metric=metric,
                        value=float(printed),
                        decimals=_decimals(printed),
                    )
                )
    return tuple(cells)


def paper_cells() -> list[PaperCell]:
    """Every metric cell of Tables 6-9, 11 and 13, in the paper's order (table, row, column)."""
    return list(_cells())


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{field} {value!r} is not one of {', '.join(choices)}")


def paper_metric(source: str, backbone: str, roi: bool | None, finetune: bool, metric: str) -> PaperCell | None:
    """The paper's cell for one setting, or None where the paper has no such cell.

    The cells of Dataset A and Dataset B (Tables 11 and 13) do not say whether the ROI was applied: they
    match whatever ``roi`` is asked. ImageNet cells match only ``roi`` True or False.

    Raises:
        InputError: If ``source`` or ``metric`` is not one the paper uses.
    """
    _check_choice("source", source, SOURCES)
    _check_choice("metric", metric, METRICS)
    for cell in _cells():
        if (cell.source, cell.backbone, cell.finetune, cell.metric) == (source, backbone, finetune, metric) and (
            cell.roi is None or cell.roi is roi
        ):
            return cell
    return None


def _f1_cell(table: int, backbone: str, finetune: bool) -> PaperCell | None:
    for cell in _cells():
        if (cell.table, cell.backbone, cell.finetune, cell.metric) == (table, backbone, finetune, "f1"):
            return cell
    return None


@dataclass(frozen=True)
class PaperRate:
    """One row of Tables 10, 12 or 14: Equation 8 on the F1 of a pair of fine-tuned runs.

    Attributes:
        table: The paper's table number.
        backbone: The backbone.
        before: The old F1 (percent), as printed.
        after: The new F1 (percent), as printed.
        printed_rate: The improvement rate the paper printed (percent, whole numbers).
        recomputed_rate: Equation 8 on the printed pair.
        note: Where the paper is inconsistent with itself: the value another table gives for the same cell and
            the rate that value gives; empty where all agrees.
        before_decimals: Decimals printed for ``before`` (Table 10 prints 83.4).
        after_decimals: Decimals printed for ``after``.
        rate_decimals: Decimals printed for the rate.
    """

    table: int
    backbone: str
    before: float
    after: float
    printed_rate: float
    recomputed_rate: float
    note: str
    before_decimals: int = 2
    after_decimals: int = 2
    rate_decimals: int = 0

    @property
    def before_text(self) -> str:
        """``before`` as printed."""
        return _fmt(self.before, self.before_decimals)

    @property
    def after_text(self) -> str:
        """``after`` as printed."""
        return _fmt(self.after, self.after_decimals)

    @property
    def printed_rate_text(self) -> str:
        """The rate as printed."""
        return _fmt(self.printed_rate, self.rate_decimals)


def _rounds_to(rate: float, printed: float, decimals: int) -> bool:
    return abs(rate - printed) <= 0.5 * 10.0**-decimals + 1e-9


def _other_backbone(table: int, finetune: bool, value: float, not_backbone: str) -> str | None:
    """The backbone whose F1 in ``table`` is ``value`` (another row than ``not_backbone``), if any."""
    for cell in _cells():
        same_column = (cell.table, cell.finetune, cell.metric) == (table, finetune, "f1")
        if same_column and cell.backbone != not_backbone and cell.value == value:
            return cell.backbone
    return None


@cache
def _rates() -> tuple[PaperRate, ...]:
    rates: list[PaperRate] = []
    for spec in _tables()["rate_tables"]:
        rows = []
        for row in spec["rows"]:
            backbone, before, after = row["backbone"], float(row["before"]), float(row["after"])
            printed, rate_decimals = float(row["rate"]), _decimals(row["rate"])
            recomputed = improvement_rate(after, before)
            # the same cells where the paper's own tables print them
            problems, alt = [], {"before": before, "after": after}
            for side in ("before", "after"):
                source = _f1_cell(spec[side]["table"], backbone, spec[side]["finetune"])
                if source is not None and source.value != float(row[side]):
                    alt[side] = source.value
                    text = f"Table {source.table}'s {backbone_title(backbone)} F1 is {source.text}, not {row[side]}"
                    other = _other_backbone(source.table, source.finetune, float(row[side]), backbone)
                    if other is not None:
                        text += f" ({row[side]} is Table {source.table}'s {backbone_title(other)})"
                    problems.append(text)
            corrected = improvement_rate(alt["after"], alt["before"])
            if problems:
                source_table = spec["before"]["table"]
                text = "; ".join(problems) + f"; with Table {source_table}'s value the rate is {corrected:.2f}%"
                if _rounds_to(corrected, printed, rate_decimals) and not _rounds_to(recomputed, printed, rate_decimals):
                    text += f", which rounds to the printed {row['rate']} (the printed pair gives {recomputed:.2f}%)"
                problems = [text]
            elif not _rounds_to(recomputed, printed, rate_decimals):
                problems.append(f"the printed rate {row['rate']} is not the printed pair's {recomputed:.2f}% rounded")
            rows.append((backbone, before, after, printed, rate_decimals, recomputed, corrected, problems, row))
        # does the correction change which model improved more?
        ranking_note = ""
        if len(rows) > 1 and any(r[6] != r[5] for r in rows):
            printed_best = max(rows, key=lambda r: r[3])
            corrected_best = max(rows, key=lambda r: r[6])
            if printed_best[0] != corrected_best[0]:
                others = [r for r in rows if r is not corrected_best]
                versus = (
                    f"more than {backbone_title(others[0][0])} ({corrected_best[6]:.2f}% vs {others[0][6]:.2f}%)"
                    if len(others) == 1
                    else f"most ({corrected_best[6]:.2f}%; "
                    + ", ".join(f"{backbone_title(r[0])} {r[6]:.2f}%" for r in others)
                    + ")"
                )
                ranking_note = (
                    f"; with Table {spec['before']['table']}'s values {backbone_title(corrected_best[0])} improved "
                    f"{versus}, not {backbone_title(printed_best[0])} as the printed rates say"
                )
        for backbone, before, after, printed, rate_decimals, recomputed, corrected, problems, row in rows:
            note = "; ".join(problems)
            if note and corrected != recomputed:
                note += ranking_note
            rates.append(
                PaperRate(
                    table=spec["table"],
                    backbone=backbone,
                    before=before,
                    after=after,
                    printed_rate=printed,
                    recomputed_rate=recomputed,
                    note=note,
                    before_decimals=_decimals(row["before"]),
                    after_decimals=_decimals(row["after"]),
                    rate_decimals=rate_decimals,
                )
            )
    return tuple(rates)


def paper_rates() -> list[PaperRate]:
    """Tables 10, 12 and 14: the printed F1 pairs and rates, Equation 8 recomputed, and the paper's inconsistencies.

    Each pair is checked against the tables it comes from (the fine-tuned full-image F1 of Table 7 before,
    the fine-tuned F1 of Table 9, 11 or 13 after) and each printed rate against the rounding of the recomputed
    one; ``note`` says what disagrees, and is empty where all agrees.
    """
    return list(_rates())


@dataclass(frozen=True)
class AuditRow:
    """The integer confusion matrix behind one metric row of Tables 6-9, 11 or 13 (normal = positive).

    Attributes:
        table, source, backbone, finetune: The row.
        n: Test images of the matrix shown; None when no matrix is shown.
        positives: Positive images (``tp + fn``).
        tp, fp, fn, tn: The matrix.
        consistent: Whether one integer matrix (with ``n`` up to the search limit) reproduces all four printed
            metrics within their rounding. When False, the matrix shown is the one that reproduces the other
            three metrics on the test set of the table's other rows, and ``note`` names the metric that breaks.
        note: What the search found beyond the matrix; empty where the row fits one matrix like its table.
    """

    table: int
    source: str
    backbone: str
    finetune: bool
    n: int | None
    positives: int | None
    tp: int | None
    fp: int | None
    fn: int | None
    tn: int | None
    consistent: bool
    note: str


def _percentages(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics (percent) of arrays of confusion matrices; NaN where a metric is undefined."""
    tp, fp, fn, tn = (np.asarray(x, dtype=float) for x in (tp, fp, fn, tn))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "accuracy": (tp + tn) / (tp + fp + fn + tn) * 100.0,
            "precision": tp / (tp + fp) * 100.0,
            "recall": tp / (tp + fn) * 100.0,
            "f1": 2.0 * tp / (2.0 * tp + fp + fn) * 100.0,
        }


def _matches(computed: np.ndarray, cell: PaperCell) -> np.ndarray:
    """Whether computed percentages round to the printed value (NaN never matches)."""
    return np.abs(computed - cell.value) <= 0.5 * 10.0**-cell.decimals + 1e-9


@cache
def _pairs(max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every test-set size ``n`` in 1..max_n with every positive count ``P`` in 1..n, as two flat arrays."""
    sizes = np.arange(1, max_n + 1)
    n = np.repeat(sizes, sizes)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)  # index of each n's first pair
    positives = np.arange(len(n)) - starts + 1
    return n, positives


def _fits(row: dict[str, PaperCell], max_n: int) -> list[tuple[int, int, int, int]]:
    """Every ``(n, P, tp, fp)`` with ``n <= max_n`` that reproduces all four printed metrics, smallest n first.

    Recall fixes ``tp`` for each ``P`` and accuracy the correct count ``tp + tn`` for each ``n`` to within one
    (a printed value's rounding interval is far narrower than one image), so two candidates of each suffice.
    """
    all_n, all_positives = _pairs(max_n)
    sizes = np.arange(1, max_n + 1)
    found = set()
    for tp_step in (0, 1):
        all_tp = np.floor(all_positives * row["recall"].value / 100.0).astype(int) + tp_step
        recall_ok = _matches(all_tp / all_positives * 100.0, row["recall"])
        for correct_step in (0, 1):
            # the correct count depends on n alone: compute it once per size, then spread it over the pairs
            correct_of_n = np.floor(sizes * row["accuracy"].value / 100.0).astype(int) + correct_step
            accuracy_ok = _matches(correct_of_n / sizes * 100.0, row["accuracy"])
            keep = recall_ok & accuracy_ok[all_n - 1]
            n, positives, tp = all_n[keep], all_positives[keep], all_tp[keep]
            correct = correct_of_n[n - 1]
            fp = tp + n - positives - correct  # correct = tp + tn and tn = n - P - fp
            ok = (tp >= 0) & (tp <= positives) & (fp >= 0) & (fp <= n - positives)
            computed = _percentages(tp, fp, positives - tp, n - positives - fp)
            for metric in METRICS:
                ok &= _matches(computed[metric], row[metric])
            found.update(zip(n[ok].tolist(), positives[ok].tolist(), tp[ok].tolist(), fp[ok].tolist(), strict=True))
    return sorted(found)


def _three_of_four(row: dict[str, PaperCell], n: int, positives: int) -> dict[str, list[tuple[int, int]]]:
    """For each metric, the ``(tp, fp)`` on ``n`` images with ``positives`` positives that fit the other three."""
    tp, fp = np.meshgrid(np.arange(positives + 1), np.arange(n - positives + 1), indexing="ij")
    tp, fp = tp.ravel(), fp.ravel()
    computed = _percentages(tp, fp, positives - tp, n - positives - fp)
    matches = {metric: _matches(computed[metric], row[metric]) for metric in METRICS}
    found = {}
    for left_out in METRICS:
        ok = np.logical_and.reduce([matches[m] for m in METRICS if m != left_out])
        if ok.any():
            found[left_out] = list(zip(tp[ok].tolist(), fp[ok].tolist(), strict=True))
    return found


def _metric_rows() -> list[tuple[int, str, str, bool, dict[str, PaperCell]]]:
    rows: dict[tuple[int, str, str, bool], dict[str, PaperCell]] = {}
    for cell in _cells():
        rows.setdefault((cell.table, cell.source, cell.backbone, cell.finetune), {})[cell.metric] = cell
    return [(*key, cells) for key, cells in rows.items()]


def _matrix(n: int, positives: int, tp: int, fp: int) -> dict[str, int]:
    return {"n": n, "positives": positives, "tp": tp, "fp": fp, "fn": positives - tp, "tn": n - positives - fp}


@cache
def _audit(max_n: int) -> tuple[AuditRow, ...]:
    rows = _metric_rows()
    fits = {(table, backbone, finetune): _fits(cells, max_n) for table, _, backbone, finetune, cells in rows}
    # each table's test set: the smallest (n, P) its consistent rows fit, the most common one if they differ
    test_sets: dict[int, tuple[int, int]] = {}
    for table in dict.fromkeys(r[0] for r in rows):
        smallest = [fits[(t, b, f)][0][:2] for t, _, b, f, _ in rows if t == table and fits[(t, b, f)]]
        if smallest:
            test_sets[table] = max(set(smallest), key=smallest.count)
    audited = []
    for table, source, backbone, finetune, cells in rows:
        found = fits[(table, backbone, finetune)]
        matrix: dict[str, int | None] = dict.fromkeys(("n", "positives", "tp", "fp", "fn", "tn"))
        notes = []
        if found:
            n = found[0][0]
            at_n = [f for f in found if f[0] == n]
            matrix.update(_matrix(*at_n[0]))
            if len(at_n) > 1:
                notes.append(f"{len(at_n)} matrices fit with n={n}; the first is shown")
            if table in test_sets and found[0][:2] != test_sets[table]:
                n0, p0 = test_sets[table]
                notes.append(f"the table's other rows fit n={n0} with {p0} positives")
        else:
            notes.append(f"no integer confusion matrix with n <= {max_n} reproduces all four printed metrics")
            if table in test_sets:
                n0, p0 = test_sets[table]
                for left_out, candidates in _three_of_four(cells, n0, p0).items():
                    others = [_METRIC_WORDS[m] for m in METRICS if m != left_out]
                    shown = _matrix(n0, p0, *candidates[0])
                    if not any(v is not None for v in matrix.values()):
                        matrix.update(shown)
                    value = _percentages(shown["tp"], shown["fp"], shown["fn"], shown["tn"])[left_out]
                    notes.append(
                        f"{_METRIC_WORDS[left_out]} breaks it: on the table's test set ({n0} images, "
                        f"{p0} positives) tp={shown['tp']} fp={shown['fp']} reproduces "
                        f"{', '.join(others[:-1])} and {others[-1]} and gives {_METRIC_WORDS[left_out]} "
                        f"{float(value):.2f}, not the printed {cells[left_out].text}"
                        + (f" ({len(candidates)} such matrices)" if len(candidates) > 1 else "")
                    )
        audited.append(
            AuditRow(
                table=table,
                source=source,
                backbone=backbone,
                finetune=finetune,
                consistent=bool(found),
                note="; ".join(notes),
                **matrix,  # type: ignore[arg-type]
            )
        )
    return tuple(audited)


def audit(max_n: int = 400) -> list[AuditRow]:
    """Reconstruct the integer confusion matrix behind each metric row of Tables 6-9, 11 and 13.

    For every test-set size ``n`` up to ``max_n`` and every positive count, finds the integer matrices whose
    accuracy, precision, recall and F1 round to the four printed values; shows the one with the smallest ``n``.
    A row that no matrix fits is tried on its table's test set with each metric left out in turn, which names
    the metric that breaks it.

    Raises:
        InputError: If ``max_n`` is below 1.
    """
    if max_n < 1:
        raise InputError(f"max_n must be at least 1, got {max_n}")
    return list(_audit(max_n))


def paper_test_set(table: int) -> tuple[int, int]:
    """``(n, positives)`` of the test set the audit finds for a table's rows (182/109 for 6-7, 91/55 for 8-14).

    For the rate tables (10, 12, 14) it is the test set of the table the new F1 comes from (9, 11, 13).

    Raises:
        InputError: If the paper has no such metric or rate table.
    """
    for spec in _tables()["rate_tables"]:
        if spec["table"] == table:
            table = spec["after"]["table"]
    sizes = [(r.n, r.positives) for r in audit() if r.table == table and r.consistent and not r.note]
    if not sizes:
        known = sorted({c.table for c in _cells()} | {s["table"] for s in _tables()["rate_tables"]})
        raise InputError(f"table {table} is not one of the paper's result tables {known}")
    return max(set(sizes), key=sizes.count)  # type: ignore[return-value]


def table5_counts() -> dict[str, dict[str, int]]:
    """Table 5: discs per level (``L12`` ... ``L51``) and disc state (normal, degeneration, bulge, herniation)."""
    data = _tables()["table5"]
    return {level: dict(zip(data["classes"], counts, strict=True)) for level, counts in data["levels"].items()}


def table5_totals() -> dict[str, int]:
    """Table 5's printed totals per disc state (545 normal, 50 degeneration, 298 bulge, 12 herniation)."""
    data = _tables()["table5"]
    return dict(zip(data["classes"], data["total"], strict=True))
