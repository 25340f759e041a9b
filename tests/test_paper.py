"""The paper's numbers as data, Equation 8 on its F1 pairs, and the audit of its confusion matrices.

Fast: no TensorFlow, no servers. The values are checked by hand-picked cells and, where the paper's text lies
beside the checkout (``../shared/paper``), cell by cell against the flattened tables of the text itself.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from typer.testing import CliRunner

from lumbar import paper
from lumbar.cli import app
from lumbar.errors import InputError
from lumbar.metrics import improvement_rate

from .conftest import SHARED

PAPER_TEXT = SHARED / "paper" / "000_742e5204da8e054c.txt"
BACKBONES = ("vgg16", "vgg19", "resnet50", "mobilenetv2")
TITLES = {"VGG16": "vgg16", "VGG19": "vgg19", "ResNet50": "resnet50", "MobileNetV2": "mobilenetv2"}


def _cell(table: int, backbone: str, finetune: bool, metric: str) -> paper.PaperCell:
    (cell,) = [
        c
        for c in paper.paper_cells()
        if (c.table, c.backbone, c.finetune, c.metric) == (table, backbone, finetune, metric)
    ]
    return cell


def _csv(*args: str) -> list[list[str]]:
    result = CliRunner().invoke(app, ["paper", *args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    return list(csv.reader(io.StringIO(result.stdout)))


# ---- the data ------------------------------------------------------------------------------------------------


def test_hand_picked_cells_match_the_text() -> None:
    assert _cell(6, "vgg19", False, "accuracy").value == 82.97
    assert _cell(9, "resnet50", True, "f1").value == 91.07
    assert _cell(11, "vgg16", False, "recall").value == 98.18
    assert _cell(13, "vgg19", True, "precision").value == 90.74
    assert _cell(7, "mobilenetv2", True, "f1").text == "83.40"
    assert _cell(13, "vgg19", False, "precision").text == "85.00"
    assert _cell(8, "vgg16", False, "accuracy").value == 84.62
    rate = next(r for r in paper.paper_rates() if (r.table, r.backbone) == (10, "mobilenetv2"))
    assert (rate.before_text, rate.after_text, rate.printed_rate_text) == ("83.4", "87.93", "5")


def test_every_row_and_column_of_every_table_is_present() -> None:
    cells = paper.paper_cells()
    assert len(cells) == 4 * 4 * 4 + 2 * 2 * 2 * 4
    expected = {
        6: ("imagenet", False, [False]),
        7: ("imagenet", False, [True]),
        8: ("imagenet", True, [False]),
        9: ("imagenet", True, [True]),
    }
    for table, (source, roi, modes) in expected.items():
        keys = {(c.backbone, c.finetune, c.metric) for c in cells if c.table == table}
        assert keys == {(b, m, metric) for b in BACKBONES for m in modes for metric in paper.METRICS}
        assert {(c.source, c.roi) for c in cells if c.table == table} == {(source, roi)}
    for table, source in ((11, "dataset_a"), (13, "dataset_b")):
        keys = {(c.backbone, c.finetune, c.metric) for c in cells if c.table == table}
        assert keys == {(b, m, metric) for b in ("vgg16", "vgg19") for m in (False, True) for metric in paper.METRICS}
        assert {(c.source, c.roi) for c in cells if c.table == table} == {(source, None)}
    assert {(r.table, r.backbone) for r in paper.paper_rates()} == {
        *((10, b) for b in BACKBONES),
        *((t, b) for t in (12, 14) for b in ("vgg16", "vgg19")),
    }


def test_table5_counts_and_totals() -> None:
    counts = paper.table5_counts()
    assert list(counts) == ["L12", "L23", "L34", "L45", "L51"]
    assert counts["L45"]["bulge"] == 129
    assert counts["L12"] == {"normal": 163, "degeneration": 13, "bulge": 5, "herniation": 0}
    totals = paper.table5_totals()
    assert totals == {"normal": 545, "degeneration": 50, "bulge": 298, "herniation": 12}
    assert {state: sum(level[state] for level in counts.values()) for state in totals} == totals


def test_paper_metric_matches_the_settings() -> None:
    cell = paper.paper_metric("imagenet", "resnet50", True, True, "f1")
    assert cell is not None and (cell.table, cell.value) == (9, 91.07)
    # Tables 11 and 13 do not say whether the ROI was applied: either question finds them
    for roi in (True, False, None):
        found = paper.paper_metric("dataset_b", "vgg16", roi, True, "recall")
        assert found is not None and (found.table, found.value, found.roi) == (13, 90.91, None)
    assert paper.paper_metric("imagenet", "vgg16", None, False, "f1") is None
    assert paper.paper_metric("dataset_a", "resnet50", False, True, "f1") is None
    with pytest.raises(InputError, match="source 'dataset_c'"):
        paper.paper_metric("dataset_c", "vgg16", False, True, "f1")
    with pytest.raises(InputError, match="metric 'auc'"):
        paper.paper_metric("imagenet", "vgg16", False, True, "auc")


def _text_tables(text: str) -> dict[int, list[str]]:
    """The cells of each table of the flattened text (one cell a line, after the second title line)."""
    lines = text.splitlines()
    tables: dict[int, list[str]] = {}
    for index, line in enumerate(lines):
        match = re.match(r"Table (\d+)\. ", line)
        if not match:
            continue
        cells = []
        for cell in lines[index + 1 :]:
            if re.match(r"\s*Table \d+\. ", cell) or cell.startswith("[image"):
                break
            if cell.strip():
                cells.append(cell.strip())
        tables[int(match.group(1))] = cells
    return tables


@pytest.mark.skipif(not PAPER_TEXT.exists(), reason=f"the paper's text is not beside the checkout ({PAPER_TEXT})")
def test_every_cell_equals_the_papers_text() -> None:
    tables = _text_tables(PAPER_TEXT.read_text(encoding="utf-8"))
    for table in (6, 7, 8, 9, 11, 13):
        rows, backbone, finetune = {}, None, None
        for cell in tables[table]:
            if cell in TITLES:
                backbone = TITLES[cell]
                finetune = None if table in (11, 13) else table in (7, 9)
            elif cell in ("Without Fine-Tuning", "With Fine-Tuning"):
                finetune = cell == "With Fine-Tuning"
            elif re.fullmatch(r"\d+(\.\d+)?", cell):
                rows.setdefault((backbone, finetune), []).append(cell)
        ours = {}
        for c in paper.paper_cells():
            if c.table == table:
                ours.setdefault((c.backbone, c.finetune), []).append(c.text)
        assert ours == rows, f"Table {table}"
    for table in (10, 12, 14):
        printed = {}
        for cell in tables[table]:
            if cell in TITLES:
                backbone = TITLES[cell]
            elif re.fullmatch(r"\d+(\.\d+)?", cell):
                printed.setdefault(backbone, []).append(cell)
        ours = {
            r.backbone: [r.before_text, r.after_text, r.printed_rate_text]
            for r in paper.paper_rates()
            if r.table == table
        }
        assert ours == printed, f"Table {table}"
    counts = [int(c) for c in tables[5] if re.fullmatch(r"\d+", c)]
    ours5 = [n for level in paper.table5_counts().values() for n in level.values()]
    assert counts == [*ours5, *paper.table5_totals().values()]


@pytest.mark.skipif(not PAPER_TEXT.exists(), reason=f"the paper's text is not beside the checkout ({PAPER_TEXT})")
def test_the_prose_repeats_tables_11_and_13() -> None:
    text = PAPER_TEXT.read_text(encoding="utf-8")
    for table, start in (
        (11, "we used transfer learning from (Dataset A)"),
        (13, "Then, we used transfer learning from Dataset B"),
    ):
        paragraph = next(line for line in text.splitlines() if start in line)
        numbers = re.findall(r"(\d+\.\d+)%", paragraph)
        # the prose gives accuracy, precision, recall and F1 of VGG16 then VGG19, frozen then fine-tuned
        expected = [
            _cell(table, backbone, finetune, metric).text
            for finetune in (False, True)
            for backbone in ("vgg16", "vgg19")
            for metric in paper.METRICS
        ]
        assert numbers == expected, f"Table {table}"


# ---- Equation 8 ----------------------------------------------------------------------------------------------


def test_rates_recompute_equation_8_and_note_exactly_the_inconsistent_rows() -> None:
    rates = {(r.table, r.backbone): r for r in paper.paper_rates()}
    for rate in rates.values():
        assert rate.recomputed_rate == pytest.approx(improvement_rate(rate.after, rate.before))
    assert rates[(10, "resnet50")].recomputed_rate == pytest.approx(15.909, abs=1e-3)
    noted = {key for key, rate in rates.items() if rate.note}
    assert noted == {(10, "vgg19"), (12, "vgg16"), (12, "vgg19"), (14, "vgg16"), (14, "vgg19")}
    # where all agrees, the printed rate is the recomputed one rounded
    for key in rates.keys() - noted:
        assert round(rates[key].recomputed_rate) == rates[key].printed_rate, key
    # Table 10's VGG19 "before" is not Table 7's; Table 7's value gives the printed rate
    vgg19 = rates[(10, "vgg19")]
    assert (vgg19.before, round(vgg19.recomputed_rate)) == (87.46, 1)
    assert "87.00" in vgg19.note and f"{improvement_rate(88.46, 87.00):.2f}%" in vgg19.note
    # Tables 12 and 14 swap VGG16's and VGG19's Table 7 baselines, which reverses which improved more
    for table in (12, 14):
        assert "85.05" in rates[(table, "vgg16")].note and "87.00" in rates[(table, "vgg19")].note
        assert "VGG16 improved more than VGG19" in rates[(table, "vgg16")].note
    assert f"{improvement_rate(90.09, 85.05):.2f}%" in rates[(12, "vgg16")].note


# ---- the audit -----------------------------------------------------------------------------------------------


def _rounds_to(numerator: int, denominator: int, cell: paper.PaperCell) -> bool:
    return abs(numerator / denominator * 100 - cell.value) <= 0.005 + 1e-9


def test_audit_finds_the_test_sets_and_the_two_rows_no_matrix_fits() -> None:
    rows = paper.audit()
    assert len(rows) == 24
    for row in rows:
        assert (row.n, row.positives) == ((182, 109) if row.table in (6, 7) else (91, 55)), row
        assert row.tp + row.fn == row.positives and row.tp + row.fp + row.fn + row.tn == row.n
    inconsistent = {(r.table, r.backbone, r.finetune): r for r in rows if not r.consistent}
    assert set(inconsistent) == {(11, "vgg19", False), (13, "vgg16", False)}
    assert inconsistent[(11, "vgg19", False)].note.count("accuracy breaks it") == 1
    assert "82.42, not the printed 80.42" in inconsistent[(11, "vgg19", False)].note
    assert "recall breaks it" in inconsistent[(13, "vgg16", False)].note
    assert "94.55, not the printed 97.55" in inconsistent[(13, "vgg16", False)].note
    # every matrix shown reproduces the printed metrics it claims to, checked here with plain integers
    for row in rows:
        cells = {m: _cell(row.table, row.backbone, row.finetune, m) for m in paper.METRICS}
        fits = {
            "accuracy": _rounds_to(row.tp + row.tn, row.n, cells["accuracy"]),
            "precision": _rounds_to(row.tp, row.tp + row.fp, cells["precision"]),
            "recall": _rounds_to(row.tp, row.positives, cells["recall"]),
            "f1": _rounds_to(2 * row.tp, 2 * row.tp + row.fp + row.fn, cells["f1"]),
        }
        broken = {"accuracy"} if row.table == 11 and not row.consistent else set()
        broken |= {"recall"} if row.table == 13 and not row.consistent else set()
        assert {m for m, ok in fits.items() if not ok} == broken, row
    # ~60% positives, the share of normal discs in Table 5: the paper's positive class is normal
    normal_share = paper.table5_totals()["normal"] / sum(paper.table5_totals().values())
    for table in (6, 9, 10, 12, 14):
        n, positives = paper.paper_test_set(table)
        assert abs(positives / n - normal_share) < 0.01
    assert paper.paper_test_set(7) == (182, 109) and paper.paper_test_set(13) == (91, 55)
    assert paper.PAPER_POSITIVE == "normal"


def test_audit_182_is_the_smallest_test_set_of_tables_6_and_7() -> None:
    rows = paper.audit(max_n=181)
    early = [r for r in rows if r.table in (6, 7)]
    assert early and all(not r.consistent and r.n is None for r in early)
    assert all("n <= 181" in r.note for r in early)
    with pytest.raises(InputError, match="max_n"):
        paper.audit(max_n=0)
    with pytest.raises(InputError, match="table 5"):
        paper.paper_test_set(5)


# ---- the command line ----------------------------------------------------------------------------------------


def test_cli_csv_columns_and_rows() -> None:
    values = _csv("values")
    assert values[0] == ["table", "source", "backbone", "roi", "finetune", "metric", "value"]
    assert len(values) == 1 + 96
    assert ["6", "imagenet", "vgg19", "no", "no", "accuracy", "82.97"] in values
    assert ["11", "dataset_a", "vgg16", "", "no", "recall", "98.18"] in values
    assert ["7", "imagenet", "mobilenetv2", "no", "yes", "f1", "83.40"] in values

    rates = _csv("rates")
    assert rates[0] == ["table", "backbone", "before", "after", "printed_rate", "recomputed_rate", "note"]
    assert rates[1][:6] == ["10", "vgg19", "87.46", "88.46", "2", "1.14"] and rates[1][6]
    assert rates[3] == ["10", "mobilenetv2", "83.4", "87.93", "5", "5.43", ""]

    audit = _csv("audit")
    header = ["table", "source", "backbone", "finetune", "n", "positives", "tp", "fp", "fn", "tn", "consistent"]
    assert audit[0] == [*header, "note"]
    assert len(audit) == 1 + 24
    assert ["6", "imagenet", "vgg19", "no", "182", "109", "103", "25", "6", "48", "yes", ""] in audit
    assert sorted(row[:4] for row in audit[1:] if row[10] == "no") == [
        ["11", "dataset_a", "vgg19", "no"],
        ["13", "dataset_b", "vgg16", "no"],
    ]


def test_cli_tables_and_a_bad_format() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["paper", "audit"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps the caption to the terminal's width
    assert "182 images with 109 positives (60%), 91 images with 55 positives (60%)" in text
    assert "[2] no integer confusion matrix" in text and "[3]" not in text
    result = runner.invoke(app, ["paper", "rates"])
    assert result.exit_code == 0 and "[5] Table 7's VGG19 F1 is 87.00" in result.stdout and "[6]" not in result.stdout
    result = runner.invoke(app, ["paper", "values", "--format", "xml"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --format 'xml' is not one of table, csv"
