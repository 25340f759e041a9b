import pytest

from lumbar.selection import AXIAL_DISC_ORDER, ITEMS, axial_frame, axial_frames, myelo_frames, sagittal_frame


def test_axial_frames_match_table_1():
    # Table 1 of the paper: Z = 3x + 2(x - 1) -> 3, 8, 13, 18, 23 for L5-S1 ... L1-L2
    assert [axial_frame(x) for x in range(1, 6)] == [3, 8, 13, 18, 23]
    assert axial_frames() == {"L51": 3, "L45": 8, "L34": 13, "L23": 18, "L12": 23}
    assert AXIAL_DISC_ORDER[0] == "L51" and AXIAL_DISC_ORDER[-1] == "L12"


@pytest.mark.parametrize(("n", "frame"), [(13, 7), (14, 8), (15, 8), (16, 9), (17, 9), (1, 1)])
def test_sagittal_middle_frame(n, frame):
    assert sagittal_frame(n) == frame


@pytest.mark.parametrize(("n", "frames"), [(1, [1]), (2, [1, 2]), (3, [2, 3]), (4, [2, 3]), (6, [3, 5]), (9, [4, 7])])
def test_myelography_frames(n, frames):
    assert myelo_frames(n) == frames


def test_rules_reject_impossible_input():
    with pytest.raises(ValueError):
        sagittal_frame(0)
    with pytest.raises(ValueError):
        axial_frame(6)
    with pytest.raises(ValueError):
        myelo_frames(0)


def test_naming_follows_table_2():
    assert [i.number for i in ITEMS] == ["1", "2", "3", "12", "23", "34", "45", "51"]
    assert [i.series for i in ITEMS] == ["myelo", "myelo", "sag_t2"] + ["ax_t2"] * 5
    assert {i.disc for i in ITEMS if i.series == "ax_t2"} == {"L12", "L23", "L34", "L45", "L51"}
    assert ITEMS[3].filename("Sabc") == "Sabc_12.png"
    assert ITEMS[7].filename("Sabc") == "Sabc_51.png"
