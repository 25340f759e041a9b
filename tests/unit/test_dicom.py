import numpy as np
import pytest

from lumbar.dicom import FrameRecord, SeriesRules, classify_series, order_frames, plane_from_normal, window_to_uint8
from lumbar.errors import InputError

SAG, AX, COR = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)


def frame(description="", normal=AX, echo=100.0, instance=1, position=0.0, localizer=False, path="f", expected=None):
    return FrameRecord(
        path=path,
        frame_index=0,
        patient_id="P1",
        patient_name="",
        study_uid="st",
        series_uid="se",
        sop_uid=path,
        series_number=1,
        description=description,
        instance_number=instance,
        position=position,
        normal=normal,
        echo_time=echo,
        slice_thickness=4.0,
        frames_in_file=1,
        images_in_acquisition=expected,
        is_localizer=localizer,
        slope=1.0,
        intercept=0.0,
        window_center=None,
        window_width=None,
        monochrome1=False,
    )


@pytest.mark.parametrize(
    ("description", "kind"),
    [
        ("t2_tse_sag", "sag_t2"),
        ("T2 SAG", "sag_t2"),
        ("Sagittal T2/STIR", "sag_t2"),
        ("AX T2", "ax_t2"),
        ("t2_tse_tra", "ax_t2"),
        ("T2W_TSE tra", "ax_t2"),
        ("MYELO", "myelo"),
        ("MR Myelography", "myelo"),
        ("t1_tse_sag", "sag_t1"),
        ("AX T1", "ax_t1"),
        ("localizer", "localizer"),
        ("3-pl loc", "localizer"),
        ("Survey", "localizer"),
    ],
)
def test_vendor_spellings(description, kind):
    normal = SAG if "sag" in description.lower() else AX
    assert classify_series([frame(description, normal=normal)]) == kind


def test_fallback_on_orientation_and_echo_time():
    assert classify_series([frame("SE 3", normal=SAG, echo=110)]) == "sag_t2"
    assert classify_series([frame("SE 4", normal=AX, echo=12)]) == "ax_t1"
    assert classify_series([frame("", normal=AX, echo=81)]) == "ax_t2"
    assert classify_series([frame("", normal=AX, echo=80)]) == "ax_t1"
    assert classify_series([frame("SE 6", normal=COR, echo=800)]) == "myelo"
    assert classify_series([frame("SE 9", normal=AX, echo=None)]) == "other"
    # a three-plane series is a localizer whatever it is called
    assert (
        classify_series([frame("SCAN", normal=SAG), frame("SCAN", normal=AX), frame("SCAN", normal=COR)]) == "localizer"
    )
    assert classify_series([frame("SE 1", localizer=True)]) == "localizer"
    assert classify_series([frame("SE 2", normal=COR, echo=100)]) == "other"  # coronal T2 is not used


def test_configurable_keywords():
    rules = SeriesRules(axial=("quer",), t2=("t2", "dp"))
    assert classify_series([frame("QUER DP", normal=SAG, echo=10)], rules) == "ax_t2"
    with pytest.raises(InputError, match="t2_echo_time_ms"):
        SeriesRules(t2_echo_time_ms=500, myelo_echo_time_ms=400)


def test_plane_from_normal():
    assert plane_from_normal((0.98, 0.1, 0.1)) == "sag"
    assert plane_from_normal((0.1, -0.9, 0.2)) == "cor"
    assert plane_from_normal((0.0, 0.2, -0.97)) == "ax"
    assert plane_from_normal(None) == ""


def test_order_by_instance_number_keeps_gaps():
    frames = [frame(instance=n, path=f"f{n}") for n in (5, 1, 2, 4)]
    slots = order_frames(frames)
    assert [s.path if s else None for s in slots] == ["f1", "f2", None, "f4", "f5"]


def test_order_falls_back_on_position_with_gaps():
    frames = [frame(instance=None, position=p, path=f"z{p:g}") for p in (8.0, 0.0, 4.0, 16.0)]
    slots = order_frames(frames)
    assert [s.path if s else None for s in slots] == ["z0", "z4", "z8", None, "z16"]
    with pytest.raises(ValueError, match="ambiguous"):
        order_frames([frame(instance=None, position=1.0), frame(instance=None, position=1.0)])


