import pytest

from lumbar.errors import LabelError
from lumbar.labels import Grades, load_labels, write_labels

HEADER = "patient_id,disc,disc_state,herniation,scs,rfs,lfs\n"


def test_valid_file_and_binary_target(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(HEADER + "P1,L45,2,0,1,0,1\nP1,l12,0,0,0,0,0\nP2,L5-S1,3,2,2,1,0\n")
    grades, problems = load_labels(path)
    assert problems == []
    assert grades[("P1", "L45")] == Grades(2, 0, 1, 0, 1)
    assert grades[("P1", "L12")].label == 0
    assert grades[("P2", "L51")].label == 1
    assert grades[("P1", "L45")].label == 1


def test_every_bad_row_is_reported_at_once(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        HEADER
        + "P1,L45,2,0,1,0,1\n"  # line 2: fine
        + "P1,L67,0,0,0,0,0\n"  # line 3: unknown disc
        + "P1,L34,4,0,0,0,0\n"  # line 4: out of range
        + "P1,L45,1,0,0,0,0\n"  # line 5: duplicate
        + "P1,L23,x,0,0,0,1.5\n"  # line 6: two non-integers
        + ",L12,0,0,0,0,0\n"  # line 7: empty patient
    )
    grades, problems = load_labels(path)
    assert list(grades) == [("P1", "L45")]
    found = {(p.line, p.field) for p in problems}
    assert found == {(3, "disc"), (4, "disc_state"), (5, "disc"), (6, "disc_state"), (6, "lfs"), (7, "patient_id")}
    reasons = {p.line: p.reason for p in problems}
    assert "unknown disc" in reasons[3]
    assert "not a grade: expected one of 0, 1, 2, 3" in reasons[4]
    assert "graded twice" in reasons[5] and "line 2" in reasons[5]
    assert "not a grade" in reasons[6]
    with pytest.raises(LabelError) as excinfo:
        load_labels(path, strict=True)
    assert len(excinfo.value.problems) == 6
    assert "line 3" in str(excinfo.value)


def test_missing_columns_and_missing_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("patient_id,disc,disc_state\nP1,L45,1\n")
    with pytest.raises(LabelError, match="lacks the column"):
        load_labels(path)
    with pytest.raises(LabelError, match="does not exist"):
        load_labels(tmp_path / "nope.csv")


def test_write_round_trip(tmp_path):
    grades = {("P2", "L51"): Grades(3, 1, 2, 0, 0), ("P1", "L12"): Grades(0, 0, 0, 0, 0)}
    write_labels(tmp_path / "out.csv", grades)
    again, problems = load_labels(tmp_path / "out.csv")
    assert problems == [] and again == grades


def test_extra_fields_and_an_unclosed_quote_are_each_reported_once(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        HEADER
        + "P1,L45,2,0,1,0,1\n"  # line 2: fine
        + "P1,L34,1,0,0,0,0,seen by Dr X\n"  # line 3: an extra field
        + "P1,L23,9,0,0,0,0\n"  # line 4: out of range (reported with the others)
        + 'P2,L12,"1,0,0,0,0\n'  # line 5: a quote never closed swallows the rest of the file
        + "P2,L23,0,0,0,0,0\n"
        + "P2,L34,0,0,0,0,0\n"
    )
    grades, problems = load_labels(path)
    assert list(grades) == [("P1", "L45")]
    assert [(p.line, p.field) for p in problems] == [(3, "(extra fields)"), (4, "disc_state"), (5, "disc_state")]
    assert "1 field(s) more than the header" in problems[0].reason and problems[0].value == "seen by Dr X"
    assert "quote" in problems[2].reason and "next 2 line(s)" in problems[2].reason
    assert not any("not a grade" in p.reason for p in problems[2:])


@pytest.mark.parametrize("value", ["0_3", "+1", "\u0663", "\uff13", "03", "1.0", "4", "-0", " 1 2", "１"])
def test_grades_are_plain_ascii_digits_of_the_vocabulary(tmp_path, value):
    """Issue 29 case 17: Python's int() takes "0_3", "+1", Arabic-Indic and full-width digits; the file may not."""
    path = tmp_path / "labels.csv"
    path.write_text(HEADER + f"P1,L45,{value},0,0,0,0\nP1,L12, 2 ,0,0,0,0\n", encoding="utf-8")
    grades, problems = load_labels(path)
    assert list(grades) == [("P1", "L12")] and grades[("P1", "L12")].disc_state == 2  # spaces around are fine
    assert [(p.line, p.field) for p in problems] == [(2, "disc_state")]
    assert problems[0].reason == "not a grade: expected one of 0, 1, 2, 3 in ASCII digits"


def test_formula_like_ids_are_escaped_in_the_csv_and_read_back_unchanged(tmp_path):
    grades = {('=HYPERLINK("http://x")', "L12"): Grades(1, 0, 0, 0, 0), ("@SUM(A1)", "L23"): Grades(0, 0, 0, 0, 0)}
    write_labels(tmp_path / "out.csv", grades)
    text = (tmp_path / "out.csv").read_text()
    assert "'=HYPERLINK" in text and "'@SUM" in text and "\n=" not in text and "\n@" not in text
    assert load_labels(tmp_path / "out.csv") == (grades, [])


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    """Issue 29 case 20: opening a FIFO for reading blocks until a writer comes; the loader never opens it so."""
    import os

    pipe = tmp_path / "grades.csv"
    os.mkfifo(pipe)
    with pytest.raises(LabelError, match=r"is a named pipe \(FIFO\), not a regular file"):
        load_labels(pipe)


def test_problems_shown_in_outputs_never_copy_a_patient_id():
    from lumbar.labels import LabelProblem

    extra = LabelProblem(3, "(extra fields)", "seen by Dr Rossi", "the row has 1 field(s) more", "MRN-4471")
    assert extra.public("Sabc", frozenset()) == {
        "line": 3, "field": "(extra fields)", "value": "(withheld: 16 characters)", "patient": "Sabc",
        "reason": "the row has 1 field(s) more",
    }  # fmt: skip
    assert LabelProblem(4, "disc_state", "7", "not a grade", "1").public("Sdef", frozenset())["value"] == "7"
    assert LabelProblem(4, "disc_state", "12", "not a grade", "1").public("Sdef", frozenset({"12"}))["value"] == (
        "(withheld: 2 characters)"  # a value equal to a known PatientID is never shown
    )
    assert LabelProblem(5, "patient_id", "", "empty patient id").public(None)["value"] == ""
