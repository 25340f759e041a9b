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
    assert "out of range" in reasons[4]
    assert "duplicate" in reasons[5] and "line 2" in reasons[5]
    assert "not an integer" in reasons[6]
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
    assert not any("not an integer" in p.reason for p in problems)
