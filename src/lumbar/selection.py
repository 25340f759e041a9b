"""The paper's fixed slice-selection rule and the Table 2 naming of the selected images.

Frames are numbered from 1 in acquisition order (InstanceNumber, falling back on slice position),
as in the paper.

* Sagittal T2 (Section 3.2): the middle frame ``Y = floor(n / 2) + 1`` (13 frames -> the 7th).
* Axial T2 (Table 1): ``Z = 3x + 2(x - 1)`` for ``x = 1..5`` gives frames 3, 8, 13, 18, 23, the
  centres of the five 5-slice blocks through L5-S1, L4-L5, L3-L4, L2-L3 and L1-L2.
* Myelography: the paper keeps two images but does not say which. Our choice: every frame when the
  series has at most two, otherwise frames ``floor(n / 3) + 1`` and ``floor(2n / 3) + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Disc codes of the grading file, cranial to caudal.
DISCS: tuple[str, ...] = ("L12", "L23", "L34", "L45", "L51")

#: Human-readable disc levels.
DISC_LEVELS: dict[str, str] = {"L12": "L1-L2", "L23": "L2-L3", "L34": "L3-L4", "L45": "L4-L5", "L51": "L5-S1"}

#: Axial discs in acquisition order (x = 1..5 of the paper's Table 1): the stack starts at L5-S1.
AXIAL_DISC_ORDER: tuple[str, ...] = ("L51", "L45", "L34", "L23", "L12")

#: Minimum number of axial frames the rule needs (the last disc is frame 23).
MIN_AXIAL_FRAMES = 23


@dataclass(frozen=True)
class Item:
    """One selected image of a patient, named as in the paper's Table 2.

    Attributes:
        number: The Table 2 suffix (``1``, ``2``, ``3``, ``12``, ``23``, ``34``, ``45``, ``51``).
        series: The series kind it comes from (``myelo``, ``sag_t2``, ``ax_t2``).
        disc: The disc code for axial items, else ``""``.
    """

    number: str
    series: str
    disc: str = ""

    def filename(self, pseudonym: str) -> str:
        """Return the image file name ``<pseudonym>_<number>.png``."""
        return f"{pseudonym}_{self.number}.png"


#: Table 2: every image selected for a patient.
ITEMS: tuple[Item, ...] = (
    Item("1", "myelo"),
    Item("2", "myelo"),
    Item("3", "sag_t2"),
    *(Item(disc[1:], "ax_t2", disc) for disc in DISCS),
)


def sagittal_frame(n_frames: int) -> int:
    """Return the 1-based sagittal T2 frame the paper keeps: ``floor(n / 2) + 1``.

    Args:
        n_frames: Number of frames in the sagittal T2 series.

    Raises:
        ValueError: If the series is empty.
    """
    if n_frames < 1:
        raise ValueError("a sagittal series needs at least one frame")
    return n_frames // 2 + 1


def axial_frame(x: int) -> int:
    """Return the 1-based axial frame of disc number ``x`` (1 = L5-S1 ... 5 = L1-L2): ``3x + 2(x - 1)``."""
    if not 1 <= x <= 5:
        raise ValueError(f"disc number x must be 1..5, got {x}")
    return 3 * x + 2 * (x - 1)


def axial_frames() -> dict[str, int]:
    """Return the 1-based axial T2 frame of each disc code (Table 1): L51 -> 3, ..., L12 -> 23."""
    return {disc: axial_frame(x) for x, disc in enumerate(AXIAL_DISC_ORDER, start=1)}


def myelo_frames(n_frames: int) -> list[int]:
    """Return the 1-based myelography frames kept (our documented choice; the paper is silent).

    Args:
        n_frames: Number of frames in the myelography series.

    Returns:
        All frames when there are at most two, else ``[floor(n/3) + 1, floor(2n/3) + 1]``.
    """
    if n_frames < 1:
        raise ValueError("a myelography series needs at least one frame")
    if n_frames <= 2:
        return list(range(1, n_frames + 1))
    return [n_frames // 3 + 1, (2 * n_frames) // 3 + 1]
