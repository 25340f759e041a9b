"""Bounds on what a DICOM file may declare (:class:`ImageLimits`), apart from the DICOM module.

The ``lumbar dataset build`` command shows these defaults in its help, and the command tree is imported
at every start of ``lumbar``: this module imports nothing heavy (the DICOM module imports NumPy).
"""

from __future__ import annotations

from dataclasses import dataclass

from lumbar.errors import InputError


@dataclass(frozen=True)
class ImageLimits:
    """What a DICOM file may declare before it is quarantined instead of allocated or decoded.

    Every limit is checked against the header before a frame record or a pixel is allocated, and the
    frames a file declares are checked against the bytes it really holds, so a small file cannot make
    the build allocate more than these bounds allow. With the defaults one decoded frame costs at most
    about 64 MiB, and windowing it to 8 bits a few times that, which fits a 2 GB container with two
    decoding workers.

    Attributes:
        min_size: Least Rows and Columns of an image that is used (smaller ones are degenerate).
        max_size: Largest Rows or Columns accepted.
        max_frames: Largest NumberOfFrames accepted in one file.
        max_frame_bytes: Largest decoded frame, Rows x Columns x SamplesPerPixel x BitsAllocated / 8
            bytes; also the largest compressed fragment accepted.
    """

    min_size: int = 32
    max_size: int = 4096
    max_frames: int = 2048
    max_frame_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise InputError(f"image size limits need 1 <= minimum <= maximum, got {self.min_size} and {self.max_size}")
        if self.max_frames < 1 or self.max_frame_bytes < 1:
            raise InputError("the largest number of frames and the largest frame must be at least 1")

    def size_problem(self, rows: int, columns: int, samples: int, bits: int) -> str:
        """Why an image of these dimensions is refused, as a fixed sentence with numbers, or ""."""
        if rows > self.max_size or columns > self.max_size:
            return f"declares {rows} x {columns} pixels; the largest accepted is {self.max_size} (--max-image-size)"
        if rows < self.min_size or columns < self.min_size:
            return (
                f"declares {rows} x {columns} pixels; the least accepted is {self.min_size} "
                "(--min-image-size): a degenerate image"
            )
        if samples not in (1, 3) or bits not in (1, 8, 16, 32):
            return "declares a pixel layout lumbar does not decode (SamplesPerPixel 1 or 3; BitsAllocated 1, 8, 16, 32)"
        if rows * columns * samples * bits // 8 > self.max_frame_bytes:
            return f"a decoded frame would exceed {self.max_frame_bytes} bytes"
        return ""