def test_window_follows_dicom_linear_formula():
    pixels = np.array([[0, 50, 100, 150, 200]], dtype=np.uint16)
    out = window_to_uint8(pixels, center=100, width=101)
    # c - 0.5 - (w-1)/2 = 49.5 -> 0 at and below; above c - 0.5 + (w-1)/2 = 149.5 -> 255
    # inside: ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 -> 50: 1.275, 100: 128.775
    assert out.tolist() == [[0, 1, 129, 255, 255]]
    assert out.dtype == np.uint8
    # rescale is applied before the window: 2x -> 100: 0.6375, 200: 128.14
    assert window_to_uint8(pixels, slope=2.0, center=200, width=201).tolist() == [[0, 1, 128, 255, 255]]
    assert window_to_uint8(pixels, center=100, width=101, monochrome1=True).tolist() == [[255, 254, 126, 0, 0]]


def test_window_fallback_is_percentile_range():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4000, size=(64, 64)).astype(np.uint16)
    out = window_to_uint8(pixels)
    assert out.min() == 0 and out.max() == 255
    assert window_to_uint8(np.full((4, 4), 7, dtype=np.uint16)).max() == 0  # flat image, no division by zero


def test_images_in_acquisition_places_or_rejects_missing_end_frames():
    # instance numbers: a missing first or last frame keeps the others in place
    slots = order_frames([frame(instance=n, path=f"f{n}", expected=5) for n in (2, 3, 4)])
    assert [s.path if s else None for s in slots] == [None, "f2", "f3", "f4", None]
    # positions only: a missing end frame cannot be placed, so the order is ambiguous
    with pytest.raises(ValueError, match="acquisition has 5 images"):
        order_frames([frame(instance=None, position=p, path=f"z{p:g}", expected=5) for p in (4.0, 8.0, 12.0, 16.0)])
    # positions only, complete: fine
    assert len(order_frames([frame(instance=None, position=p, expected=3) for p in (0.0, 4.0, 8.0)])) == 3


def test_header_tags_match_the_dicom_dictionary():
    from pydicom.datadict import tag_for_keyword

    from lumbar.dicom import _HEADER_TAGS

    assert all(tag_for_keyword(keyword) == tag for keyword, tag in _HEADER_TAGS.items() if keyword != "SynthMark")


def test_one_files_images_in_acquisition_is_not_the_series():
    """Issue 29 case 16: an intact 16-frame series, one file claiming 999 images, stays whole."""
    frames = [frame(instance=i, position=4.0 * i, path=f"f{i}") for i in range(1, 17)]
    frames[0].images_in_acquisition = 999
    assert order_frames(frames) == frames
    # when most frames state the count, missing frames at the end keep their slots
    stated = [frame(instance=i, position=4.0 * i, path=f"g{i}", expected=18) for i in range(1, 17)]
    assert len(order_frames(stated)) == 18


def test_codestream_sizes_are_read_from_their_headers():
    from lumbar.dicom import codestream_size

    j2k = b"\xff\x4f\xff\x51\x00\x29\x00\x00" + (64).to_bytes(4, "big") + (48).to_bytes(4, "big") + bytes(8)
    assert codestream_size(j2k) == (48, 64)
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc3\x00\x0b\x10" + (300).to_bytes(2, "big") + (200).to_bytes(2, "big")
    assert codestream_size(jpeg) == (300, 200)
    assert codestream_size(b"not an image") is None


def test_a_compressed_frame_larger_than_its_header_is_refused_before_decoding(tmp_path):
    """A decoder allocates what its codestream declares: 32 x 32 in the header over a 64 x 64 codestream is refused."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import JPEG2000Lossless, generate_uid

    from lumbar.dicom import FrameRefusedError, read_frame, read_header

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID, ds.SeriesInstanceUID = "MR", "P1", generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.Rows = ds.Columns = 64
    ds.compress(JPEG2000Lossless, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096)
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    (record,) = read_header(tmp_path, "j2k.dcm").frames
    assert read_frame(tmp_path, record).shape == (64, 64)
    ds.Rows = ds.Columns = 32
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    with pytest.raises(FrameRefusedError, match="its compressed frame declares another size than its header"):
        read_frame(tmp_path, record)
