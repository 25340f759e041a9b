"""The comparison tables: the paper's positive class, its numbers beside ours, Equation 8 on F1, like with like."""

import pytest

from lumbar.compare import compare_markdown, pretraining_tables, procedure1_tables
from lumbar.errors import InputError
from lumbar.paper import paper_rates


def _row(backbone, mode, roi, normal_f1, n=91, normal=55, source="imagenet", run_id="", accuracy=0.8):
    """An evaluate step's row; the abnormal view is given other values, so a table reading it would show them."""
    row = {"backbone": backbone, "mode": mode, "roi": roi, "weights_source": source, "run_id": run_id,
           "support": n, "normal_positives": normal, "abnormal_positives": n - normal}  # fmt: skip
    for view, f1 in (("normal", normal_f1), ("abnormal", 0.123)):
        row.update({f"{view}_accuracy": accuracy, f"{view}_precision": 0.5, f"{view}_recall": 0.25, f"{view}_f1": f1})
    row.update(accuracy=accuracy, precision=0.5, recall=0.25, f1=0.123)  # the evaluation's own (abnormal) view
    return row


PROCEDURE1 = [
    _row("vgg19", "frozen", False, 0.80, n=182, normal=109, run_id="r1"),
    _row("vgg19", "finetune", False, 0.80, n=182, normal=109, run_id="r2"),
    _row("vgg19", "finetune", True, 0.90, run_id="r3"),
    _row("resnet50", "finetune", False, 0.50, n=5, normal=3, run_id="r4"),
    _row("resnet50", "finetune", True, 0.60, n=5, normal=3, run_id="r5"),
    _row("vgg16", "frozen", False, 0.60, accuracy=0.5),
    _row("vgg16", "frozen", True, 0.66),
]


def _texts(table):
    return [[c.text for c in row] for row in table.rows]


def test_tables_6_to_9_stand_beside_the_paper_in_its_positive_class():
    tables = {t.key: t for t in procedure1_tables(PROCEDURE1, origin="synthetic")}
    assert list(tables) == ["table6", "table7", "table8", "table9", "table10", "roi-frozen-ours"]
    t6 = tables["table6"]
    assert t6.title.startswith("Table 6: full image, frozen") and "positive class normal, as in the paper" in t6.title
    assert "ours on synthetic data" in t6.title
    assert t6.columns[1:] == ["Test images / normal", "Accuracy % [95% CI]", "Precision %", "Recall %", "F1 %",
                              "Majority-class F1 %"]  # fmt: skip
    vgg16, vgg19 = t6.rows
    assert vgg19[0].text == "vgg19"
    assert (vgg19[1].text, vgg19[1].paper) == ("182 / 109", "182 / 109")  # test set beside the paper's
    assert [c.paper for c in vgg19[2:6]] == ["82.97", "80.47", "94.50", "86.92"]  # Table 6, VGG19
    assert vgg19[5].text == "80.00" and vgg19[5].run_id == "r1"  # normal_f1, not the abnormal 0.123
    assert vgg19[2].text == "80.00 [73.8–85.4]"  # Wilson 95 % on 146 of 182 (scipy's binomtest agrees)
    assert vgg19[2].warning == ""  # +-5.8 points: the paper's test size is big enough
    assert vgg19[6].text == f"{100 * 2 * (109 / 182) / (1 + 109 / 182):.2f}"  # majority-class F1 (normal positive)
    assert vgg19[5].warning == "" and vgg16[5].warning == "not above the majority-class F1"
    assert vgg16[2].warning.startswith("split too small to compare (95% CI ±10.")  # 91 images at 50 %: +-10.0x
    assert tables["table8"].rows[0][1].paper == "91 / 55"
    assert tables["table9"].rows[0][1].text == "91 / 55"


