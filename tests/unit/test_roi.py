import numpy as np
import pytest

from lumbar.roi import block_position, crop_roi, roi_blocks, roi_box


def test_roi_block_indices_follow_equation_3():
    assert roi_blocks() == [31, 32, 33, 34, 44, 45, 46, 47, 57, 58, 59, 60, 70, 71, 72, 73, 83, 84, 85, 86]
    positions = [block_position(z) for z in roi_blocks()]
    assert {r for r, _ in positions} == {3, 4, 5, 6, 7}
    assert {c for _, c in positions} == {5, 6, 7, 8}
    assert block_position(1) == (1, 1) and block_position(13) == (1, 13) and block_position(104) == (8, 13)
    with pytest.raises(ValueError):
        block_position(105)


def test_roi_exact_pixel_region_on_paper_canvas():
    assert roi_box(1061, 752) == (328, 188, 656, 658)
    image = np.arange(752 * 1061, dtype=np.int64).reshape(752, 1061)
    roi = crop_roi(image)
    assert roi.shape == (470, 328)  # 328 x 470 (width x height), as in the paper
    np.testing.assert_array_equal(roi, image[188:658, 328:656])
    # the assembled blocks: block Z=31 is the top-left 94 x 82 tile of the ROI
    np.testing.assert_array_equal(roi[:94, :82], image[2 * 94 : 3 * 94, 4 * 82 : 5 * 82])
    np.testing.assert_array_equal(roi[-94:, -82:], image[6 * 94 : 7 * 94, 7 * 82 : 8 * 82])


def test_roi_grid_scales_with_image():
    left, top, right, bottom = roi_box(256, 256)
    assert (left, top, right, bottom) == (79, 64, 158, 224)
    rgb = np.zeros((256, 256, 3), dtype=np.uint8)
    assert crop_roi(rgb).shape == (160, 79, 3)
    small = roi_box(10, 10)
    assert small[2] > small[0] and small[3] > small[1]
