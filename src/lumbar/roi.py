"""The paper's proposed region of interest (Section 3.3, Equation 3).

On the paper's 1061 x 752 canvas the axial image is divided into a grid of 13 x 8 = 104 blocks of
82 x 94 pixels (width x height), numbered 1..104 row-major from the top-left. The ROI keeps the 20
blocks ``Z = 30 + 13x + y`` for ``x in 0..4`` and ``y in 1..4``: rows 3-7 and columns 5-8, assembled
into one 328 x 470 image (x 328..656, y 188..658 on the canvas). Because the kept blocks form one
rectangle, assembling them is a crop. For other image sizes the grid scales with the image.
"""

from __future__ import annotations

import numpy as np

CANVAS_WIDTH = 1061
CANVAS_HEIGHT = 752
GRID_COLUMNS = 13
GRID_ROWS = 8
BLOCK_WIDTH = 82
BLOCK_HEIGHT = 94


def roi_blocks() -> list[int]:
    """Return the 1-based block numbers of Equation 3, ``Z = 30 + 13x + y``, in row-major order."""
    return [30 + GRID_COLUMNS * x + y for x in range(5) for y in range(1, 5)]


def block_position(z: int) -> tuple[int, int]:
    """Return the 1-based ``(row, column)`` of block ``z`` in the 13 x 8 grid (row-major)."""
    if not 1 <= z <= GRID_COLUMNS * GRID_ROWS:
        raise ValueError(f"block number must be 1..{GRID_COLUMNS * GRID_ROWS}, got {z}")
    return (z - 1) // GRID_COLUMNS + 1, (z - 1) % GRID_COLUMNS + 1


def _canvas_box() -> tuple[int, int, int, int]:
    rows = [block_position(z)[0] for z in roi_blocks()]
    cols = [block_position(z)[1] for z in roi_blocks()]
    left, right = (min(cols) - 1) * BLOCK_WIDTH, max(cols) * BLOCK_WIDTH
    top, bottom = (min(rows) - 1) * BLOCK_HEIGHT, max(rows) * BLOCK_HEIGHT
    return left, top, right, bottom


def roi_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Return the ROI as ``(left, top, right, bottom)`` pixel bounds (right/bottom exclusive).

    Args:
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        The box on the paper's canvas (328, 188, 656, 658) scaled to ``width`` x ``height``.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    left, top, right, bottom = _canvas_box()
    sx, sy = width / CANVAS_WIDTH, height / CANVAS_HEIGHT
    box = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
    return box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1)


def crop_roi(image: np.ndarray) -> np.ndarray:
    """Return the ROI of a 2-D (or H x W x C) image as a new array."""
    if image.ndim < 2:
        raise ValueError("crop_roi needs an image with at least two dimensions")
    height, width = image.shape[:2]
    left, top, right, bottom = roi_box(width, height)
    return np.ascontiguousarray(image[top:bottom, left:right])