def test_table_10_is_equation_8_on_fine_tuned_f1_with_the_papers_rates():
    tables = {t.key: t for t in procedure1_tables(PROCEDURE1)}
    t10 = tables["table10"]
    assert "Equation 8 on F1 of the fine-tuned runs" in t10.title and "positive class normal" in t10.title
    rows = {r[0].text: r for r in t10.rows}
    assert set(rows) == {"vgg19", "resnet50"}  # vgg16 has no fine-tuned run
    vgg19 = rows["vgg19"]
    assert [c.text for c in vgg19[1:4]] == ["80.00", "90.00", "+12.50 %"]  # (90 - 80) / 80, F1 of r2 and r3
    assert [c.run_id for c in vgg19[1:3]] == ["r2", "r3"]
    assert (vgg19[1].paper, vgg19[2].paper, vgg19[3].paper) == ("87.46", "88.46", "+2 %")
    assert vgg19[4].text == "2 % / 1.14 %"  # printed / recomputed from the printed pair
    assert vgg19[5].text.startswith("Table 7's VGG19 F1 is 87.00, not 87.46")
    assert rows["resnet50"][5].text == ""  # where the paper agrees with itself, no note
    assert rows["resnet50"][2].warning.startswith("split too small")
    frozen = tables["roi-frozen-ours"]
    assert frozen.title.startswith("Ours only") and _texts(frozen) == [["vgg16", "60.00", "66.00", "+10.00 %"]]
    assert all(not c.paper for r in frozen.rows for c in r)


def test_tables_11_to_14_compare_with_procedure_1_fine_tuned_full_image_f1():
    ours = [
        _row("vgg16", "finetune", True, 0.85, source="ssl", run_id="s1"),
        _row("vgg19", "finetune", False, 0.88, source="ssl", run_id="s2"),
        _row("vgg16", "frozen", True, 0.70, source="ssl", run_id="s3"),
    ]
    baseline = [*PROCEDURE1, _row("vgg16", "finetune", False, 0.80, run_id="b1")]
    t13, t14, same = pretraining_tables(ours, baseline, procedure="procedure3", origin="real")
    assert t13.key == "table13" and "positive class normal" in t13.title and "ours on real data" in t13.title
    vgg19_ft = next(r for r in t13.rows if [c.text for c in r[:3]] == ["vgg19", "finetune", "full"])
    assert [c.paper for c in vgg19_ft[4:8]] == ["87.91", "90.74", "89.09", "89.91"]  # Table 13, VGG19 fine-tuned
    assert vgg19_ft[3].paper == "91 / 55"
    assert any("VGG16 (frozen) row fits no integer confusion matrix" in n for n in t13.notes)  # the audit's row
    # Table 14: every fine-tuned run against procedure 1's fine-tuned FULL-image F1, as the paper does
    assert t14.key == "table14"
    rows = {r[0].text: r for r in t14.rows}
    assert [c.text for c in rows["vgg16"][1:5]] == ["ROI", "80.00", "85.00", "+6.25 %"]
    assert rows["vgg16"][2].run_id == "b1" and rows["vgg16"][3].run_id == "s1"
    rate = next(r for r in paper_rates() if (r.table, r.backbone) == (14, "vgg16"))
    assert (rows["vgg16"][2].paper, rows["vgg16"][3].paper) == (rate.before_text, rate.after_text)
    assert "87.00 is Table 7's VGG19" in rows["vgg16"][6].text  # the swapped baselines, said where they touch
    # ours only: the same mode and image
    assert same.title.startswith("Ours only") and same.key == "table14-same-mode-ours"
    frozen = next(r for r in same.rows if r[1].text == "frozen")
    assert [c.text for c in frozen[3:]] == ["66.00", "70.00", "+6.06 %"]


def test_compare_markdown_says_the_positive_class_and_the_paper_values():
    text = compare_markdown("procedure1", PROCEDURE1, origin="synthetic")
    assert "Best F1 (positive class normal, as in the paper): **90.00** (vgg19, finetune, ROI)" in text
    assert "| vgg19 | 182 / 109 (paper 182 / 109) | 80.00 [73.8–85.4] (paper 82.97) |" in text
    assert "MLflow run `r3`" in text
    alone = compare_markdown("procedure2", [_row("vgg16", "frozen", True, 0.7, source="supervised")])
    assert "No procedure 1 runs were given" in alone and "### Table 11" in alone


def test_compare_rejects_rows_without_the_papers_view():
    bad = _row("vgg16", "frozen", True, 0.5)
    del bad["normal_f1"]
    with pytest.raises(InputError, match="row 2 has no 'normal_f1'"):
        compare_markdown("procedure1", [_row("vgg16", "frozen", False, 0.5), bad])
    with pytest.raises(InputError, match="no evaluated runs"):
        compare_markdown("procedure1", [])
    with pytest.raises(InputError, match="unknown procedure"):
        compare_markdown("procedure4", PROCEDURE1)
